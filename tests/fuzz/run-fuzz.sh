#!/usr/bin/env bash
# tests/fuzz/run-fuzz.sh — build the libFuzzer targets (clang, ASan+UBSan)
# in build-fuzz/, run each for RINGMAIL_FUZZ_SECONDS (default 60), at most
# RINGMAIL_FUZZ_JOBS (default 2) at a time, then replay the whole corpus
# (seeds + what the run found) once.  Prints executions and coverage per
# target.  Exit 0: all clean; 1: a crash, leak, timeout or sanitizer
# report (inputs kept in build-fuzz/crashes/); 2: the build failed.
#
#   tests/fuzz/run-fuzz.sh [target ...]     (default: every fuzz_*.c)
#
# The corpus found by a run stays in build-fuzz/corpus/<target> and is
# reused by the next run; tests/fuzz/corpus/<target> holds the seeds.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2
ROOT=$(pwd)
SRC=$ROOT/tests/fuzz
OUT=$ROOT/build-fuzz
SECONDS_EACH=${RINGMAIL_FUZZ_SECONDS:-60}
JOBS=${RINGMAIL_FUZZ_JOBS:-2}
CC_FUZZ=${RINGMAIL_FUZZ_CC:-clang}

mkdir -p "$OUT"
echo "run-fuzz: configure + build ($OUT, $CC_FUZZ)"
if ! command -v "$CC_FUZZ" >/dev/null; then
  echo "run-fuzz: $CC_FUZZ not found (tools/setup-deps.sh installs clang)" >&2
  exit 2
fi
if ! CC=$CC_FUZZ cmake -S "$SRC" -B "$OUT" -DCMAKE_C_COMPILER="$CC_FUZZ" \
    >"$OUT/configure.log" 2>&1; then
  cat "$OUT/configure.log" >&2
  exit 2
fi
if ! cmake --build "$OUT" -j "$(nproc 2>/dev/null || echo 2)" \
    >"$OUT/build.log" 2>&1; then
  grep -E '(error|warning):' "$OUT/build.log" | head -n 40 >&2
  tail -n 20 "$OUT/build.log" >&2
  exit 2
fi

if (($#)); then
  TARGETS=("$@")
else
  TARGETS=()
  for f in "$SRC"/fuzz_*.c; do
    TARGETS+=("$(basename "$f" .c)")
  done
fi

# Every report is fatal; leaks are reported (libFuzzer -detect_leaks=1).
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}abort_on_error=0:detect_leaks=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:suppressions=$SRC/known-issues.supp

mkdir -p "$OUT/crashes"
# Options shared by the fuzzing run and the replay: an input taking more
# than 10 s is a timeout (a failure), more than 2 GB RSS a failure.
COMMON=(-timeout=10 -rss_limit_mb=2048 -print_final_stats=1)

fuzz_one() {  # target
  local t=$1 corpus=$OUT/corpus/$1 log=$OUT/fuzz-$1.log
  mkdir -p "$corpus" "$OUT/crashes"
  # A hard stop in case libFuzzer itself hangs past -max_total_time.
  timeout --foreground -k 10 $((SECONDS_EACH + 120)) \
    "$OUT/$t" "${COMMON[@]}" -max_total_time="$SECONDS_EACH" \
    -artifact_prefix="$OUT/crashes/$t-" \
    "$corpus" "$SRC/corpus/$t" >"$log" 2>&1
  echo $? >"$OUT/fuzz-$t.rc"
}

# A target CMakeLists.txt left out (fuzz_sasl when clang rejects its
# sources: build-fuzz/<target>.skipped says why) is reported, not run.
RUN=() SKIPPED=()
for t in "${TARGETS[@]}"; do
  if [[ -x "$OUT/$t" ]]; then
    RUN+=("$t")
  elif [[ -f "$OUT/$t.skipped" ]]; then
    SKIPPED+=("$t")
    echo "run-fuzz: $t SKIPPED (left out of the build):" >&2
    grep -E 'error' "$OUT/$t.skipped" | head -n 5 >&2
  else
    echo "run-fuzz: no such target: $t" >&2
    exit 2
  fi
done
TARGETS=("${RUN[@]}")

START=$(date +%s)
echo "run-fuzz: ${#TARGETS[@]} targets, ${SECONDS_EACH}s each, $JOBS at a time"
for t in "${TARGETS[@]}"; do
  rm -f "$OUT/fuzz-$t.rc"
  while (($(jobs -rp | wc -l) >= JOBS)); do
    wait -n
  done
  fuzz_one "$t" &
done
wait

FAILED=0
DONE_LINES=()
printf '\n%-18s %-8s %12s %8s %8s  %s\n' target result execs cov ft replay
for t in "${TARGETS[@]}"; do
  log=$OUT/fuzz-$t.log
  rc=$(cat "$OUT/fuzz-$t.rc" 2>/dev/null || echo 99)
  # "#1410098 DONE cov: 682 ft: 2994 corp: 877/94Kb ..." and final stats
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1)
  execs=$(grep -E '^stat::number_of_executed_units:' "$log" | awk '{print $2}' | tail -n 1)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$done_line")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$done_line")
  # Replay: every seed and every unit found, once.
  rlog=$OUT/replay-$t.log
  "$OUT/$t" "${COMMON[@]}" -runs=0 -artifact_prefix="$OUT/crashes/$t-replay-" \
    "$OUT/corpus/$t" "$SRC/corpus/$t" >"$rlog" 2>&1
  rrc=$?
  rn=$(find "$OUT/corpus/$t" "$SRC/corpus/$t" -type f | wc -l)
  result=ok
  if ((rc != 0)) || [[ -z "$done_line" ]]; then
    result=FAILED
  fi
  replay="ok ($rn inputs)"
  if ((rrc != 0)); then
    replay="FAILED"
    result=FAILED
  fi
  printf '%-18s %-8s %12s %8s %8s  %s\n' "$t" "$result" "${execs:-?}" \
    "${cov:-?}" "${ft:-?}" "$replay"
  DONE_LINES+=("  $t: ${done_line:-(no DONE line: the run stopped early)}")
  if [[ $result != ok ]]; then
    FAILED=1
    echo "--- $t: fuzz exit $rc, replay exit $rrc; logs $log $rlog" >&2
    for l in "$log" "$rlog"; do
      grep -E -A 30 'ERROR: |runtime error|contract violated|SUMMARY' "$l" | head -n 50 >&2
    done
  fi
done
for t in "${SKIPPED[@]}"; do
  printf '%-18s %s\n' "$t" "SKIPPED (see $OUT/$t.skipped)"
done
echo "libFuzzer's final lines:"
printf '%s\n' "${DONE_LINES[@]}"
shopt -s nullglob
crashes=("$OUT"/crashes/*)
if ((FAILED && ${#crashes[@]})); then
  echo "run-fuzz: inputs kept in $OUT/crashes/:"
  ls -l "$OUT/crashes/"
fi
echo "run-fuzz: $(( $(date +%s) - START ))s"
exit "$FAILED"
