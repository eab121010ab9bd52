#!/usr/bin/env bash
# bench/query.sh: ringmail-bench workloads sort, thread and search-body
# against Ringmail and Dovecot in one run, on the same big INBOX, with a
# bystander session beside each.
#
#   bash bench/query.sh [--messages M] [--duration S] [--io uring|epoll]
#                       [--out FILE.md] [--keep]
#
# Starts ringmaild (build/, built Release if needed; workers = 1, so that
# the bystander shares the worker with the query) and a private Dovecot
# (dovecot-imapd from apt, bench/compare/dovecot.conf.in in a temp dir, no
# FTS plugin, as shipped; never /etc/dovecot) on free 127.0.0.1 ports, gives
# both one user whose INBOX is M messages from bench/gen_threads.py (default
# 100,000; ringmail-admin import and doveadm import of one mbox file), then
# runs, for each server, one client sending SORT (REVERSE DATE) UTF-8 ALL,
# THREAD REFERENCES UTF-8 ALL (also over UID N:* with a new N each time:
# the -fresh workloads) or SEARCH BODY of an absent word again and
# again for S seconds (default 20) while one more session sends NOOP after
# NOOP: its round trips say what the query costs everyone else on the
# worker (Dovecot runs each session in its own process, so its bystander
# never shares one).  The first query of each server builds what it caches;
# a warm-up query runs before the timed part.  Prints the table and writes
# it as Markdown to --out (default bench/query-results.md), the raw JSON
# next to it (.jsonl).  Must run as root (Dovecot drops privileges).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
RINGMAILD=$BUILD/ringmaild
ADMIN=$BUILD/ringmail-admin
BENCH=$BUILD/ringmail-bench

MESSAGES=100000
DURATION=20
IO=uring
OUT=$ROOT/bench/query-results.md
KEEP=0
PASSWORD=query-pw-5
USERS=2             # user1 queries, user2 is the bystander

# shellcheck source=bench/lib-peer.sh
. "$ROOT/bench/lib-peer.sh"

while (($#)); do
    case $1 in
    --messages) MESSAGES=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --io) IO=$2; shift ;;
    --out) OUT=$2; shift ;;
    --keep) KEEP=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "query.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

