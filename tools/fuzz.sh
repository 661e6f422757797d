#!/usr/bin/env bash
# fuzz.sh BUILD_DIR [SECONDS] [TARGET...] — runs each libFuzzer target of a
# -DCIRRUS_SANITIZE=fuzz build for SECONDS (default 600) over its seed corpus
# (tests/fuzz/corpus/NAME, read only) and a working corpus (BUILD_DIR/fuzz-corpus/NAME, kept
# between runs), one job at a time on one core. Writes BUILD_DIR/fuzz-report.md: executions,
# exec/s, coverage (edges), features, corpus size and crashes per target. A crash leaves its
# input in BUILD_DIR/fuzz-artifacts/NAME/; copy it into tests/fuzz/corpus/NAME/crash-* with
# the fix so that `ctest -R fuzz.NAME` replays it forever. Exit 1 when any target crashed.
# FUZZ_RUNS=N (environment): stop each target after N executions (SECONDS stays the cap).
set -uo pipefail
BUILD=${1:?usage: fuzz.sh BUILD_DIR [SECONDS] [TARGET...]}
SECS=${2:-600}
shift $(( $# >= 2 ? 2 : 1 ))
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  for f in "$ROOT"/tests/fuzz/fuzz_*.c; do
    n=$(basename "$f" .c); n=${n#fuzz_}
    [ "$n" = util ] || TARGETS+=("$n")
  done
fi
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
REPORT="$BUILD/fuzz-report.md"
{
  echo "| target | seconds | executions | exec/s | edges (cov) | features (ft) | corpus | crashes |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
} >"$REPORT"
bad=0
for t in "${TARGETS[@]}"; do
  bin="$BUILD/bin/fuzz_$t"
  [ -x "$bin" ] || { echo "fuzz: $bin missing (build with make fuzz)"; bad=1; continue; }
  work="$BUILD/fuzz-corpus/$t" art="$BUILD/fuzz-artifacts/$t" log="$BUILD/fuzz-$t.log"
  rm -rf "$art"; mkdir -p "$work" "$art" # artifacts of earlier runs were copied or dropped
  echo "fuzz: $t for ${SECS}s"
  "$bin" -max_total_time="$SECS" ${FUZZ_RUNS:+-runs=$FUZZ_RUNS} -print_final_stats=1 -rss_limit_mb=2048 -timeout=10 \
         -artifact_prefix="$art/" "$work" "$ROOT/tests/fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  line=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1)
  cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$line")
  ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$line")
  corp=$(find "$work" -type f | wc -l)
  crashes=$(find "$art" -type f | wc -l)
  echo "| $t | $SECS | ${execs:-?} | ${rate:-?} | ${cov:-?} | ${ft:-?} | $corp | $crashes |" >>"$REPORT"
  if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    echo "fuzz: $t FAILED (exit $rc); see $log and $art"
    grep -m5 -E 'ERROR|invariant|SUMMARY' "$log"
    bad=1
  fi
done
cat "$REPORT"
exit $bad
