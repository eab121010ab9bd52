#!/usr/bin/env bash
# bench/cold.sh: what a long query over a mailbox whose files are not in
# memory costs the other sessions on its worker.
#
#   bash bench/cold.sh [--messages M] [--duration S] [--server DIR]...
#                      [--out FILE.md] [--keep]
#
# Builds ringmaild, ringmail-admin and ringmail-bench in build/ (Release if
# it is not configured), imports M messages from bench/gen_threads.py
# (default 100,000) into user1's INBOX, then, for each server build (the
# ringmaild of each --server DIR, default build/; several compare binaries
# on the same mailbox in one run) and each workload -- search-body with the
# search index deleted first (the first SEARCH BODY builds it and reads
# every message), sort-fresh and thread-fresh (the first reads every cache
# blob), headers (UID FETCH 1:* ENVELOPE, RFC822.SIZE, FLAGS: the same
# blobs, as a client's first sync) -- stops ringmaild, drops the mailbox's files from the page cache
# (written out, then posix_fadvise DONTNEED, as memory pressure would),
# starts it again (workers = 1) and runs ringmail-bench --clients 1
# --bystander 1 for S seconds (default 10).  The bystander's NOOP round
# trips (p99, max) say what the cold reads cost the worker; the server's
# ringmail_store_cold_reads_total how many stretches went to the sync pool.
# Writes the table as Markdown to --out (default bench/cold-results.md) and
# the raw JSON next to it (.jsonl).  Needs no root: no peer server runs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
RINGMAILD=$BUILD/ringmaild
ADMIN=$BUILD/ringmail-admin
BENCH=$BUILD/ringmail-bench

MESSAGES=100000
DURATION=10
SERVERS=()
OUT=$ROOT/bench/cold-results.md
KEEP=0
PASSWORD=cold-pw-5
USERS=2             # user1 queries, user2 is the bystander

# shellcheck source=bench/lib-peer.sh
. "$ROOT/bench/lib-peer.sh"

while (($#)); do
    case $1 in
    --messages) MESSAGES=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --server) SERVERS+=("$(cd "$2" && pwd)"); shift ;;
    --out) OUT=$2; shift ;;
    --keep) KEEP=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "cold.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
