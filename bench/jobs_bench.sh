#!/usr/bin/env bash
# The job broker benchmark of docs/performance.md (issue #12):
#   bench/jobs_bench.sh [BUILD_DIR] [cirrus-bench jobs options...]
# Starts `cirrus serve --worker-bind` on a fresh data directory on disk (the job store syncs
# for real), runs `cirrus-bench jobs` against it (no-op workers as threads of the bench, the
# bare ZeroMQ round trip measured in the same run) and prints its table with the load average.
# STRACE=1 runs the server under `strace -f -c -e trace=fdatasync,fsync,msync` and prints the
# counts (the syscalls per job, independently of the broker's own counter; strace slows it).
# JOBS_DIR=DIR puts the data directory under DIR (default $TMPDIR or /tmp). SERVE_BIN=PATH
# runs another `cirrus` as the server (e.g. a build of main: the broker before a change).
set -euo pipefail
BUILD=${1:-build}; shift || true
BIN="$(cd "$BUILD/bin" && pwd)"
W=$(mktemp -d "${JOBS_DIR:-${TMPDIR:-/tmp}}/cirrus-jbench-XXXXXX")
SERVE=""
trap '[ -n "$SERVE" ] && kill -9 $SERVE 2>/dev/null; wait 2>/dev/null; rm -rf "$W"' EXIT
port() { # a free port below the ephemeral range (tests/integration/lib.sh's free_port)
  local p
  for _ in $(seq 1 200); do
    p=$(( 10000 + RANDOM % 22000 ))
    if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "$p"; return 0; fi
  done
  return 1
}
PORT=$(port); WPORT=$(port); HPORT=$(port)
EP=tcp://127.0.0.1:$PORT; WEP=tcp://127.0.0.1:$WPORT
WRAP=()
[ "${STRACE:-0}" = 1 ] && WRAP=(strace -f -c --seccomp-bpf -e trace=fdatasync,fsync,msync -o "$W/strace.txt")
"${WRAP[@]}" "${SERVE_BIN:-$BIN/cirrus}" serve --data "$W/data" --dim 8 --bind "$EP" --worker-bind "$WEP" \
  --http "127.0.0.1:$HPORT" >"$W/serve.log" 2>&1 &
SERVE=$!
for _ in $(seq 1 300); do
  "$BIN/cirrus" --endpoint "$EP" --timeout 200 health >/dev/null 2>&1 && break
  sleep 0.1
done
"$BIN/cirrus" --endpoint "$EP" --timeout 1000 health >/dev/null ||
  { echo "jobs_bench: the server did not start:" >&2; cat "$W/serve.log" >&2; exit 1; }
echo "# $(date -u +%FT%TZ) $(uptime | sed 's/.*load/load/')"
echo "# data directory on: $(df -P "$W" | awk 'NR==2 {print $1}') ($(stat -f -c %T "$W"))"
rc=0
"$BIN/cirrus-bench" jobs --endpoint "$EP" --worker-endpoint "$WEP" \
  --metrics "http://127.0.0.1:$HPORT/metrics" "$@" || rc=$?
echo "# after: $(uptime | sed 's/.*load/load/')"
if [ "${STRACE:-0}" = 1 ]; then
  CHILD=$(pgrep -P "$SERVE" | head -1 || true) # the server under strace: it stops, strace sums
  [ -n "$CHILD" ] && kill -TERM "$CHILD" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$SERVE" 2>/dev/null || break; sleep 0.1; done
  [ -n "$CHILD" ] && kill -9 "$CHILD" 2>/dev/null || true
  kill -9 "$SERVE" 2>/dev/null || true
  wait "$SERVE" 2>/dev/null || true
  SERVE=""
  echo "# strace -c of the server (whole run, warm-up included):"
  sed 's/^/#   /' "$W/strace.txt"
fi
exit $rc
