#!/usr/bin/env bash
# tools/run-tests.sh — Ringmail's test command (the README's and CI's).
#
#   1. installs missing build dependencies (tools/setup-deps.sh)
#   2. release build in build/ (RelWithDebInfo), ctest there
#      (includes a smoke run of the microbenchmarks at tiny sizes)
#   3. ASan+UBSan build in build-asan/ (-DRINGMAIL_SANITIZE=ON), ctest there
#      with RINGMAIL_TEST_QUICK=1 and leak detection on
#   4. clang build of the whole tree in build-clang/ (-Werror: the code must
#      be warning-free under both compilers), its unit tests there
#   5. the libFuzzer targets (clang, build-fuzz/)
#   6. prints a summary; exits non-zero if any step failed
#
# Every step runs even if an earlier one failed, so one run shows everything.
# Tests run in their own process group, which is killed afterwards: a test
# that leaves a server behind cannot keep it running past this script.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$(pwd)
JOBS=$(nproc 2>/dev/null || echo 2)
CTEST_JOBS=2

declare -a STEP_NAMES=() STEP_RESULTS=()
TOTAL_PASSED=0
TOTAL_FAILED=0
FAILED=0
CHILD_PGID=""

record() {  # name result
  STEP_NAMES+=("$1")
  STEP_RESULTS+=("$2")
  [[ "$2" == ok* ]] || FAILED=1
}

# shellcheck disable=SC2317  # called through the traps below
cleanup() {
  if [[ -n "$CHILD_PGID" ]]; then
    kill -TERM -- "-$CHILD_PGID" 2>/dev/null || true
    CHILD_PGID=""
  fi
}
trap cleanup EXIT
trap 'cleanup; echo "run-tests: interrupted" >&2; exit 130' INT TERM

# Run a command in its own process group (setsid), output to a log shown
# live, wait for it, then kill whatever it left behind in that group.
run_grouped() {  # log cmd...
  local log=$1
  shift
  : >"$log"
  setsid "$@" >"$log" 2>&1 </dev/null &
  CHILD_PGID=$!
  tail -n +1 -f --pid="$CHILD_PGID" "$log" &
  local tailpid=$! rc=0
  wait "$CHILD_PGID" || rc=$?
  wait "$tailpid" 2>/dev/null || true
  if kill -0 -- "-$CHILD_PGID" 2>/dev/null; then
    echo "run-tests: killing processes left behind by: $*" >&2
    kill -TERM -- "-$CHILD_PGID" 2>/dev/null || true
    sleep 1
    kill -KILL -- "-$CHILD_PGID" 2>/dev/null || true
  fi
  CHILD_PGID=""
  return "$rc"
}

build() {  # dir label cmake-args...
  local dir=$1 label=$2
  shift 2
  mkdir -p "$ROOT/$dir"
  local clog="$ROOT/$dir/run-tests-configure.log" blog="$ROOT/$dir/run-tests-build.log"
  echo
  echo "=== run-tests: configure + build $label ($dir, -j$JOBS) ==="
  if ! cmake -S "$ROOT" -B "$ROOT/$dir" "$@" >"$clog" 2>&1; then
    cat "$clog"
    record "build $label" "FAILED (cmake configure)"
    return 1
  fi
  local rc=0
  cmake --build "$ROOT/$dir" -j "$JOBS" >"$blog" 2>&1 || rc=$?
  # Warnings are errors (-Werror); show them and any other failure.
  grep -E '(error|warning):|\*\*\*' "$blog" | head -n 60 || true
  if ((rc)); then
    echo "run-tests: $label build failed (exit $rc); full log: $blog" >&2
    tail -n 30 "$blog" >&2
    record "build $label" "FAILED"
    return 1
  fi
  echo "build ok; log: $blog"
  record "build $label" "ok"
  return 0
}

run_ctest() {  # dir label [ctest args: which tests]
  local dir=$1 label=$2 log="$ROOT/$1/run-tests-ctest.log"
  shift 2
  echo
  echo "=== run-tests: ctest $label ($dir, -j$CTEST_JOBS) $* ==="
  # Fresh scratch directory for the tests' temporary mailboxes.
  rm -rf "$ROOT/$dir/tests/tmp"
  mkdir -p "$ROOT/$dir/tests/tmp"
  local rc=0
  run_grouped "$log" ctest --test-dir "$ROOT/$dir" --output-on-failure \
    -j "$CTEST_JOBS" --no-tests=error "$@" || rc=$?
  # "100% tests passed, 0 tests failed out of 12"
  local line passed=0 failed=0 total=0
  line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1 || true)
  if [[ -n "$line" ]]; then
    failed=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
    total=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\2/' <<<"$line")
    passed=$((total - failed))
  fi
  TOTAL_PASSED=$((TOTAL_PASSED + passed))
  TOTAL_FAILED=$((TOTAL_FAILED + failed))
  if [[ $rc -eq 0 && -n "$line" ]]; then
    record "ctest $label" "ok ($passed/$total passed)"
  elif [[ -n "$line" ]]; then
    record "ctest $label" "FAILED ($failed of $total failed)"
  else
    record "ctest $label" "FAILED (ctest exit $rc, no test summary)"
    TOTAL_FAILED=$((TOTAL_FAILED + 1))
  fi
  rm -rf "$ROOT/$dir/tests/tmp"
}

