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
