#!/usr/bin/env bash
# tools/check-layers.sh — every project #include points down the layers.
#
# A folder may include its own headers and those of the folders listed for
# it here, nothing else: store/ and net/ know nothing above them, core/imap/
# knows no session and no store (but its UTF-8 helpers), net/ may use
# store/assert.h (the always-on assertion), the server sits on top.  An
# entry is a folder (any header in it) or one header's path (that header
# only: "store/utf8.h").  Run from anywhere;
# exits 1 and names each include that breaks the order.  (A ctest test runs
# it; CMakeLists.txt links the libraries in the same order.)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

declare -A ALLOW=(
  [store]=""
  [net]="store/assert.h"
  [core/imap]="store/utf8.h"
  [core/lmtp]="store/utf8.h store/assert.h"
  [core/base]="store"
  [core/auth]="net store/utf8.h store/base64.h store/stats.h"
  [core/fetch]="core/imap store"
  [core/search]="core/fetch core/imap store"
  [core/server]="core/search core/fetch core/auth core/lmtp core/imap core/base store net"
  [tools]="core/base core/auth core/fetch core/imap store"
  [tools/migrate]="tools core/base core/auth core/fetch core/imap store"
  [bench]="core/server core/search core/fetch core/auth core/lmtp core/imap core/base store net"
)

bad=0
for dir in "${!ALLOW[@]}"; do
  for f in $(find "$dir" -maxdepth 1 -name '*.[ch]' -o -maxdepth 1 -name '*.cc' | sort); do
    while IFS= read -r inc; do
      target=${inc%/*}
      [ "$target" = "$inc" ] && continue      # same-folder include ("x.h")
      [ "$target" = "$dir" ] && continue
      ok=0
      for a in ${ALLOW[$dir]}; do
        if [ "$target" = "$a" ] || [ "$inc" = "$a" ]; then ok=1; fi
      done
      if [ $ok = 0 ]; then
        echo "check-layers: $f includes \"$inc\": $dir may not know $target" >&2
        bad=1
      fi
    done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
  done
done
# A single-header entry must name a header that exists (a rename would
# otherwise leave a rule that allows nothing, silently).
for dir in "${!ALLOW[@]}"; do
  for a in ${ALLOW[$dir]}; do
    case $a in
      *.h) [ -f "$a" ] || { echo "check-layers: rule for $dir names $a, which does not exist" >&2; bad=1; } ;;
    esac
  done
done
# Every folder with sources must be in the table, so a new one gets a rule.
for d in store net tools tools/migrate bench core/*/; do
  d=${d%/}
  [ -n "${ALLOW[$d]+x}" ] || { echo "check-layers: $d has no rule" >&2; bad=1; }
done
# ringmail-admin links no TLS library: only ringmail-migrate (tools/migrate/,
# which speaks IMAP to another server) may use BoringSSL's libssl.
for f in tools/*.[ch]; do
  if grep -q '^[[:space:]]*#[[:space:]]*include[[:space:]]*<openssl/ssl\.h>' "$f"; then
    echo "check-layers: $f includes <openssl/ssl.h>: ringmail-admin links no libssl (TLS lives in tools/migrate/)" >&2
    bad=1
  fi
done
[ -z "$(find core -maxdepth 1 -name '*.[ch]')" ] ||
  { echo "check-layers: sources directly in core/ (put them in a folder)" >&2; bad=1; }
[ $bad = 0 ] && echo "check-layers: ok"
exit $bad
