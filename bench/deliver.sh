#!/usr/bin/env bash
# bench/deliver.sh: ringmail-bench --workload deliver against Ringmail and
# Dovecot's LMTP in one run.
#
#   bash bench/deliver.sh [--users N] [--clients C] [--duration S] [--max-rcpts R]
#                         [--io uring|epoll] [--seed S] [--out FILE.md] [--keep]
#
# Starts ringmaild (build/, built if needed; fsync = batch, LMTP on a Unix
# socket) and a private Dovecot (dovecot-imapd and dovecot-lmtpd from apt, a
# config written here into a temp dir: never /etc/dovecot, never the system
# instance; LMTP on a Unix socket in that dir, IMAP on a free 127.0.0.1
# port, mdbox, mail_fsync at its default "optimized") with the same users
# (one SHA512-CRYPT passwd-file), all INBOXes empty.  Then the same
# deliver run against each: C LMTP clients deliver generated 4-40 KB
# messages (the same ones: --seed) to 1..R users each, while one IMAP IDLE
# session per user (the server's own IMAP) times the EXISTS.  Prints the
# table and writes it as Markdown to --out (default bench/deliver-results.md),
# the raw JSON next to it (.jsonl).
#
# Defaults: 20 users, 8 clients, 5 recipients at most, 20 s a run.  Must run
# as root (Dovecot drops privileges to its own users).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
RINGMAILD=$BUILD/ringmaild
ADMIN=$BUILD/ringmail-admin
BENCH=$BUILD/ringmail-bench

USERS=20
CLIENTS=8
DURATION=20
MAXRCPTS=5
IO=uring
SEED=1
OUT=$ROOT/bench/deliver-results.md
KEEP=0
PASSWORD=deliver-pw-4

# shellcheck source=bench/lib-peer.sh
. "$ROOT/bench/lib-peer.sh"

while (($#)); do
    case $1 in
    --users) USERS=$2; shift ;;
    --clients) CLIENTS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --max-rcpts) MAXRCPTS=$2; shift ;;
    --io) IO=$2; shift ;;
    --seed) SEED=$2; shift ;;
    --out) OUT=$2; shift ;;
    --keep) KEEP=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "deliver.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done


