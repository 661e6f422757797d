# Helpers for integration tests: real processes on loopback, ports chosen at run time,
# every started process killed on exit. Source it: `. "$(dirname "$0")/lib.sh"`.
set -euo pipefail

BIN=${CIRRUS_BIN:?set CIRRUS_BIN to the bin directory of a build}
WORK=$(mktemp -d /tmp/cirrus-it-XXXXXX)
PIDS=()

cleanup() {
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "== $*"; }

# A free TCP port on 127.0.0.1 (bash's /dev/tcp: a refused connection means free).
# Ports come from 10000-31999, below the kernel's ephemeral range (32768+): a port picked
# there could be taken by some client connection's source port before the server binds it.
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$(( 10000 + RANDOM % 22000 ))
    if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  fail "no free port"
}

# wait_ready ENDPOINT [SECONDS]: polls `cirrus health` until it answers.
wait_ready() {
  local ep=$1 secs=${2:-30}
  for _ in $(seq 1 $((secs * 10))); do
    if "$BIN/cirrus" --endpoint "$ep" --timeout 200 health >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  fail "$ep did not become ready within ${secs}s"
}

# start_bg LOGFILE CMD...: starts a process in the background, records its pid in $LAST_PID.
start_bg() {
  local log=$1
  shift
  "$@" >"$log" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

# expect_error PATTERN CMD...: CMD must fail and say PATTERN (grep -E) on stdout or stderr.
expect_error() {
  local pat=$1 out rc=0
  shift
  out=$("$@" 2>&1) || rc=$?
  [ "$rc" -ne 0 ] || fail "expected failure from: $* (got: $out)"
  echo "$out" | grep -Eq "$pat" || fail "expected '$pat' from: $* (got: $out)"
  echo "  rejected: $out" | head -1
}
