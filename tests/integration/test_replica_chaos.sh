#!/usr/bin/env bash
# Replica repair under a random kill schedule (issue 10 item 2): 1 shard group x 2 replicas,
# a load and deletes running while replicas are killed with -9 and restarted, one at a time
# or both (the second dying before the first returns). Seeded: CIRRUS_CHAOS_SEED=N replays a
# schedule (the seed is printed). Checks, after every round: no acknowledged write reads as
# missing through the coordinator; at the end: both replicas, queried directly, hold the same
# items and versions, every acknowledged write reads back from each replica alone, and every
# acknowledged delete is a delete on each.
. "$(dirname "$0")/lib.sh"
SRC=${CIRRUS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
trap 'bash "$SRC/deploy/local/cluster.sh" down --dir "$WORK/cl" >/dev/null 2>&1; cleanup' EXIT
SEED=${CIRRUS_CHAOS_SEED:-1010}
RANDOM=$SEED
ROUNDS=${CIRRUS_CHAOS_ROUNDS:-5}
echo "seed $SEED, $ROUNDS rounds"

"$BIN/cirrus-bench" gen --n 1000 --dim 16 --out "$WORK/v.fvecs" >/dev/null
# A dead replica is noticed within ~1.5 s; writes caught before that wait at most 1 s.
ep=$(CIRRUS_COORDINATOR_BACKEND_TIMEOUT_MS=1000 bash "$SRC/deploy/local/cluster.sh" up \
  --dir "$WORK/cl" --bin "$BIN" --groups 1 --replicas 2 --dim 16 --index Flat)
# shellcheck disable=SC1091
. "$WORK/cl/cluster.env"
PIDS+=("$COORDINATOR_PID" "$SHARD_0_0_PID" "$SHARD_0_1_PID")
REPS=("$SHARD_0_0" "$SHARD_0_1")
C=("$BIN/cirrus" --endpoint "$ep" --timeout 3000)

ms() { sleep "$(awk "BEGIN { print $1 / 1000 }")"; }
between() { echo $(($1 + RANDOM % ($2 - $1 + 1))); }
# shellcheck source=replicas.sh
. "$(dirname "$0")/replicas.sh"
kill_replica() { kill_shard "$1"; echo "  kill replica $1"; }
restart_replica() { start_shard "$1"; echo "  restart replica $1"; }
ALL=$WORK/all_ids

# verify_at ENDPOINT PREFIX:ACKED...: prints "verified N of M" per set.
verify_at() {
  local e=$1 set
  shift
  for set in "$@"; do
    "$BIN/cirrus" --endpoint "$e" --timeout 5000 verify --vectors "$WORK/v.fvecs" \
      --id-prefix "${set%%:*}" --acked "${set#*:}" 2>&1 || true
  done
}
# kept_sets: SETS = the acknowledged ids per prefix, less those a delete was tried on.
kept_sets() {
  sort -u "$WORK/tried_del" >"$WORK/tried_del.s"
  SETS=()
  for f in "$WORK"/acked_p "$WORK"/acked_c* "$WORK"/acked_w*; do
    [ -f "$f" ] && [ "${f%.kept}" = "$f" ] || continue
    grep -vxF -f "$WORK/tried_del.s" "$f" >"$f.kept" || true
    local pre=${f##*/acked_}
    [ "$pre" = p ] || pre="$pre-"
    SETS+=("$pre:$f.kept")
  done
}

# no_missing WHEN: reads through the coordinator may fail or be partial, but no acknowledged
# write may read as missing.
no_missing() {
  local out
  kept_sets
  out=$(verify_at "$ep" "${SETS[@]}")
  echo "  $1: $(echo "$out" | grep -v ': missing' | sed 's/cirrus verify: //' | sort | uniq -c | tr -s ' \n' ' ')"
  echo "$out" | grep -q ': missing' && fail "$1: acknowledged writes read as missing: $(echo "$out" | grep ': missing' | head -3)"
  return 0
}

note "preload: 300 items, 100 of them deletable"
"${C[@]}" load --vectors "$WORK/v.fvecs" --id-prefix p --limit 300 --acked "$WORK/acked_p" 2>/dev/null
: >"$WORK/all_ids"
seq -f 'p%g' 0 999 >>"$ALL"
for r in $(seq 1 "$ROUNDS"); do seq -f "c$r-%g" 0 399; seq -f "w$r-%g" 0 149; done >>"$ALL"
: >"$WORK/tried_del"
: >"$WORK/acked_del"

# down_writes R: while a replica is down, after a random pause (before or after the coordinator
# notices), 150 writes and 5 deletes; some are acknowledged by the survivor alone.
down_writes() {
  local ids=()
  ms "$(between 0 2000)"
  "${C[@]}" load --vectors "$WORK/v.fvecs" --id-prefix "w$1-" --limit 150 --batch 5 --window 2 \
    --acked "$WORK/acked_w$1" >/dev/null 2>&1 || true
  for _ in 1 2 3 4 5; do ids+=(--id "p$((RANDOM % 100))"); done
  printf '%s\n' "${ids[@]}" | grep -v -- '--id' >>"$WORK/tried_del"
  "${C[@]}" delete "${ids[@]}" 2>/dev/null | sed -nE 's/^(p[0-9]+): (deleted|not found)$/\1/p' \
    >>"$WORK/acked_del" || true
}

for r in $(seq 1 "$ROUNDS"); do
  note "round $r"
  "${C[@]}" load --vectors "$WORK/v.fvecs" --id-prefix "c$r-" --limit 400 --batch 2 --window 1 \
    --acked "$WORK/acked_c$r" >/dev/null 2>&1 &
  loader=$!
  ms "$(between 0 200)"
  if [ $((RANDOM % 2)) -eq 0 ]; then # both: the second dies before the first returns
    first=$((RANDOM % 2))
    kill_replica $first
    down_writes "$r"
    kill_replica $((1 - first))
    ms "$(between 0 400)"
    restart_replica $first
    no_missing "replica $first back, its peer down"
    ms "$(between 0 500)"
    restart_replica $((1 - first))
  else
    v=$((RANDOM % 2))
    kill_replica $v
    down_writes "$r"
    restart_replica $v
  fi
  wait "$loader" || true
  no_missing "end of round"
done

note "both replicas up: wait until they hold the same items and versions"
converged=0
for _ in $(seq 1 60); do
  dump "${REPS[0]}" "$WORK/a.dump"
  dump "${REPS[1]}" "$WORK/b.dump"
  if [ -s "$WORK/a.dump" ] && cmp -s "$WORK/a.dump" "$WORK/b.dump"; then converged=1; break; fi
  sleep 0.5
done
[ $converged = 1 ] || fail "replicas still differ after 30 s: $(diff "$WORK/a.dump" "$WORK/b.dump" | head -5) ($(diff "$WORK/a.dump" "$WORK/b.dump" | grep -c '^[<>]') lines)"
echo "  $(grep -c ' [0-9]' "$WORK/a.dump") live items, same versions on both"

note "every acknowledged write reads back from each replica alone; acknowledged deletes hold"
kept_sets
want=""
n=0
for set in "${SETS[@]}"; do
  k=$(wc -l <"${set#*:}")
  want="${want}verified $k of $k "
  n=$((n + k))
done
[ "$n" -gt 1000 ] || fail "only $n acknowledged writes"
for e in "${REPS[@]}"; do
  out=$(verify_at "$e" "${SETS[@]}" | tr '\n' ' ')
  [ "$out" = "$want" ] || fail "replica $e: $out (want $want)"
  for id in $(sort -u "$WORK/acked_del"); do
    "$BIN/cirrus" --endpoint "$e" get --no-vector --id "$id" >/dev/null 2>&1 &&
      fail "replica $e: acknowledged delete of $id did not hold"
  done
done
echo "  each replica alone: $n acknowledged writes verified; $(sort -u "$WORK/acked_del" | wc -l) deletes hold"
grep -E 'repaired|waiting' "$WORK/cl/coordinator.log" | sed 's/^/  /' | tail -12
echo "1 passed, 0 failed"
