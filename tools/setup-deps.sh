#!/usr/bin/env bash
# tools/setup-deps.sh — install the Debian 12 packages Ringmail builds with.
#
# Installs only what is missing (checked with dpkg-query), runs apt-get update
# at most once and only when something has to be installed, and is quick and
# silent-ish when everything is there.  Needs root (or sudo) only to install.
set -euo pipefail

PACKAGES=(
  build-essential             # gcc 12, make, libc headers
  cmake
  pkg-config
  liburing-dev                # io_uring (the server's runtime)
  android-libboringssl-dev    # TLS for the server (BoringSSL)
  libjemalloc-dev             # the server's allocator
  libbenchmark-dev            # Google Benchmark: bench/ringmail-microbench
  zlib1g-dev                  # COMPRESS=DEFLATE (net/compress.c)
  libcrypt-dev                # libxcrypt: password hashes
  libsodium-dev               # {ARGON2ID} password hashes
  openssl                     # the demo's self-signed certificate; TLS tests' certificates
  python3                     # integration tests
  clang                       # fuzz targets (libFuzzer), later
  isync                       # mbsync: a real IMAP client in the integration tests
  offlineimap3                # offlineimap: another real client in those tests
  neomutt                     # NeoMutt: a real client with a header cache (CONDSTORE, QRESYNC)
  tmux                        # drives NeoMutt's screen in test_client_neomutt.py
  tokyocabinet-bin            # tcbmgr: reads NeoMutt's header cache in that test
  curl                        # curl -T imap://: a bare-LF APPEND in the integration tests
  e2fsprogs                   # mkfs.ext4: the disk-full test makes a small ext4 on a loop device
  postfix                     # a real MTA delivering into ringmaild's LMTP (test_lmtp_postfix.py);
                              # installed unconfigured, its own instance is never started
  dovecot-imapd               # the peer test_compare_sort.py compares answers with (a private
                              # instance); the system's is kept from starting (policy-rc.d)
  libsystemd-dev              # sd_notify: ringmaild tells systemd it is ready (Type=notify)
  systemd                     # systemd-analyze verify: test_service.py checks the unit
  man-db                      # man -l: the man pages must render without warnings
  dpkg-dev                    # dpkg-shlibdeps, dpkg-deb: CPack's Debian package
  fakeroot                    # (for dpkg tools run as a user)
  lintian                     # the Debian package's checker (test_service.py)
  prometheus                  # promtool check metrics in test_metrics.py; the system's server is
                              # kept from starting like Dovecot's (policy-rc.d)
  libldap-dev                 # OpenLDAP's libldap: userdb = ldap (core/auth/userdb_ldap.c)
  libpq-dev                   # libpq: userdb = pgsql (core/auth/userdb_pg.c)
  slapd                       # a private LDAP server in test_directory.py; installed with
                              # slapd/no_configuration (no system database) and not started
  ldap-utils                  # slapadd's companions (ldapsearch) for that test's setup
  postgresql                  # a private cluster (initdb, pg_ctl) in test_directory.py; the
                              # system's cluster is kept from starting (policy-rc.d)
  nginx                       # the IMAP proxy in front of backends (test_nginx_proxy.py: a private
  libnginx-mod-mail           # instance); the system's is kept from starting like Dovecot's
)

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  if [[ "$status" != "installed" ]]; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "setup-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "setup-deps: installing ${missing[*]}"
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "setup-deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
# Postfix is only run privately by the tests (its own config_directory under
# a temp dir).  "No configuration" makes its postinst write no
# /etc/postfix/main.cf and so start no system instance; the answer must be
# in debconf before apt installs the package.
for p in "${missing[@]}"; do
  if [[ "$p" == postfix ]]; then
    echo "postfix postfix/main_mailer_type select No configuration" |
      "${SUDO[@]}" debconf-set-selections
  fi
  # slapd likewise: "omit configuration" makes its postinst create no
  # /etc/ldap/slapd.d database and start nothing; the tests run their own
  # slapd from a temp dir.
  if [[ "$p" == slapd ]]; then
    echo "slapd slapd/no_configuration boolean true" |
      "${SUDO[@]}" debconf-set-selections
  fi
done
# Dovecot is only run privately by the tests.  Its postinst would start the
# system's instance (listening on every address); a policy-rc.d that says
# "not now" (101) keeps invoke-rc.d and deb-systemd-invoke from starting
# anything during this install.  One already there is the machine's: kept.
POLICY=/usr/sbin/policy-rc.d
made_policy=0
want_dovecot=0
for p in "${missing[@]}"; do
  [[ "$p" == dovecot* || "$p" == prometheus || "$p" == slapd || "$p" == postgresql ||
     "$p" == nginx* ]] && want_dovecot=1
done
if [[ ! -e $POLICY ]] && ((want_dovecot)); then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
  "${SUDO[@]}" chmod 755 "$POLICY"
  made_policy=1
  trap '"${SUDO[@]}" rm -f "$POLICY"' EXIT
fi
# Wait for another apt/dpkg (unattended upgrades) instead of failing at once.
APT_OPTS=(-o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0)
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" install -y -qq \
  --no-install-recommends "${missing[@]}"

# Check again: apt-get can succeed without installing (e.g. a held package).
still=()
for p in "${missing[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "installed" ]] || still+=("$p")
done
if ((${#still[@]})); then
  echo "setup-deps: still missing after install: ${still[*]}" >&2
  exit 1
fi
# An unconfigured Postfix has no main.cf and no running master; if debconf
# held another answer, say so (the tests' private instances do not care,
# but the system one is then configured and may run).
for p in "${missing[@]}"; do
  if [[ "$p" == postfix ]]; then
    if [[ -e /etc/postfix/main.cf ]]; then
      echo "setup-deps: warning: installing postfix wrote /etc/postfix/main.cf" >&2
    fi
    pid=$(sed -n '1s/ //gp' /var/spool/postfix/pid/master.pid 2>/dev/null || true)
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
      echo "setup-deps: warning: the system's Postfix is running (pid $pid)" >&2
    fi
  fi
done
if ((made_policy)); then
  "${SUDO[@]}" rm -f "$POLICY"
  trap - EXIT
fi
if [[ -r /run/dovecot/master.pid ]] && kill -0 "$(cat /run/dovecot/master.pid)" 2>/dev/null; then
  echo "setup-deps: warning: the system's Dovecot is running" >&2
fi
echo "setup-deps: done"
