#!/usr/bin/env bash
# tests/symbols/selftest.sh CHECK CLEAN_LIB STRAY_LIB — check-symbols.sh
# passes a library whose exports all carry the prefix, and fails one that
# exports two stray names, naming both and nothing else.
set -uo pipefail
check=$1 clean=$2 stray=$3
fail=0

if ! out=$(bash "$check" "$clean" probe_ 2>&1); then
  echo "selftest: a clean library was rejected: $out" >&2
  fail=1
fi

out=$(bash "$check" "$clean" probe_ "$stray" probe_ 2>&1)
rc=$?
if [ $rc != 1 ]; then
  echo "selftest: exit $rc for a library with stray names, want 1: $out" >&2
  fail=1
fi
case $out in
  *"2 name(s) without the probe_ prefix: stray_fn stray_var") ;;
  *) echo "selftest: wrong report for the stray library: $out" >&2; fail=1 ;;
esac
case $out in
  *probe_ok*|*probe_count*|*helper*)
     echo "selftest: a prefixed or static name was reported: $out" >&2
     fail=1 ;;
esac
[ $fail = 0 ] && echo "selftest: ok"
exit $fail