START=$(date +%s)

echo "=== run-tests: dependencies ==="
if bash "$ROOT/tools/setup-deps.sh"; then
  record "setup-deps" "ok"
else
  record "setup-deps" "FAILED"
fi

if build build release -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRINGMAIL_SANITIZE=OFF; then
  run_ctest build release
else
  record "ctest release" "SKIPPED (build failed)"
fi

# Debug (-O0) for the sanitizer build: gcc's -O2 with ASan produces false
# -Wmaybe-uninitialized/-Wstringop warnings that -Werror would turn into
# build failures.
if build build-asan asan -DCMAKE_BUILD_TYPE=Debug -DRINGMAIL_SANITIZE=ON; then
  RINGMAIL_TEST_QUICK=1 \
  ASAN_OPTIONS=detect_leaks=1 \
  UBSAN_OPTIONS=print_stacktrace=1 \
    run_ctest build-asan asan
else
  record "ctest asan" "SKIPPED (build failed)"
fi

# clang: the whole tree (tests and benchmarks too) must build with it as
# well as with gcc; each warns about things the other does not.  Its unit
# tests run in quick mode, but for test_store_explore (a minute and more of
# fsync-bound crash-state exploration that the release and ASan runs
# already cover): the step adds about a minute.
if build build-clang clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRINGMAIL_SANITIZE=OFF \
     -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++; then
  RINGMAIL_TEST_QUICK=1 run_ctest build-clang clang -L unit -E '^test_store_explore$'
else
  record "ctest clang" "SKIPPED (build failed)"
fi

# libFuzzer targets (tests/fuzz/run-fuzz.sh): clang ASan+UBSan build in
# build-fuzz/, each target for RINGMAIL_FUZZ_SECONDS (default 60), two at a
# time, then a replay of the corpus.  A crash, leak or timeout fails the
# step; the inputs are kept in build-fuzz/crashes/.
mkdir -p "$ROOT/build-fuzz"
echo
echo "=== run-tests: fuzz (build-fuzz, ${RINGMAIL_FUZZ_SECONDS:-60}s per target) ==="
fuzz_rc=0
RINGMAIL_FUZZ_SECONDS=${RINGMAIL_FUZZ_SECONDS:-60} \
  run_grouped "$ROOT/build-fuzz/run-tests-fuzz.log" \
  bash "$ROOT/tests/fuzz/run-fuzz.sh" || fuzz_rc=$?
fuzz_ok=$(grep -cE '^fuzz_[a-z0-9_]+ +ok ' "$ROOT/build-fuzz/run-tests-fuzz.log" || true)
fuzz_skip=$(grep -cE '^fuzz_[a-z0-9_]+ +SKIPPED' "$ROOT/build-fuzz/run-tests-fuzz.log" || true)
fuzz_note=""
((fuzz_skip)) && fuzz_note=", $fuzz_skip SKIPPED (see build-fuzz/*.skipped)"
if ((fuzz_rc == 0)); then
  record "fuzz" "ok ($fuzz_ok targets$fuzz_note)"
elif ((fuzz_rc == 2)); then
  record "fuzz" "FAILED (build; log build-fuzz/run-tests-fuzz.log)"
else
  record "fuzz" "FAILED (inputs in build-fuzz/crashes/)"
fi

ELAPSED=$(( $(date +%s) - START ))
echo
echo "=== run-tests: summary ($((ELAPSED / 60))m$((ELAPSED % 60))s) ==="
for i in "${!STEP_NAMES[@]}"; do
  printf '  %-16s %s\n' "${STEP_NAMES[$i]}" "${STEP_RESULTS[$i]}"
done
echo "  logs: build/run-tests-*.log, build-asan/run-tests-*.log, build-clang/run-tests-*.log"
if ((FAILED)); then
  echo "run-tests: FAILED"
else
  echo "run-tests: all passed"
fi
echo "run-tests: $TOTAL_PASSED passed, $TOTAL_FAILED failed"
exit "$FAILED"
