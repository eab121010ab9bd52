#!/usr/bin/env bash
# bench/compare.sh: Ringmail vs Dovecot, the same load from ringmail-bench
# against both, one table.
#
#   bash bench/compare.sh [--quick] [--users N] [--messages M] [--duration S]
#                         [--clients "50 500"] [--idle N] [--tls]
#                         [--out FILE.md] [--keep]
#
# Builds Ringmail (Release) in build/ if needed, installs dovecot-imapd with
# apt-get if missing, starts both servers on free 127.0.0.1 ports from a temp
# dir (Dovecot with the private config bench/compare/dovecot.conf.in, never
# /etc/dovecot), gives both the same users (user1..userN, one password,
# SHA512-CRYPT in one passwd-file) and the same generated messages (APPENDed
# through IMAP by ringmail-bench --populate), then runs each workload at each
# client count against Ringmail and then Dovecot, sampling each server's
# process tree (bench/compare/sampler.py: peak RSS and PSS, CPU seconds).
# Prints the table, writes it as Markdown to --out (default
# bench/compare-results.md) and the raw records next to it (.jsonl).
#
# Defaults (~10-15 minutes): 100 users x 1000 messages, 12 s per run, 50
# and 500 clients, idle-hold with 2000 sessions (a run of 2 x duration + sessions / 50 s).
# --quick: 10 users x 100 messages, 3 s, idle-hold with 200 sessions
# (~2-3 minutes).  Must run as root
# (Dovecot drops privileges to its own users).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HERE=$ROOT/bench/compare
BUILD=$ROOT/build
RINGMAILD=$BUILD/ringmaild
ADMIN=$BUILD/ringmail-admin
BENCH=$BUILD/ringmail-bench

USERS=100
MESSAGES=1000
DURATION=12
CLIENTS="50 500"
IDLE=2000
OUT=$ROOT/bench/compare-results.md
KEEP=0
TLS=0
PASSWORD=compare-pw-7
SCHEME=SHA512-CRYPT

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }

while (($#)); do
    case $1 in
    --quick) USERS=10 MESSAGES=100 DURATION=3 IDLE=200 ;;
    --users) USERS=$2; shift ;;
    --messages) MESSAGES=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --clients) CLIENTS=$2; shift ;;
    --idle) IDLE=$2; shift ;;
    --out) OUT=$2; shift ;;
    --keep) KEEP=1 ;;
    --tls) TLS=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "compare.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (Dovecot needs it to drop privileges)"
