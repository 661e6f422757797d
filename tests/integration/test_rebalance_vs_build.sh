#!/usr/bin/env bash
# Issue #13: a cluster rebalanced 2 -> 3 groups against one built directly with 3 groups by
# `cirrus build` from the same vectors. Real processes: the 2-group build is served (plus an
# empty third shard), `cirrus rebalance` grows it to 3 groups through its coordinator; the
# 3-group build is served beside it. Checked: each group holds the same items (ids,
# attributes, vectors), and queries through both coordinators give the same top-10 (Flat, so
# exact: same ids and scores).
. "$(dirname "$0")/lib.sh"
N=6000
D=16
C=("$BIN/cirrus" --timeout 20000)

"$BIN/cirrus-bench" gen --n $N --dim $D --out "$WORK/v.fvecs" >/dev/null
for i in $(seq 0 $((N - 1))); do echo "{\"cat\": \"c$((i % 5))\"}"; done >"$WORK/attrs.jsonl"
for g in 2 3; do
  "$BIN/cirrus" build --out "$WORK/b$g" --groups $g --index Flat --metric l2 \
    --vectors "$WORK/v.fvecs" --attrs "$WORK/attrs.jsonl" --id-prefix v >/dev/null \
    2>"$WORK/b$g.err" || fail "build of $g groups: $(cat "$WORK/b$g.err")"
done

# serve NAME DIR [shard args...] -> endpoint in $EP
serve() {
  local name=$1 dir=$2 p
  shift 2
  p=$(free_port); EP="tcp://127.0.0.1:$p"
  start_bg "$WORK/$name.log" "$BIN/cirrus-shard" --dir "$dir" --bind "$EP" --log-level warn "$@"
  PIDS+=("$LAST_PID")
  wait_ready "$EP"
}
# map FILE BIND EP... : one single-replica group per endpoint.
map() {
  local f=$1 b=$2
  shift 2
  printf '%s\n' "$@" | jq -R '[.]' | jq -s --arg b "$b" \
    '{bind: $b, metric: "l2", placement: "fnv1a64-jump", groups: .}' >"$f"
}
coord() { # coord NAME MAP -> endpoint in $CEP
  local p
  p=$(free_port); CEP="tcp://127.0.0.1:$p"
  jq --arg b "$CEP" '.bind = $b' "$2" >"$2.tmp" && mv "$2.tmp" "$2"
  start_bg "$WORK/$1.log" "$BIN/cirrus-coordinator" --map "$2" --log-level info
  PIDS+=("$LAST_PID")
  wait_ready "$CEP"
}

note "the 2-group build, served, rebalanced to 3 groups"
r=()
for g in 0 1; do serve "r$g" "$WORK/b2/group-$g"; r+=("$EP"); done
serve r2 "$WORK/r2" --create --dim $D --metric l2 --index Flat; r+=("$EP")
map "$WORK/map.json" tcp://127.0.0.1:1 "${r[0]}" "${r[1]}"
coord rcoord "$WORK/map.json"; rcep=$CEP
jq --arg e "${r[2]}" '.groups += [[$e]]' "$WORK/map.json" >"$WORK/new.json"
"${C[@]}" --json rebalance --map "$WORK/map.json" --new-map "$WORK/new.json" >"$WORK/rb.json" \
  2>"$WORK/rb.err" || fail "rebalance: $(cat "$WORK/rb.err")"
echo "  $(tail -1 "$WORK/rb.json")"
jq -e '.groups | length == 3' "$WORK/map.json" >/dev/null || fail "map.json does not hold 3 groups"
for _ in $(seq 1 100); do grep -q "reload requested: 3 groups" "$WORK/rcoord.log" && break; sleep 0.1; done
grep -q "reload requested: 3 groups" "$WORK/rcoord.log" || fail "the coordinator was not reloaded"

note "the 3-group build, served as it is"
d=()
for g in 0 1 2; do serve "d$g" "$WORK/b3/group-$g"; d+=("$EP"); done
map "$WORK/dmap.json" tcp://127.0.0.1:1 "${d[@]}"
coord dcoord "$WORK/dmap.json"; dcep=$CEP

note "each group holds the same items"
for g in 0 1 2; do
  "${C[@]}" --endpoint "${r[$g]}" dump | jq -c 'del(.version)' | sort >"$WORK/r$g.jsonl"
  "${C[@]}" --endpoint "${d[$g]}" dump | jq -c 'del(.version)' | sort >"$WORK/d$g.jsonl"
  n=$(wc -l <"$WORK/d$g.jsonl")
  [ "$n" -gt 1500 ] || fail "built group $g holds only $n items"
  cmp -s "$WORK/r$g.jsonl" "$WORK/d$g.jsonl" ||
    fail "group $g: rebalanced $(wc -l <"$WORK/r$g.jsonl") items, built $n: $(diff "$WORK/r$g.jsonl" "$WORK/d$g.jsonl" | head -4)"
  echo "  group $g: $n items in both"
done

note "queries through both coordinators give the same top-10 (ids and scores)"
for i in 0 5 321 1999 4242 5999; do
  vec=$("${C[@]}" --endpoint "$dcep" --json get --id "v$i" | jq -r '.vector | map(tostring) | join(",")')
  [ -n "$vec" ] || fail "v$i not found through the built cluster"
  for f in "" 'cat = "c2"'; do
    args=(search --vector "$vec" -k 10)
    [ -n "$f" ] && args+=(--filter "$f")
    a=$("${C[@]}" --endpoint "$rcep" --json "${args[@]}" | jq -c '[.hits[] | [.id, .score]]')
    b=$("${C[@]}" --endpoint "$dcep" --json "${args[@]}" | jq -c '[.hits[] | [.id, .score]]')
    [ "$(echo "$b" | jq length)" -eq 10 ] || fail "query v$i ($f): $b"
    [ "$a" = "$b" ] || fail "query v$i ($f): rebalanced $a, built $b"
  done
done
echo "PASS"
