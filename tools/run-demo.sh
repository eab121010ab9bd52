#!/usr/bin/env bash
# tools/run-demo.sh — the README's run command.
#
# Builds Ringmail (build/), creates a demo mail store with a user "demo"
# (INBOX with a few sample messages imported from tools/demo/sample.mbox,
# plus Sent, Drafts, Trash, Archive), shows what ringmail-admin reports about
# it, and says what to run next.  Re-running it is safe: nothing is created
# or imported twice.
#
#   RINGMAIL_DATA   the demo mail_root (default ./ringmail-data)
#
# ringmaild, the IMAP server, does not exist yet: when build/ringmaild
# appears, the block marked "SERVER START" below is where it gets started.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
DATA=${RINGMAIL_DATA:-./ringmail-data}
mkdir -p "$DATA"
DATA=$(cd "$DATA" && pwd)          # absolute, so the printed commands work anywhere
DEMO_USER=demo
SAMPLE="$ROOT/tools/demo/sample.mbox"
ADMIN="${RINGMAIL_DEMO_BUILD:-$ROOT/build}/ringmail-admin"

echo "=== run-demo: dependencies ==="
bash "$ROOT/tools/setup-deps.sh"

echo "=== run-demo: build (build/, -j$(nproc)) ==="
mkdir -p "$ROOT/build"
cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DRINGMAIL_SANITIZE=OFF >"$ROOT/build/run-demo-configure.log" 2>&1 \
  || { cat "$ROOT/build/run-demo-configure.log"; exit 1; }
cmake --build "$ROOT/build" -j "$(nproc)" >"$ROOT/build/run-demo-build.log" 2>&1 \
  || { tail -n 40 "$ROOT/build/run-demo-build.log"; echo "run-demo: build failed" >&2; exit 1; }
built=()
for prog in ringmail-admin ringmaild bench/ringmail-microbench; do
  [[ -x "$ROOT/build/$prog" ]] && built+=("build/$prog")
done
echo "built: ${built[*]}"

# Every admin call names the mail_root explicitly (-o overrides any config
# file), so the demo never touches another store.
admin() { "$ADMIN" -o "mail_root=$DATA" "$@"; }

echo
echo "=== run-demo: demo store in $DATA ==="
# Mailboxes: creating the first one also creates the user and its INBOX.
existing=$(admin mailbox list "$DEMO_USER" 2>/dev/null | cut -f1 || true)
for spec in Sent:sent Drafts:drafts Trash:trash Archive:archive; do
  name=${spec%%:*}
  special=${spec#*:}
  if ! grep -qx -- "$name" <<<"$existing"; then
    admin mailbox create "$DEMO_USER" "$name" --special "$special"
  fi
done

# Import once: only into an empty INBOX.
inbox_count=$(admin mailbox status "$DEMO_USER" INBOX | sed -n 's/^messages: *//p')
if [[ "${inbox_count:-0}" == 0 ]]; then
  admin import "$DEMO_USER" INBOX "$SAMPLE"
else
  echo "INBOX already holds $inbox_count messages: not importing again"
fi

echo
echo "--- ringmail-admin stats $DEMO_USER"
admin stats "$DEMO_USER"
echo
echo "--- ringmail-admin mailbox status $DEMO_USER INBOX"
admin mailbox status "$DEMO_USER" INBOX
echo
echo "--- ringmail-admin check $DEMO_USER"
admin check "$DEMO_USER"

# ---------------------------------------------------------------------------
# The server: user demo (password "demo") in a passwd-file beside the store,
# ringmaild on loopback in the foreground; ^C (SIGINT) stops it cleanly.
PORT=${RINGMAIL_PORT:-1143}
TLS_PORT=${RINGMAIL_TLS_PORT:-1993}
PASSWD="$DATA/passwd"
if ! grep -q "^$DEMO_USER:" "$PASSWD" 2>/dev/null; then
  echo demo | admin -o "passwd_file=$PASSWD" user add --scheme SHA512-CRYPT "$DEMO_USER"
fi
# A self-signed certificate for localhost, made on the first run.
CERT="$DATA/tls/cert.pem"
KEY="$DATA/tls/key.pem"
if [[ ! -s "$CERT" || ! -s "$KEY" ]]; then
  mkdir -p "$DATA/tls"
  chmod 700 "$DATA/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$KEY" -out "$CERT" 2>/dev/null
  chmod 600 "$KEY"
  echo "made a self-signed certificate: $CERT"
fi

cat <<NEXT

=== run-demo: ringmaild on 127.0.0.1:$PORT (STARTTLS) and :$TLS_PORT (TLS) ===
Connect with any IMAP client: host 127.0.0.1, port $TLS_PORT with TLS (trust
$CERT), or port $PORT (STARTTLS, or plain: plaintext login is accepted on
loopback), user '$DEMO_USER', password 'demo'.  E.g.:

  openssl s_client -quiet -connect 127.0.0.1:$TLS_PORT -CAfile $CERT

  python3 -c "import imaplib; M = imaplib.IMAP4('127.0.0.1', $PORT); \\
    M.login('demo', 'demo'); print(M.select('INBOX')); \\
    print(M.fetch('1:*', '(FLAGS ENVELOPE)'))"

Meanwhile, in another terminal:
  build/ringmail-admin -o mail_root=$DATA stats $DEMO_USER
  build/ringmail-admin -o mail_root=$DATA check $DEMO_USER
  bash tools/run-tests.sh                      # all tests (release + ASan/UBSan)

Stop the server with ^C.  Remove the demo with: rm -rf $DATA
NEXT

exec "${RINGMAIL_DEMO_BUILD:-$ROOT/build}/ringmaild" -o "mail_root=$DATA" -o "passwd_file=$PASSWD" \
  -o "listen=127.0.0.1:$PORT" -o "listen_tls=127.0.0.1:$TLS_PORT" \
  -o "tls_cert=$CERT" -o "tls_key=$KEY"