((${#SERVERS[@]})) || SERVERS=("$BUILD")
case $OUT in /*) ;; *) OUT=$PWD/$OUT ;; esac
for d in "${SERVERS[@]}"; do [[ -x $d/ringmaild ]] || die "no ringmaild in $d"; done
T0=$SECONDS

bench_build
bench_tmp cold
read -r P_RM P_MET < <(free_ports 2)
cat >"$RM/ringmail.conf" <<CONF
# written by bench/cold.sh
mail_root = $RM/mail
passwd_file = $RM/passwd
listen = 127.0.0.1:$P_RM
listen_metrics = 127.0.0.1:$P_MET
workers = 1
fsync = batch
CONF
for i in $(seq "$USERS"); do
    printf '%s\n' "$PASSWORD" |
        "$ADMIN" -c "$RM/ringmail.conf" user add --scheme SHA512-CRYPT "user$i" >/dev/null
done

MBOX=$TMP/inbox.mbox
log "generating $MESSAGES messages"
python3 "$ROOT/bench/gen_threads.py" "$MESSAGES" "$MBOX"
t=$SECONDS
"$ADMIN" -c "$RM/ringmail.conf" import user1 INBOX "$MBOX" >/dev/null
log "imported in $((SECONDS - t)) s"
rm -f "$MBOX"

# The mailbox's files out of memory: written out (the kernel drops only
# clean pages) and dropped; with drop_index, the search index deleted too.
drop() {   # drop_index
    python3 - "$RM/mail" "$1" <<'PY'
import os, sys
for d, _dirs, files in os.walk(sys.argv[1]):
    for name in files:
        p = os.path.join(d, name)
        if sys.argv[2] == "1" and name.startswith("sindex."):
            os.unlink(p)
            continue
        fd = os.open(p, os.O_RDONLY)
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
PY
}

cold_reads() {
    curl -s "http://127.0.0.1:$P_MET/metrics" |
        awk '$1 == "ringmail_store_cold_reads_total" { print $2 }'
}

RAW=${OUT%.md}.jsonl
[[ $RAW == "$OUT" ]] && RAW=$OUT.jsonl
: >"$RAW"
FAILED=0
for dir in "${SERVERS[@]}"; do
    name=$(git -C "$dir/.." describe --always --dirty 2>/dev/null || echo "$dir")
    for wl in search-body sort-fresh thread-fresh headers; do
        if [[ -n $RM_PID ]]; then
            kill -TERM "$RM_PID"
            wait "$RM_PID" || true
        fi
        drop "$([[ $wl == search-body ]] && echo 1 || echo 0)"
        "$dir/ringmaild" -c "$RM/ringmail.conf" </dev/null >>"$RM/ringmaild.log" 2>&1 &
        RM_PID=$!
        wait_port "$P_RM" ringmaild
        out=$TMP/out/$wl
        rc=0
        timeout $((DURATION + 900)) "$BENCH" --host 127.0.0.1 --port "$P_RM" \
            --users 'user%d' --nusers "$USERS" --password "$PASSWORD" --workload "$wl" \
            --clients 1 --bystander 1 --duration "$DURATION" --json \
            >"$out.json" 2>"$out.err" || rc=$?
        ((rc == 0)) || FAILED=1
        reads=$(cold_reads || true)
        python3 - "$name" "$wl" "$rc" "$out.json" "${reads:-}" >>"$RAW" <<'PY'
import json, sys
name, wl, rc, path, reads = sys.argv[1:6]
try:
    bench = json.loads(open(path).read().splitlines()[-1])
except Exception:
    bench = None
print(json.dumps({"server": name, "workload": wl, "rc": int(rc), "bench": bench,
                  "cold_reads": float(reads) if reads else None}))
PY
        log "$name $wl: rc $rc, cold reads ${reads:-none}"
    done
done

ELAPSED=$((SECONDS - T0))
python3 - "$RAW" "$OUT" <<PY
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cmd = {"sort-fresh": "SORT", "thread-fresh": "THREAD", "search-body": "SEARCH_BODY",
       "headers": "FETCH_HEADERS"}
head = ("| server | workload | first query ms (max) | bystander NOOP p50 / p99 / max ms "
        "| cold reads moved | rc |")
lines = ["# Long queries over a cold mailbox: what the worker's other sessions see", "",
         "Made by \`bash bench/cold.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC') in "
         "$((ELAPSED / 60)) min $((ELAPSED % 60)) s.", "",
         "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r)",
         "- one INBOX of $MESSAGES messages from bench/gen_threads.py; before each row ringmaild "
         "(workers = 1) is restarted and the mailbox's files dropped from the page cache "
         "(search-body: the search index deleted too)",
         "- ringmail-bench --clients 1 --bystander 1 --duration $DURATION: the first query of each "
         "row reads the cold files, later ones what it kept; the bystander sends NOOP after NOOP "
         "on the same worker", "", head, "|" + "---|" * (head.count("|") - 1)]
for r in rows:
    b = r["bench"] or {}
    c = b.get("commands", {}).get(cmd[r["workload"]], {})
    by = b.get("bystander", {})
    lines.append("| %s | %s | %s | %s / %s / %s | %s | %d |" % (
        r["server"], r["workload"], c.get("max_ms", "-"), by.get("p50_ms", "-"),
        by.get("p99_ms", "-"), by.get("max_ms", "-"),
        "-" if r["cold_reads"] is None else "%d" % r["cold_reads"], r["rc"]))
text = "\n".join(lines) + "\n"
open(sys.argv[2], "w").write(text)
print(text)
PY
log "wrote $OUT and $RAW"
exit "$FAILED"
