#!/usr/bin/env bash
# bench/resync.sh: ringmail-bench --workload resync against Ringmail and
# Dovecot in one run, on the same big INBOX.
#
#   bash bench/resync.sh [--messages M] [--users N] [--devices D] [--changes K]
#                        [--duration S] [--io uring|epoll] [--out FILE.md] [--keep]
#
# Starts ringmaild (build/, built Release if needed) and a private Dovecot
# (dovecot-imapd from apt, the config bench/compare/dovecot.conf.in in a temp
# dir; never /etc/dovecot) on free 127.0.0.1 ports, gives both the same users
# (one SHA512-CRYPT passwd-file) and the same INBOX of M small generated
# messages per user (default 100,000; ringmail-admin import for Ringmail,
# doveadm import for Dovecot, both from one mbox file), then runs the resync
# workload: Ringmail with its best method (auto), Dovecot with its best
# (auto: QRESYNC) and Dovecot with CONDSTORE (the method Ringmail uses while
# it has no QRESYNC).  Prints the table and writes it as Markdown to --out
# (default bench/resync-results.md), the raw JSON next to it (.jsonl).
#
# Defaults: 1 user x 100,000 messages, 3 devices, 10 changes a round, 20 s
# a run.  Must run as root (Dovecot drops privileges to its own users).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
RINGMAILD=$BUILD/ringmaild
ADMIN=$BUILD/ringmail-admin
BENCH=$BUILD/ringmail-bench

MESSAGES=100000
USERS=1
DEVICES=3
CHANGES=10
DURATION=20
IO=uring
OUT=$ROOT/bench/resync-results.md
KEEP=0
PASSWORD=resync-pw-3

# shellcheck source=bench/lib-peer.sh
. "$ROOT/bench/lib-peer.sh"

while (($#)); do
    case $1 in
    --messages) MESSAGES=$2; shift ;;
    --users) USERS=$2; shift ;;
    --devices) DEVICES=$2; shift ;;
    --changes) CHANGES=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --io) IO=$2; shift ;;
    --out) OUT=$2; shift ;;
    --keep) KEEP=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "resync.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done


