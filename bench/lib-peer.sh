# bench/lib-peer.sh: what the scripts that run ringmaild next to a private
# Dovecot share (sourced by resync.sh and deliver.sh).  The caller sets
# KEEP (0/1) and, before bench_tmp, nothing else; bench_tmp sets TMP, RM,
# DV; the caller sets RM_PID once ringmaild runs.  Never the system's
# Dovecot: it is only looked at, to refuse to share the CPUs with it.

# The script's own header comment, as its --help.
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

system_dovecot_pid() {
    local f=/run/dovecot/master.pid
    [[ -r $f ]] && kill -0 "$(cat "$f")" 2>/dev/null && cat "$f"
    return 0
}

# Install the Dovecot packages named (dovecot-imapd ...) if a binary is
# missing; stop a system instance the install itself started; refuse to run
# beside one that was running before.
need_dovecot() {   # package... -- binary...
    local pkgs=() bins=() seen=0 missing=0 was now
    for a in "$@"; do
        if [[ $a == -- ]]; then seen=1; elif ((seen)); then bins+=("$a"); else pkgs+=("$a"); fi
    done
    command -v dovecot >/dev/null || missing=1
    for b in "${bins[@]}"; do [[ -x $b ]] || missing=1; done
    if ((missing)); then
        was=$(system_dovecot_pid)
        log "installing ${pkgs[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
        now=$(system_dovecot_pid)
        if [[ -n $now && -z $was ]]; then
            log "stopping the system Dovecot the install started (pid $now)"
            kill "$now"
            sleep 1
        fi
    fi
    [[ -z $(system_dovecot_pid) ]] || die "the system's Dovecot is running; stop it first, it would share the CPUs"
    DOVECOT_VERSION=$(dovecot --version)
}

# The run's directories: $TMP with $RM (ringmaild) and $DV (Dovecot).
bench_tmp() {   # name
    TMP=$(mktemp -d "/tmp/ringmail-$1.XXXXXX")
    chmod 755 "$TMP"
    RM=$TMP/ringmail
    DV=$TMP/dovecot
    mkdir -p "$RM/mail" "$DV/run" "$DV/state" "$DV/mail" "$TMP/out"
    RM_PID=
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

dovecot_master_pid() {
    [[ -r $DV/run/master.pid ]] && cat "$DV/run/master.pid"
    return 0
}

bench_cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    if [[ -n $RM_PID ]]; then
        kill -TERM "$RM_PID" 2>/dev/null || true
        wait "$RM_PID" 2>/dev/null || true
    fi
    pid=$(dovecot_master_pid)
    if [[ -n $pid ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    if ((KEEP)); then log "kept $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}

# ringmaild, ringmail-admin and ringmail-bench in $BUILD (configured as a
# Release build if missing), brought up to date; sets BUILD_TYPE and
# RM_VERSION for the report.
bench_build() {
    if [[ ! -x $BENCH || ! -x $RINGMAILD || ! -x $ADMIN ]]; then
        log "configuring a Release build in $BUILD"
        cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
    fi
    log "building ringmaild, ringmail-admin, ringmail-bench"
    cmake --build "$BUILD" -j2 --target ringmaild ringmail-admin ringmail-bench >/dev/null
    BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
    RM_VERSION=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
}

# N free loopback ports, printed on one line.
free_ports() {   # n
    python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(*(s.getsockname()[1] for s in socks))
PY
}

wait_port() {   # port name
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    die "$2 does not accept connections on port $1"
}

# The same n users (user1..userN, password $PASSWORD) for both servers:
# ringmail-admin writes $RM/passwd (the caller wrote $RM/ringmail.conf),
# Dovecot gets the same hashes with its mail user (nobody) and homes.
peer_users() {   # n
    local i
    for ((i = 1; i <= $1; i++)); do
        printf '%s\n' "$PASSWORD" |
            "$ADMIN" -c "$RM/ringmail.conf" user add --scheme SHA512-CRYPT "user$i" >/dev/null
    done
    MAIL_UID=$(id -u nobody)
    MAIL_GID=$(getent group nogroup | cut -d: -f3)
    awk -F: -v OFS=: -v uid="$MAIL_UID" -v gid="$MAIL_GID" -v home="$DV/mail" \
        '{ print $1, $2, uid, gid, "", home "/" $1, "" }' "$RM/passwd" >"$DV/passwd"
    chmod 644 "$DV/passwd"
    chown nobody:nogroup "$DV/mail"
}

# Dovecot on 127.0.0.1:port (and an imaps port it needs a certificate for
# but that is never used) with bench/compare/dovecot.conf.in, sized for
# about `limit` connections.  Needs peer_users first.
dovecot_start() {   # port tls_port limit
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj /CN=localhost -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
    chmod 644 "$TMP/key.pem" "$TMP/cert.pem"
    sed -e "s|@D@|$DV|g" -e "s|@TMP@|$TMP|g" -e "s|@ID@|$$|g" \
        -e "s|@IMAP_PORT@|$1|g" -e "s|@IMAPS_PORT@|$2|g" \
        -e "s|@MAIL_UID@|$MAIL_UID|g" -e "s|@MAIL_GID@|$MAIL_GID|g" \
        -e "s|@AUTH_CACHE_SIZE@|10M|g" -e "s|@PROCESS_LIMIT@|$3|g" \
        -e "s|@CLIENT_LIMIT@|$(($3 * 3))|g" \
        "$ROOT/bench/compare/dovecot.conf.in" >"$DV/dovecot.conf"
    dovecot -c "$DV/dovecot.conf"
    wait_port "$1" dovecot
}

# doveadm import of an mbox file into user's INBOX, which must then hold
# `messages` messages.
dovecot_import() {   # user mbox messages
    local have
    mkdir -p "$TMP/src"                 # doveadm runs as the mail user (nobody)
    chown nobody:nogroup "$TMP/src"
    doveadm -c "$DV/dovecot.conf" import -u "$1" "mbox:$TMP/src:INBOX=$2" "" all \
        2>"$TMP/out/doveadm.err" || die "doveadm import failed: $(tail -3 "$TMP/out/doveadm.err")"
    [[ -s $TMP/out/doveadm.err ]] && die "doveadm import: $(tail -3 "$TMP/out/doveadm.err")"
    have=$(doveadm -c "$DV/dovecot.conf" -f flow mailbox status -u "$1" messages INBOX | sed 's/.*=//')
    [[ $have == "$3" ]] || die "$1: Dovecot has $have messages after the import, not $3"
}
