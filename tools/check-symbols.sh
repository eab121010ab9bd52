#!/usr/bin/env bash
# tools/check-symbols.sh — every name a library exports carries its prefix.
#
#   check-symbols.sh LIBRARY PREFIX [LIBRARY PREFIX]...
#
# A static library's global symbols share one namespace with everything it
# is linked with, so store/ exports only store_* and net/ only net_*; a
# helper that crosses files inside a folder is prefixed too, one that does
# not is static.  Names beginning with "__" belong to the compiler (ASan's
# __odr_asan.*) and are skipped.  Exits 1 and names each stray symbol; the
# nm used is $NM, else nm.  (ctest 'symbols' runs it on the store and net
# libraries; tests/symbols/selftest.sh shows it catches a stray name.)
set -euo pipefail
nm=${NM:-nm}

if [ $# = 0 ] || [ $(($# % 2)) != 0 ]; then
  echo "usage: check-symbols.sh LIBRARY PREFIX [LIBRARY PREFIX]..." >&2
  exit 2
fi

bad=0
while [ $# -gt 0 ]; do
  lib=$1 prefix=$2
  shift 2
  # POSIX format: "name type value size"; archive member headers have one
  # field.  A failing nm must fail the check, not pass it empty.
  syms=$("$nm" -P -g --defined-only "$lib") || {
    echo "check-symbols: $nm failed on $lib" >&2
    exit 2
  }
  stray=$(awk -v p="$prefix" 'NF >= 2 && length($2) == 1 &&
                              index($1, p) != 1 && index($1, "__") != 1 {
                                print $1 }' <<<"$syms" | sort -u)
  if [ -n "$stray" ]; then
    echo "check-symbols: $lib exports $(wc -l <<<"$stray") name(s) without" \
         "the $prefix prefix:" $stray >&2
    bad=1
  fi
done
exit $bad