[[ $(id -u) == 0 ]] || die "run as root (Dovecot needs it to drop privileges)"
case $OUT in /*) ;; *) OUT=$PWD/$OUT ;; esac
T0=$SECONDS

# --- build ---------------------------------------------------------------------
bench_build

# --- Dovecot (as compare.sh: never the system instance) -------------------------
need_dovecot dovecot-imapd -- /usr/lib/dovecot/imap
bench_tmp resync

read -r P_RM P_DV P_DVS < <(free_ports 3)
cat >"$RM/ringmail.conf" <<CONF
# written by bench/resync.sh
mail_root = $RM/mail
passwd_file = $RM/passwd
listen = 127.0.0.1:$P_RM
fsync = batch
auth_cache_ttl = 60
max_connections_per_user = 0
max_connections_per_ip = 0
CONF
peer_users "$USERS"

# --- the INBOX: M small messages, a third of them \Seen, every 17th \Flagged -----
MBOX=$TMP/inbox.mbox
log "generating $MESSAGES messages"
python3 - "$MESSAGES" "$MBOX" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    for i in range(1, n + 1):
        status = "Status: RO\n" if i % 3 == 0 else ""
        xstatus = "X-Status: F\n" if i % 17 == 0 else ""
        f.write("From MAILER-DAEMON Mon Dec  7 00:00:00 2026\n"
                "From: Sender %d <sender%d@example.com>\n"
                "To: Reader <reader@example.org>\n"
                "Subject: message %d of the resync benchmark\n"
                "Date: Mon, 07 Dec 2026 00:00:00 +0000\n"
                "Message-ID: <%d.resync@example.com>\n%s%s\n"
                "Body of message %d.\n\n" % (i % 97, i % 97, i, i, status, xstatus, i))
PY
chmod 644 "$MBOX"


t=$SECONDS
for ((i = 1; i <= USERS; i++)); do
    "$ADMIN" -c "$RM/ringmail.conf" import "user$i" INBOX "$MBOX" >/dev/null
done
RM_FILL=$((SECONDS - t))
"$RINGMAILD" -c "$RM/ringmail.conf" </dev/null >>"$RM/ringmaild.log" 2>&1 &
RM_PID=$!
wait_port "$P_RM" ringmaild

limit=$(( (DEVICES + 1) * USERS + 100 ))
((limit < 200)) && limit=200
dovecot_start "$P_DV" "$P_DVS" "$limit"
t=$SECONDS
for ((i = 1; i <= USERS; i++)); do
    dovecot_import "user$i" "$MBOX" "$MESSAGES"
done
DV_FILL=$((SECONDS - t))
log "filled: ringmail $RM_FILL s, dovecot $DV_FILL s"

# --- runs ------------------------------------------------------------------------------
RAW=${OUT%.md}.jsonl
[[ $RAW == "$OUT" ]] && RAW=$OUT.jsonl
: >"$RAW"
FAILED=0
run() {   # server port mode
    local server=$1 port=$2 mode=$3 rc=0 out="$TMP/out/$1-$3"
    timeout $((DURATION + 600)) "$BENCH" --host 127.0.0.1 --port "$port" --users 'user%d' \
        --nusers "$USERS" --password "$PASSWORD" --workload resync --devices "$DEVICES" \
        --changes "$CHANGES" --resync-mode "$mode" --duration "$DURATION" --io "$IO" \
        --json >"$out.json" 2>"$out.err" || rc=$?
    ((rc == 0)) || FAILED=1
    python3 - "$server" "$mode" "$rc" "$out.json" >>"$RAW" <<'PY'
import json, sys
server, mode, rc, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
try:
    bench = json.loads(open(path).read().splitlines()[-1])
except Exception:
    bench = None
print(json.dumps({"server": server, "mode": mode, "rc": rc, "bench": bench}))
PY
    log "$server ($mode): rc $rc $(tail -c 300 "$out.err" | tr '\n' ' ')"
}
run ringmail "$P_RM" auto
run dovecot "$P_DV" auto
run dovecot "$P_DV" condstore

ELAPSED=$((SECONDS - T0))
python3 - "$RAW" "$OUT" <<PY
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
head = ("| server | asked | used | resyncs/s | bytes/resync | bytes/change | p50 ms | p99 ms "
        "| mismatches | errors | rc |")
lines = ["# Resync: Ringmail vs Dovecot", "",
         "Made by \`bash bench/resync.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC') in $((ELAPSED / 60)) min $((ELAPSED % 60)) s.",
         "",
         "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r)",
         "- Ringmail $RM_VERSION ($BUILD_TYPE), fsync = batch; Dovecot $DOVECOT_VERSION, mdbox (bench/compare/dovecot.conf.in)",
         "- $USERS user(s), INBOX of $MESSAGES messages each (filled: Ringmail $RM_FILL s by import, Dovecot $DV_FILL s by doveadm import)",
         "- ringmail-bench --workload resync --devices $DEVICES --changes $CHANGES --duration $DURATION --io $IO: a round is $CHANGES changes by the writer (3 in 5 flag changes, 1 append, 1 expunge), then every device reconnects, resyncs and checks its state",
         "- bytes/resync: all received on the device's connection (greeting, LOGIN, CAPABILITY not included: asked once); resyncs/s counts the writer's changes between rounds in the elapsed time",
         "", head, "|" + "---|" * (head.count("|") - 1)]
for r in rows:
    b = r["bench"] or {}
    s = b.get("resync", {})
    used = ", ".join("%s %d" % (k, v) for k, v in s.get("modes", {}).items() if v) or "-"
    lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |" % (
        r["server"], r["mode"], used, s.get("resyncs_per_sec", "-"),
        s.get("bytes_per_resync", "-"), s.get("bytes_per_change", "-"), s.get("p50_ms", "-"),
        s.get("p99_ms", "-"), s.get("mismatches", "-"), b.get("errors", "-"), r["rc"]))
def get(server, mode, key):
    for r in rows:
        if r["server"] == server and r["mode"] == mode and r["bench"]:
            return r["bench"].get("resync", {}).get(key)
rm, dv = get("ringmail", "auto", "resyncs_per_sec"), get("dovecot", "auto", "resyncs_per_sec")
if rm and dv:
    lines += ["", "Ringmail / Dovecot (both auto): %.2fx the resyncs/s, %.2fx the bytes per resync" % (
        rm / dv, get("ringmail", "auto", "bytes_per_resync") / get("dovecot", "auto", "bytes_per_resync"))]
text = "\n".join(lines) + "\n"
open(sys.argv[2], "w").write(text)
print(text)
PY
log "wrote $OUT and $RAW"
exit "$FAILED"