[[ $(id -u) == 0 ]] || die "run as root (Dovecot needs it to drop privileges)"
case $OUT in /*) ;; *) OUT=$PWD/$OUT ;; esac
T0=$SECONDS

# --- build ---------------------------------------------------------------------
bench_build

# --- Dovecot (as compare.sh: never the system instance) -------------------------
need_dovecot dovecot-imapd dovecot-lmtpd -- /usr/lib/dovecot/imap /usr/lib/dovecot/lmtp
bench_tmp deliver

read -r P_RM P_DV < <(free_ports 2)

cat >"$RM/ringmail.conf" <<CONF
# written by bench/deliver.sh
mail_root = $RM/mail
passwd_file = $RM/passwd
listen = 127.0.0.1:$P_RM
listen_lmtp = $RM/lmtp
fsync = batch
auth_cache_ttl = 60
max_connections_per_user = 0
max_connections_per_ip = 0
CONF
peer_users "$USERS"

LIMIT=$((USERS + CLIENTS + 100))
cat >"$DV/dovecot.conf" <<CONF
# written by bench/deliver.sh; nothing here reads or writes /etc/dovecot.
instance_name = ringmail-deliver-$$
base_dir = $DV/run
state_dir = $DV/state
log_path = $DV/dovecot.log
info_log_path = $DV/dovecot.info.log

protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
# RCPT TO:<user1@example.org> is user1, as ringmaild's lmtp_user_domain = strip
auth_username_format = %Ln

default_internal_user = dovecot
default_login_user = dovenull
mail_uid = $MAIL_UID
mail_gid = $MAIL_GID
first_valid_uid = 1
first_valid_gid = 1

# mdbox: Dovecot's fastest format.  mail_fsync stays at its default
# (optimized): the saved mail is fsynced before LMTP answers 250.
mail_location = mdbox:~/mdbox
mail_home = $DV/mail/%u

passdb {
  driver = passwd-file
  args = $DV/passwd
}
userdb {
  driver = passwd-file
  args = $DV/passwd
  default_fields = uid=$MAIL_UID gid=$MAIL_GID home=$DV/mail/%u
}
auth_cache_size = 10M
auth_cache_ttl = 60 s

default_process_limit = $LIMIT
default_client_limit = $((LIMIT * 3))
default_vsz_limit = 1G
mail_max_userip_connections = $LIMIT

service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $P_DV
  }
  inet_listener imaps {
    port = 0
  }
  service_count = 0
  process_min_avail = 2
}
service imap {
  process_limit = $LIMIT
}
# LMTP on a Unix socket only; long-lived processes (as imap-login)
service lmtp {
  unix_listener lmtp-bench {
    mode = 0666
  }
  inet_listener lmtp {
    port = 0
  }
  service_count = 0
  process_min_avail = 2
  process_limit = $LIMIT
}
CONF
# Dovecot's own lmtp socket file name stays under base_dir
DV_LMTP=$DV/run/lmtp-bench

wait_sock() {
    for _ in $(seq 200); do
        [[ -S $1 ]] && return 0
        sleep 0.05
    done
    die "no LMTP socket $1"
}

"$RINGMAILD" -c "$RM/ringmail.conf" </dev/null >>"$RM/ringmaild.log" 2>&1 &
RM_PID=$!
wait_port "$P_RM" ringmaild
wait_sock "$RM/lmtp"
dovecot -c "$DV/dovecot.conf"
wait_port "$P_DV" dovecot
wait_sock "$DV_LMTP"

# --- runs ------------------------------------------------------------------------------
RAW=${OUT%.md}.jsonl
[[ $RAW == "$OUT" ]] && RAW=$OUT.jsonl
: >"$RAW"
FAILED=0
run() {   # server imap-port lmtp-socket
    local server=$1 port=$2 sock=$3 rc=0 out="$TMP/out/$1"
    timeout $((DURATION + 300)) "$BENCH" --host 127.0.0.1 --port "$port" --users 'user%d' \
        --nusers "$USERS" --password "$PASSWORD" --workload deliver --lmtp "$sock" \
        --clients "$CLIENTS" --max-rcpts "$MAXRCPTS" --seed "$SEED" --duration "$DURATION" \
        --io "$IO" --json >"$out.json" 2>"$out.err" || rc=$?
    ((rc == 0)) || FAILED=1
    python3 - "$server" "$rc" "$out.json" >>"$RAW" <<'PY'
import json, sys
server, rc, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    bench = json.loads(open(path).read().splitlines()[-1])
except Exception:
    bench = None
print(json.dumps({"server": server, "rc": rc, "bench": bench}))
PY
    log "$server: rc $rc $(tail -c 300 "$out.err" | tr '\n' ' ')"
}
run ringmail "$P_RM" "$RM/lmtp"
run dovecot "$P_DV" "$DV_LMTP"
if grep -qiE "error|fatal|panic" "$DV/dovecot.log" 2>/dev/null; then
    log "dovecot.log: $(grep -iE 'error|fatal|panic' "$DV/dovecot.log" | tail -3)"
fi

ELAPSED=$((SECONDS - T0))
python3 - "$RAW" "$OUT" <<PY
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
head = ("| server | deliveries/s | recipients/s | delivery p50 ms | p99 ms | max ms "
        "| 250->EXISTS p50 ms | p99 ms | EXISTS early | MAIL->EXISTS p50 ms | p99 ms "
        "| seen/copies | bad replies | errors | rc |")
lines = ["# LMTP delivery: Ringmail vs Dovecot", "",
         "Made by \`bash bench/deliver.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC') in $((ELAPSED / 60)) min $((ELAPSED % 60)) s.",
         "",
         "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r); the bench runs on the same CPUs",
         "- Ringmail $RM_VERSION ($BUILD_TYPE), fsync = batch (a group commit: the copy is fsynced before its 250); Dovecot $DOVECOT_VERSION, mdbox, mail_fsync = optimized (its default: the saved mail is fsynced before the 250), lmtp and imap-login long-lived (service_count = 0)",
         "- LMTP over a Unix socket, IMAP on 127.0.0.1; $USERS users, empty INBOXes at the start, one IDLE watcher per user",
         "- ringmail-bench --workload deliver --clients $CLIENTS --max-rcpts $MAXRCPTS --seed $SEED --duration $DURATION --io $IO: 4-40 KB messages (text, alternative, mixed with a base64 attachment), 1..$MAXRCPTS recipients each, MAIL/RCPT/DATA pipelined, every reply checked",
         "- delivery: MAIL written until the last 250 after the data; 250->EXISTS: that last 250 until the watcher's EXISTS, matched by count per user (an EXISTS before the 250 counts 0 ms: \"early\"); MAIL->EXISTS: the transaction's first write until the EXISTS",
         "", head, "|" + "---|" * (head.count("|") - 1)]
for r in rows:
    b = r["bench"] or {}
    d = b.get("deliver", {})
    lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s/%s | %s | %s | %d |" % (
        r["server"], d.get("deliveries_per_sec", "-"), d.get("recipients_per_sec", "-"),
        d.get("p50_ms", "-"), d.get("p99_ms", "-"), d.get("max_ms", "-"),
        d.get("exists_p50_ms", "-"), d.get("exists_p99_ms", "-"), d.get("exists_early", "-"),
        d.get("start_exists_p50_ms", "-"), d.get("start_exists_p99_ms", "-"),
        d.get("exists_seen", "-"), d.get("exists_expected", "-"), d.get("bad_replies", "-"),
        b.get("errors", "-"), r["rc"]))
def get(server, key):
    for r in rows:
        if r["server"] == server and r["bench"]:
            return r["bench"].get("deliver", {}).get(key)
rm, dv = get("ringmail", "deliveries_per_sec"), get("dovecot", "deliveries_per_sec")
if rm and dv:
    lines += ["", "Ringmail / Dovecot: %.2fx the deliveries/s; delivery p99 %.2fx; 250->EXISTS p99 %s ms vs %s ms" % (
        rm / dv, get("ringmail", "p99_ms") / max(get("dovecot", "p99_ms"), 0.001),
        get("ringmail", "exists_p99_ms"), get("dovecot", "exists_p99_ms"))]
lines += ["", "Notes:", "",
          "- Durability: both answer 250 only once the copy is on disk. ringmaild fsync = batch: a copy is fsynced before its 250, concurrent writers of one mailbox sharing the flush; Dovecot mail_fsync = optimized (its default; \"always\" would add fsyncs it does not need for saved mail): the saved mail and its index are fsynced at the commit that precedes the 250.",
          "- Dovecot's IDLE learns of the new mail by inotify, then waits NOTIFY_DELAY_MSECS = 500 (src/lib-storage/mailbox-watch.c) to coalesce changes: hence its 250->EXISTS of a few hundred ms.",
          "- Ringmail wakes a mailbox's IDLE sessions from the sync pool as soon as that copy is written, before the flush and before the worker sends the replies in recipient order: the EXISTS usually comes before the last 250 (\"early\", counted as 0 ms), so MAIL->EXISTS is the end-to-end figure.",
          "- Ringmail writes a transaction's copies one after another and then flushes them together (deferred durability, core/server/lmtp_deliver.c) before any 250."]
text = "\n".join(lines) + "\n"
open(sys.argv[2], "w").write(text)
print(text)
PY
log "wrote $OUT and $RAW"
exit "$FAILED"