case $OUT in /*) ;; *) OUT=$PWD/$OUT ;; esac
T0=$SECONDS

# ringmail-bench opens one socket per client, idle-hold thousands; the
# servers inherit the limit too.
ulimit -n "$(ulimit -Hn)"
if (($(ulimit -n) < IDLE + 1000)); then
    log "warning: open-files limit $(ulimit -n) is low for $IDLE idle sessions"
fi

# --- build -------------------------------------------------------------------
if ! grep -q '^CMAKE_BUILD_TYPE:STRING=Release$' "$BUILD/CMakeCache.txt" 2>/dev/null; then
    log "configuring a Release build in $BUILD"
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
log "building ringmaild, ringmail-admin, ringmail-bench (Release)"
cmake --build "$BUILD" -j2 --target ringmaild ringmail-admin ringmail-bench >/dev/null
# What was built: the commit, and sources differing from it in the work tree.
RM_VERSION=$(git -C "$ROOT" rev-parse --short HEAD)
DIRTY=$(git -C "$ROOT" status --porcelain --untracked-files=no -- core net store bench/ringmail_bench*.c bench/ringmail_bench.h CMakeLists.txt | awk '{print $2}' | tr '\n' ' ')
[[ -n $DIRTY ]] && RM_VERSION+=" plus uncommitted changes in the work tree (${DIRTY% })"

# --- Dovecot -----------------------------------------------------------------
system_dovecot_pid() {
    local f=/run/dovecot/master.pid
    [[ -r $f ]] && kill -0 "$(cat "$f")" 2>/dev/null && cat "$f"
    return 0
}
if ! command -v dovecot >/dev/null || ! [[ -x /usr/lib/dovecot/imap ]]; then
    was=$(system_dovecot_pid)
    log "installing dovecot-imapd"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null
    now=$(system_dovecot_pid)
    if [[ -n $now && -z $was ]]; then
        log "stopping the system Dovecot the install started (pid $now)"
        kill "$now"
        sleep 1
    fi
fi
if [[ -n $(system_dovecot_pid) ]]; then
    die "the system's Dovecot is running (pid $(system_dovecot_pid)); stop it first, it would share the CPUs"
fi
DOVECOT_VERSION=$(dovecot --version)

# --- temp dir, cleanup ---------------------------------------------------------
TMP=$(mktemp -d /tmp/ringmail-compare.XXXXXX)
chmod 755 "$TMP"                    # Dovecot's mail processes run as nobody
RM=$TMP/ringmail
DV=$TMP/dovecot
mkdir -p "$RM/mail" "$DV/run" "$DV/state" "$DV/mail" "$TMP/out"
RM_PID=
SAMPLER_PID=
INOTIFY_OLD=

dovecot_master_pid() {
    [[ -r $DV/run/master.pid ]] && cat "$DV/run/master.pid"
    return 0
}

stop_ringmail() {
    if [[ -n $RM_PID ]]; then
        kill -TERM "$RM_PID" 2>/dev/null || true
        wait "$RM_PID" 2>/dev/null || true
        RM_PID=
    fi
}

stop_dovecot() {
    local pid
    pid=$(dovecot_master_pid)
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$DV/run/master.pid"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $SAMPLER_PID ]]; then
        kill "$SAMPLER_PID" 2>/dev/null || true
    fi
    stop_ringmail
    stop_dovecot
    if [[ -n $INOTIFY_OLD ]]; then
        echo "$INOTIFY_OLD" >/proc/sys/fs/inotify/max_user_instances 2>/dev/null || true
    fi
    if ((KEEP)); then
        log "kept $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Dovecot's IDLE watches each mailbox with one inotify instance per imap
# process, all of them under one uid here; past fs.inotify.max_user_instances
# (often 128) Dovecot falls back to polling every 30 s.  Raised for the run,
# put back on exit.
want=$((IDLE + 512))
cur=$(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo 0)
if ((cur < want)); then
    if echo "$want" >/proc/sys/fs/inotify/max_user_instances 2>/dev/null; then
        INOTIFY_OLD=$cur
        log "fs.inotify.max_user_instances $cur -> $want for the run"
    else
        log "warning: cannot raise fs.inotify.max_user_instances ($cur): Dovecot's IDLE may poll"
    fi
fi

read -r P_RM P_RMS P_DV P_DVS < <(python3 - <<'PY'
import socket
socks = []
for _ in range(4):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(*(s.getsockname()[1] for s in socks))
PY
)

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
chmod 644 "$TMP/key.pem" "$TMP/cert.pem"

# --- users: one passwd-file, read by both --------------------------------------
cat >"$RM/ringmail.conf" <<CONF
# written by bench/compare.sh
mail_root = $RM/mail
passwd_file = $RM/passwd
listen = 127.0.0.1:$P_RM
listen_tls = 127.0.0.1:$P_RMS
tls_cert = $TMP/cert.pem
tls_key = $TMP/key.pem
fsync = batch
auth_cache_ttl = 60
max_connections_per_user = 0
max_connections_per_ip = 0
CONF
log "adding $USERS users ($SCHEME)"
for ((i = 1; i <= USERS; i++)); do
    printf '%s\n' "$PASSWORD" | "$ADMIN" -c "$RM/ringmail.conf" user add --scheme "$SCHEME" "user$i" >/dev/null
done
# Dovecot's copy: the same name:{SHA512-CRYPT}hash fields, plus the
# uid:gid::home fields its passwd-file userdb requires.
awk -F: -v OFS=: -v uid="$(id -u nobody)" -v gid="$(getent group nogroup | cut -d: -f3)" \
    -v home="$DV/mail" '{ print $1, $2, uid, gid, "", home "/" $1, "" }' "$RM/passwd" >"$DV/passwd"
chmod 644 "$DV/passwd"
chown nobody:nogroup "$DV/mail"

# --- servers -------------------------------------------------------------------
wait_port() {
    local port=$1 what=$2
    for _ in $(seq 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    die "$what does not accept connections on port $port"
}

start_ringmail() {   # $1: auth_cache_ttl
    "$RINGMAILD" -c "$RM/ringmail.conf" -o "auth_cache_ttl=$1" </dev/null >>"$RM/ringmaild.log" 2>&1 &
    RM_PID=$!
    wait_port "$P_RM" ringmaild
}

start_dovecot() {    # $1: auth_cache_size
    local limit=$((IDLE + 1000))
    ((limit < 2000)) && limit=2000
    sed -e "s|@D@|$DV|g" -e "s|@TMP@|$TMP|g" -e "s|@ID@|$$|g" \
        -e "s|@IMAP_PORT@|$P_DV|g" -e "s|@IMAPS_PORT@|$P_DVS|g" \
        -e "s|@MAIL_UID@|$(id -u nobody)|g" -e "s|@MAIL_GID@|$(getent group nogroup | cut -d: -f3)|g" \
        -e "s|@AUTH_CACHE_SIZE@|$1|g" -e "s|@PROCESS_LIMIT@|$limit|g" \
        -e "s|@CLIENT_LIMIT@|$((limit * 3))|g" \
        "$HERE/dovecot.conf.in" >"$DV/dovecot.conf"
    dovecot -c "$DV/dovecot.conf"
    wait_port "$P_DV" dovecot
    sleep 0.5                       # process_min_avail login processes
}

port_of() {
    case $1:$TLS in
    ringmail:1) echo "$P_RMS" ;;
    ringmail:*) echo "$P_RM" ;;
    *:1) echo "$P_DVS" ;;
    *) echo "$P_DV" ;;
    esac
}

top_pid() {
    if [[ $1 == ringmail ]]; then echo "$RM_PID"; else dovecot_master_pid; fi
}

bench_args() {   # $1 server
    local a=(--host 127.0.0.1 --port "$(port_of "$1")" --users 'user%d' --nusers "$USERS"
        --password "$PASSWORD")
    ((TLS)) && a+=(--tls)
    printf '%s\n' "${a[@]}"
}

RAW=${OUT%.md}.jsonl
[[ $RAW == "$OUT" ]] && RAW=$OUT.jsonl
mkdir -p "$(dirname "$OUT")"
: >"$RAW"
N=0

run() {   # server row workload clients
    local server=$1 row=$2 wl=$3 clients=$4 rc=0 dur=$DURATION
    # idle-hold: the sessions log in and IDLE first (Dovecot starts one
    # process each: ~20 s for 2000 here); the appender starts when all idle
    # (or at half time), so the run gets longer.
    [[ $wl == idle-hold ]] && dur=$(python3 -c "print($DURATION * 2 + $IDLE // 50)")
    local base="$TMP/out/$((++N))-$server-$wl-$clients"
    local args
    mapfile -t args < <(bench_args "$server")
    rm -f "$base.ready"
    python3 "$HERE/sampler.py" --pid "$(top_pid "$server")" --out "$base.sample" \
        --ready "$base.ready" --interval 1 &
    SAMPLER_PID=$!
    while [[ ! -e $base.ready ]]; do sleep 0.05; done
    timeout $((dur + 300)) "$BENCH" "${args[@]}" --clients "$clients" --duration "$dur" --workload "$wl" --json \
        >"$base.json" 2>"$base.err" || rc=$?
    kill -TERM "$SAMPLER_PID"
    wait "$SAMPLER_PID" || true
    SAMPLER_PID=
    python3 "$HERE/report.py" merge --server "$server" --row "$row" --workload "$wl" \
        --clients "$clients" --rc "$rc" --bench "$base.json" --sample "$base.sample" >>"$RAW"
    log "$(python3 - "$RAW" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
b, s = r["bench"] or {}, r["sample"] or {}
print("%-9s %-24s %4d clients: %8s ops/s, %s errors, rc %d, RSS %s MiB, CPU %s s" % (
    r["server"], r["row"], r["clients"], b.get("total_ops_per_sec", "-"),
    b.get("errors", "-"), r["rc"], round(s.get("rss_peak_kib", 0) / 1024),
    s.get("cpu_s", "-")))
PY
)"
    if [[ -s $base.err ]]; then
        sed 's/^/    stderr: /' "$base.err" | head -5 >&2
    fi
    sleep 1
}

pair() {   # row workload clients
    run ringmail "$@"
    run dovecot "$@"
}

log "starting ringmaild (127.0.0.1:$P_RM, tls $P_RMS) and dovecot (127.0.0.1:$P_DV, tls $P_DVS) in $TMP"
start_ringmail 60
start_dovecot 10M

# --- populate ----------------------------------------------------------------
POPULATE_NOTE=
for server in ringmail dovecot; do
    mapfile -t args < <(bench_args "$server")
    log "$server: populating $USERS users with $MESSAGES messages each"
    t=$SECONDS
    timeout 1200 "$BENCH" "${args[@]}" --populate "$MESSAGES" --workload login --clients 1 --duration 0.5 \
        --json >"$TMP/out/populate-$server.json" 2>"$TMP/out/populate-$server.err" ||
        die "$server: populate failed: $(tail -3 "$TMP/out/populate-$server.err")"
    POPULATE_NOTE+="$server $((SECONDS - t)) s; "
done
log "populated: ${POPULATE_NOTE%; }"
sync                                # the populate's dirty pages, not in the first row

# --- workloads -------------------------------------------------------------------
for c in $CLIENTS; do pair "login (auth cache on)" login "$c"; done
# Warm-up, unmeasured: every INBOX is listed once (UID FETCH 1:* ENVELOPE
# ...), so that Dovecot has the fields in its cache file before the headers
# rows (ringmaild renders the envelope at APPEND and needs none).
for server in ringmail dovecot; do
    mapfile -t args < <(bench_args "$server")
    timeout $((DURATION * 2 + 300)) "$BENCH" "${args[@]}" --clients "$USERS" \
        --duration $((DURATION * 2)) --workload headers --json >"$TMP/out/warmup-$server.json" \
        2>"$TMP/out/warmup-$server.err" || true
    log "$server: headers warm-up: $(python3 -c '
import json, sys
try:
    b = json.loads(open(sys.argv[1]).read().splitlines()[-1])
    c = b["commands"].get("FETCH_HEADERS", {})
    print("%d listings of %s INBOXes, %d errors" % (c.get("ops", 0), sys.argv[2], b["errors"]))
except Exception as e:
    print("no result (%s)" % e)
' "$TMP/out/warmup-$server.json" "$USERS")"
done
for wl in headers bodies mixed append; do
    for c in $CLIENTS; do pair "$wl" "$wl" "$c"; done
done
pair idle-hold idle-hold "$IDLE"

log "restarting both with their auth caches off"
stop_ringmail
stop_dovecot
start_ringmail 0
start_dovecot 0
for c in $CLIENTS; do pair "login (auth cache off)" login "$c"; done

# --- report --------------------------------------------------------------------
ELAPSED=$((SECONDS - T0))
META=$TMP/meta.md
{
    echo "# Ringmail vs Dovecot"
    echo
    echo "Made by \`bash bench/compare.sh$( ((TLS)) && echo " --tls")\` on $(date -u '+%Y-%m-%d %H:%M UTC'); the whole run took $((ELAPSED / 60)) min $((ELAPSED % 60)) s."
    echo
    echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM"
    echo "- Ringmail: $RM_VERSION (Release), ringmaild defaults (workers = one per CPU, io_backend auto) with fsync = batch, auth_cache_ttl = 60 (0 in the cache-off rows), connection limits off"
    echo "- Dovecot: $DOVECOT_VERSION, mdbox, mail_fsync = optimized (default), imap-login service_count = 0 / process_min_avail = 2, one imap process per session (service_count 1, the default), auth_cache_size = 10M (0 in the cache-off rows)"
    echo "- both: loopback only, $([ "$TLS" = 1 ] && echo "implicit TLS" || echo "plain IMAP"), $USERS users (user1..user$USERS, one $SCHEME passwd-file read by both), $MESSAGES generated messages (4-40 KB) APPENDed to each INBOX by ringmail-bench --populate (${POPULATE_NOTE%; }), $DURATION s per run, ringmail-bench on the same machine"
    echo "- before the headers rows, both got an unmeasured $((DURATION * 2)) s headers run with one client per user, so Dovecot's cache file holds the envelopes (Ringmail renders them at APPEND)"
    echo "- raw records: $(basename "$RAW")"
    echo
} >"$META"
echo
python3 "$HERE/report.py" table "$RAW" --meta "$META" --out "$OUT"
echo
log "wrote $OUT and $RAW ($((ELAPSED / 60)) min $((ELAPSED % 60)) s)"
