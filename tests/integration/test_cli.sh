#!/usr/bin/env bash
# The `cirrus` command-line tool against real servers:
#  1. global options (--json, --endpoint, --timeout) work after the command as before it, and
#     a command's option value that looks like a global option stays the command's;
#  2. `cirrus serve` that cannot start a thread (RLIMIT_NPROC, as an unprivileged user) exits
#     non-zero with a message, never hangs or crashes, and joins only the threads it started;
#  3. `cirrus load` retries writes that failed with a retryable status: with one replica of a
#     2-replica group SIGSTOPped for 1.5 s during the load (longer than --timeout), every row
#     is acknowledged and `cirrus verify` finds all of them.
. "$(dirname "$0")/lib.sh"
SRC=${CIRRUS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
trap 'bash "$SRC/deploy/local/cluster.sh" down --dir "$WORK/cl" >/dev/null 2>&1; cleanup' EXIT
CLI=$BIN/cirrus
PARTS=${CIRRUS_TEST_CLI_PARTS:-1 2 3} # run some parts only: CIRRUS_TEST_CLI_PARTS="2 3"
part() { [[ " $PARTS " == *" $1 "* ]]; }

# ---- 1. global options after the command -------------------------------------------------
if part 1; then
port=$(free_port)
ep="tcp://127.0.0.1:$port"
start_bg "$WORK/serve.log" "$CLI" serve --data "$WORK/serve" --dim 4 --index Flat --bind "$ep"
serve=$LAST_PID
wait_ready "$ep"
# A wrong default endpoint: only an explicit --endpoint (before or after) reaches the server.
export CIRRUS_ENDPOINT=tcp://127.0.0.1:1
for i in 1 2 3; do
  "$CLI" --endpoint "$ep" upsert --id "g$i" --vector "$i,1,0,0" --attr n="$i" >/dev/null
done
# Timings and uptimes differ from run to run.
norm() { sed -e 's/"[a-z_]*_us":[0-9]*//g' -e 's/"\(uptime_s\|version\)":[0-9]*//g' "$1"; }
same() { # same DESCRIPTION -- ARGS-BEFORE -- ARGS-AFTER: equal stdout, stderr and exit code
  local what=$1 a=() b=() rca=0 rcb=0
  shift 2
  while [ "$1" != "--" ]; do a+=("$1"); shift; done
  shift
  b=("$@")
  "$CLI" "${a[@]}" >"$WORK/a.out" 2>"$WORK/a.err" || rca=$?
  "$CLI" "${b[@]}" >"$WORK/b.out" 2>"$WORK/b.err" || rcb=$?
  [ "$rca" = "$rcb" ] || fail "$what: exit $rca before the command, $rcb after: $(cat "$WORK/b.err")"
  [ "$(norm "$WORK/a.out")" = "$(norm "$WORK/b.out")" ] || fail "$what: stdout differs: $(cat "$WORK/a.out") vs $(cat "$WORK/b.out")"
  cmp -s "$WORK/a.err" "$WORK/b.err" || fail "$what: stderr differs: $(cat "$WORK/a.err") vs $(cat "$WORK/b.err")"
  echo "  $what: same (exit $rca) $(head -c 100 "$WORK/a.out")"
}
note "global options after the command"
same "search --json" -- --endpoint "$ep" --json search --vector 1,1,0,0 -k 2 \
  -- search --vector 1,1,0,0 -k 2 --json --endpoint "$ep"
grep -q '"id":"g1"' "$WORK/b.out" || fail "search after: no JSON hits: $(cat "$WORK/b.out")"
same "search --timeout in between" -- --json --timeout 3000 --endpoint "$ep" search -k 1 --vector 3,1,0,0 \
  -- search -k 1 --timeout 3000 --vector 3,1,0,0 --endpoint="$ep" --json
# The issue's example: a composed query (this server has no encoder, so the server refuses
# it; what matters is that the command line parses the same both ways).
same "search --ref-id --caption --json" -- --endpoint "$ep" --json search --ref-id g1 --caption red \
  -- search --ref-id g1 --caption red --json --endpoint "$ep"
grep -q "EXPR example" "$WORK/b.err" && fail "--json after the command is still a usage error"
same "get --json" -- --endpoint "$ep" --json get --id g2 --no-vector \
  -- get --id g2 --no-vector --endpoint "$ep" --json
same "stats --json" -- --endpoint "$ep" --json stats -- stats --json --endpoint "$ep"
same "health --json" -- --endpoint "$ep" --json health -- health --endpoint "$ep" --json
same "upsert --json" -- --endpoint "$ep" --json upsert --id g9 --vector 9,9,9,9 \
  -- upsert --id g9 --vector 9,9,9,9 --json --endpoint "$ep" --timeout 2000
# An option's value that looks like a global option belongs to the option.
"$CLI" upsert --id --json --vector 5,5,5,5 --endpoint "$ep" >/dev/null ||
  fail "an id spelled --json was taken for the global option"
out=$("$CLI" get --id --json --no-vector --endpoint "$ep" --json)
echo "$out" | grep -q '"id":"--json"' || fail "item --json not stored under its id: $out"
# A bad global value after the command is a usage error (exit 2), as before it.
rc=0; "$CLI" stats --endpoint "$ep" --timeout 0 >/dev/null 2>"$WORK/err" || rc=$?
[ "$rc" = 2 ] && grep -q -- "--timeout" "$WORK/err" || fail "bad --timeout after: exit $rc, $(cat "$WORK/err")"
rc=0; "$CLI" eval run --endpoint tcp://127.0.0.1:1 --timeout 100 --dataset circo \
  --root "$WORK/none" >/dev/null 2>"$WORK/err" || rc=$?
grep -q "unrecognized option" "$WORK/err" && fail "eval run rejects global options: $(cat "$WORK/err")"
[ "$rc" != 0 ] || fail "eval run on a missing dataset succeeded"
unset CIRRUS_ENDPOINT
kill -TERM "$serve"
wait "$serve" || fail "serve did not exit 0 on SIGTERM: $(tail -3 "$WORK/serve.log")"
fi

# ---- 2. cirrus serve cannot start its threads -------------------------------------------
# RLIMIT_NPROC bounds the tasks of a real uid, and root is exempt: run serve as nobody.
# `serve --shards 2` starts, in order: ZeroMQ's 2 threads, one indexer per shard, each shard
# server's writer, search threads and front thread (common/service: open returns once all
# run), then the coordinator's repair, reload and loop threads. Limits from 3 (main +
# ZeroMQ's; below that ZeroMQ aborts by design) upwards make each of those thread starts fail
# in turn, and every one is reported.
if ! part 2; then
  :
elif [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null && command -v prlimit >/dev/null &&
   [ -z "$(ps -u nobody -o pid= 2>/dev/null)" ]; then
  note "cirrus serve at its thread limit"
  chmod 711 "$WORK"
  mkdir "$WORK/nobody" && chmod 777 "$WORK/nobody"
  run_limited() { timeout 15 setpriv --reuid=65534 --regid=65534 --clear-groups \
                    prlimit --nproc="$1" -- "${@:2}"; }
  # Every limit below the one serve needs must fail the start with a message, whichever
  # thread it hits (ZeroMQ's, a shard's writer or searchers, the coordinator's, repair,
  # reload); the first limit at which serve answers ends the sweep.
  ran=0
  for k in $(seq 3 48); do
    d="$WORK/nobody/d$k"
    p=$(free_port)
    setpriv --reuid=65534 --regid=65534 --clear-groups prlimit --nproc="$k" -- \
      "$CLI" serve --data "$d" --dim 4 --shards 2 --bind "tcp://127.0.0.1:$p" \
      >"$WORK/nproc-$k.log" 2>&1 &
    spid=$!
    PIDS+=("$spid")
    state=hung
    for _ in $(seq 1 150); do
      if ! kill -0 "$spid" 2>/dev/null; then state=exited; break; fi
      if "$CLI" --endpoint "tcp://127.0.0.1:$p" --timeout 200 health >/dev/null 2>&1; then
        state=serving; break
      fi
      sleep 0.1
    done
    if [ "$state" = serving ]; then
      kill -TERM "$spid"; wait "$spid" || fail "limit $k: serve did not stop cleanly"
      echo "  --nproc=$k: serves"
      ran=1
      break
    fi
    [ "$state" = exited ] || { kill -9 "$spid"; fail "limit $k: serve neither served nor exited in 15 s: $(tail -3 "$WORK/nproc-$k.log")"; }
    rc=0; wait "$spid" || rc=$?
    msg=$(grep "^cirrus serve:" "$WORK/nproc-$k.log" | head -1)
    [ "$rc" != 0 ] && [ "$rc" -lt 128 ] ||
      fail "limit $k: serve exited $rc (want 1): $(tail -3 "$WORK/nproc-$k.log")"
    echo "$msg" | grep -q "cannot start" || fail "limit $k: no message: $(tail -3 "$WORK/nproc-$k.log")"
    echo "  --nproc=$k: exit $rc: $msg"
  done
  [ "$ran" = 1 ] || fail "serve never started below --nproc=48"
  # The same as nobody with room for its threads runs and stops cleanly.
  p=$(free_port)
  setpriv --reuid=65534 --regid=65534 --clear-groups prlimit --nproc=64 -- \
    "$CLI" serve --data "$WORK/nobody/ok" --dim 4 --shards 2 \
    --bind "tcp://127.0.0.1:$p" >"$WORK/nproc-ok.log" 2>&1 &
  okpid=$!
  PIDS+=("$okpid")
  wait_ready "tcp://127.0.0.1:$p"
  kill -TERM "$okpid"
  wait "$okpid" || fail "serve as nobody with room did not exit 0: $(tail -3 "$WORK/nproc-ok.log")"
else
  note "SKIP the thread-limit part: needs root (to run serve as nobody, who must have no other process), setpriv and prlimit"
fi

# ---- 3. load retries retryable failures --------------------------------------------------
if part 3; then
note "load with one replica hung for 1.5 s"
"$BIN/cirrus-bench" gen --n 5000 --dim 16 --queries 1 --out "$WORK/b.fvecs" \
  --query-out "$WORK/q.fvecs" >/dev/null
cep=$(bash "$SRC/deploy/local/cluster.sh" up --dir "$WORK/cl" --bin "$BIN" --groups 1 \
  --replicas 2 --dim 16 --index Flat)
# shellcheck disable=SC1091
. "$WORK/cl/cluster.env"
PIDS+=("$COORDINATOR_PID" "$SHARD_0_0_PID" "$SHARD_0_1_PID")
: >"$WORK/acked"
# --timeout 1000 < the 1.5 s hang: the writes in flight when the replica stops fail.
start_bg "$WORK/load.log" "$CLI" --endpoint "$cep" --timeout 1000 --json load \
  --vectors "$WORK/b.fvecs" --id-prefix h --batch 50 --window 4 --acked "$WORK/acked"
load=$LAST_PID
for _ in $(seq 1 500); do
  [ -s "$WORK/acked" ] && break
  sleep 0.01
done
kill -STOP "$SHARD_0_0_PID"
sleep 1.5
kill -CONT "$SHARD_0_0_PID"
rc=0
wait "$load" || rc=$?
grep -v "^load:" "$WORK/load.log" | sed "s/^/  /" | head -5
[ "$rc" = 0 ] || fail "load exited $rc: $(grep -v '^load:' "$WORK/load.log" | tail -3)"
n=$(wc -l <"$WORK/acked")
[ "$n" = 5000 ] || fail "$n of 5000 rows acknowledged"
grep -q '"failed":0' "$WORK/load.log" || fail "rows failed: $(tail -1 "$WORK/load.log")"
grep -q '"retries":0[,}]' "$WORK/load.log" && fail "no write failed during the hang (test timing)"
out=$("$CLI" --endpoint "$cep" --timeout 5000 verify --vectors "$WORK/b.fvecs" --id-prefix h \
  --acked "$WORK/acked")
echo "  $out"
[ "$out" = "verified 5000 of 5000" ] || fail "verify: $out"
fi

echo "1 passed, 0 failed"