[[ $(id -u) == 0 ]] || die "run as root (Dovecot needs it to drop privileges)"
case $OUT in /*) ;; *) OUT=$PWD/$OUT ;; esac
T0=$SECONDS

bench_build
need_dovecot dovecot-imapd -- /usr/lib/dovecot/imap
bench_tmp query

read -r P_RM P_DV P_DVS < <(free_ports 3)
cat >"$RM/ringmail.conf" <<CONF
# written by bench/query.sh
mail_root = $RM/mail
passwd_file = $RM/passwd
listen = 127.0.0.1:$P_RM
workers = 1
fsync = batch
CONF
peer_users "$USERS"

MBOX=$TMP/inbox.mbox
log "generating $MESSAGES messages"
python3 "$ROOT/bench/gen_threads.py" "$MESSAGES" "$MBOX"
chmod 644 "$MBOX"
t=$SECONDS
"$ADMIN" -c "$RM/ringmail.conf" import user1 INBOX "$MBOX" >/dev/null
RM_FILL=$((SECONDS - t))
"$RINGMAILD" -c "$RM/ringmail.conf" </dev/null >>"$RM/ringmaild.log" 2>&1 &
RM_PID=$!
wait_port "$P_RM" ringmaild
dovecot_start "$P_DV" "$P_DVS" 200
t=$SECONDS
dovecot_import user1 "$MBOX" "$MESSAGES"
DV_FILL=$((SECONDS - t))
log "filled: ringmail $RM_FILL s, dovecot $DV_FILL s"

# One query through Python's imaplib (not timed): what the server builds on
# first use is built, and both servers give the same number of results.
warm() {   # port
    python3 - "$1" "$PASSWORD" <<'PY'
import imaplib, sys
imaplib._MAXLINE = 1 << 30     # a SORT of 10^6 is one 7 MB line
c = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
c.login("user1", sys.argv[2])
c.select("INBOX", readonly=True)
out = []
for cmd, args in (("SORT", ("(REVERSE DATE)", "UTF-8", "ALL")),
                  ("THREAD", ("REFERENCES", "UTF-8", "ALL"))):
    typ, data = c._simple_command(cmd, *args)
    typ, data = c._untagged_response(typ, data, cmd)
    line = data[-1] or b""
    out.append(len(line.split()) if cmd == "SORT" else line.count(b"(") - line.count(b"(("))
print(*out)
c.logout()
PY
}

RAW=${OUT%.md}.jsonl
[[ $RAW == "$OUT" ]] && RAW=$OUT.jsonl
: >"$RAW"
FAILED=0
run() {   # server port workload
    local server=$1 port=$2 wl=$3 rc=0 out="$TMP/out/$1-$3"
    timeout $((DURATION + 900)) "$BENCH" --host 127.0.0.1 --port "$port" --users 'user%d' \
        --nusers "$USERS" --password "$PASSWORD" --workload "$wl" --clients 1 \
        --bystander 1 --duration "$DURATION" --io "$IO" --json >"$out.json" 2>"$out.err" || rc=$?
    ((rc == 0)) || FAILED=1
    python3 - "$server" "$wl" "$rc" "$out.json" >>"$RAW" <<'PY'
import json, sys
server, wl, rc, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
try:
    bench = json.loads(open(path).read().splitlines()[-1])
except Exception:
    bench = None
print(json.dumps({"server": server, "workload": wl, "rc": rc, "bench": bench}))
PY
    log "$server $wl: rc $rc $(tail -c 300 "$out.err" | tr '\n' ' ')"
}
for s in ringmail dovecot; do
    port=$P_RM
    [[ $s == dovecot ]] && port=$P_DV
    t=$SECONDS
    counts=$(warm "$port")
    log "$s warm-up ($((SECONDS - t)) s): SORT results, THREAD threads: $counts"
    eval "WARM_${s}=\"$counts\" WARM_${s}_S=$((SECONDS - t))"
    for wl in sort thread sort-fresh thread-fresh search-body; do
        run "$s" "$port" "$wl"
    done
done

ELAPSED=$((SECONDS - T0))
python3 - "$RAW" "$OUT" <<PY
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cmd = {"sort": "SORT", "thread": "THREAD", "sort-fresh": "SORT", "thread-fresh": "THREAD",
       "search-body": "SEARCH_BODY"}
head = "| server | workload | queries/s | p50 ms | p99 ms | bystander NOOP p50 / p99 / max ms | errors | rc |"
lines = ["# SORT, THREAD and SEARCH: Ringmail vs Dovecot", "",
         "Made by \`bash bench/query.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC') in $((ELAPSED / 60)) min $((ELAPSED % 60)) s.",
         "",
         "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r)",
         "- Ringmail $RM_VERSION ($BUILD_TYPE), workers = 1; Dovecot $DOVECOT_VERSION, mdbox, no FTS plugin (bench/compare/dovecot.conf.in)",
         "- one INBOX of $MESSAGES messages from bench/gen_threads.py (filled: Ringmail $RM_FILL s by import, Dovecot $DV_FILL s by doveadm import)",
         "- first query (imaplib, not timed, builds caches): Ringmail ${WARM_ringmail_S} s, Dovecot ${WARM_dovecot_S} s; SORT results and THREAD threads: Ringmail ${WARM_ringmail}, Dovecot ${WARM_dovecot}",
         "- ringmail-bench --clients 1 --bystander 1 --duration $DURATION --io $IO: sort = SORT (REVERSE DATE) UTF-8 ALL, thread = THREAD REFERENCES UTF-8 ALL (the same query again and again, as a folder view; Ringmail answers repeats from its kept answers), sort-fresh and thread-fresh = UID SORT / UID THREAD of UID N:* with N = 1, 2, 3, ... (a different set each time: computed afresh), search-body = SEARCH BODY of a word no message has; the bystander sends NOOP after NOOP (2 ms apart) on the same worker (Ringmail) or in its own process (Dovecot)",
         "", head, "|" + "---|" * (head.count("|") - 1)]
rate = {}
for r in rows:
    b = r["bench"] or {}
    c = b.get("commands", {}).get(cmd[r["workload"]], {})
    by = b.get("bystander", {})
    rate[(r["server"], r["workload"])] = c.get("ops_per_sec")
    lines.append("| %s | %s | %s | %s | %s | %s / %s / %s | %s | %d |" % (
        r["server"], r["workload"], c.get("ops_per_sec", "-"), c.get("p50_ms", "-"),
        c.get("p99_ms", "-"), by.get("p50_ms", "-"), by.get("p99_ms", "-"), by.get("max_ms", "-"),
        b.get("errors", "-"), r["rc"]))
lines.append("")
for wl in cmd:
    a, b = rate.get(("ringmail", wl)), rate.get(("dovecot", wl))
    if a and b:
        lines.append("- %s: Ringmail %.2fx Dovecot's queries/s" % (wl, a / b))
text = "\n".join(lines) + "\n"
open(sys.argv[2], "w").write(text)
print(text)
PY
log "wrote $OUT and $RAW"
exit "$FAILED"
