#!/usr/bin/env bash
# Item versions come from the servers (issue 10, item 3). A coordinator in front of one shard
# group of 2 replicas, all real processes:
#  1. a client-chosen version beyond the clock plus the allowed skew (2^63, 2^64-1) is
#     rejected naming the item, and changes nothing: neither the item nor later versions;
#  2. after kill -9 and a restart of the coordinator, new writes get versions above everything
#     the shards hold (its clock is seeded from their stats), so items written before the
#     restart can still be updated and deleted;
#  3. a replica holding a version >= 2^63 (written before this fix) seeds the clock too, and
#     --json output (CLI and HTTP) prints such versions unsigned.
. "$(dirname "$0")/lib.sh"

PARTS=${CIRRUS_TEST_VERSIONS_PARTS:-1 2 3} # run some parts only: CIRRUS_TEST_VERSIONS_PARTS="2"
part() { [[ " $PARTS " == *" $1 "* ]]; }
C2_63=9223372036854775808
C2_64_1=18446744073709551615

# ugt A B: A > B for unsigned decimal strings (bash arithmetic is signed 64-bit).
ugt() {
  [ ${#1} -ne ${#2} ] && { [ ${#1} -gt ${#2} ]; return; }
  [[ "$1" > "$2" ]]
}
# json_version: the "version" of the one JSON object on stdin.
json_version() { sed -n 's/.*"version":\([0-9-]*\).*/\1/p'; }

s0="tcp://127.0.0.1:$(free_port)"
s1="tcp://127.0.0.1:$(free_port)"
cep="tcp://127.0.0.1:$(free_port)"
hport=$(free_port)
for i in 0 1; do
  ep=s$i
  start_bg "$WORK/shard$i.log" "$BIN/cirrus-shard" --dir "$WORK/shard$i" --bind "${!ep}" \
    --create --dim 4 --index Flat --log-level warn
  eval "pid_s$i=$LAST_PID"
done
cat >"$WORK/map.json" <<JSON
{"bind": "$cep", "groups": [["$s0", "$s1"]], "encoders": [], "metric": "ip"}
JSON
start_coordinator() {
  start_bg "$WORK/coord.log" "$BIN/cirrus-coordinator" --map "$WORK/map.json" \
    --http "127.0.0.1:$hport" --log-level info
  coord=$LAST_PID
  wait_ready "$cep"
}
# kill -9, then start again on the same map and port.
restart_coordinator() {
  { kill -9 "$coord" && wait "$coord"; } 2>/dev/null || true
  start_coordinator
}
wait_ready "$s0"
wait_ready "$s1"
start_coordinator
C=("$BIN/cirrus" --endpoint "$cep" --timeout 5000)

if part 1; then
note "1. client versions beyond the clock + skew are rejected and change nothing"
va=$("${C[@]}" --json upsert --id a --vector 1,0,0,0 --attr n=1 | json_version)
[ -n "$va" ] && [ "$va" != 0 ] || fail "no version for a"
for bad in "$C2_63" "$C2_64_1"; do
  expect_error "item 'a'.*beyond" "${C[@]}" upsert --id a --vector 0,1,0,0 --attr n=2 \
    --version "$bad"
done
got=$("${C[@]}" --json get --id a)
[ "$(echo "$got" | json_version)" = "$va" ] || fail "a changed after a rejected write: $got"
echo "$got" | grep -q '"n":1' || fail "a's attributes changed: $got"
for ep in "$s0" "$s1"; do
  "$BIN/cirrus" --endpoint "$ep" --json get --id a | grep -q "\"version\":$va[,}]" ||
    fail "replica $ep holds another version of a"
done
vb=$("${C[@]}" --json upsert --id b --vector 0,1,0,0 | json_version)
ugt "$vb" "$va" || fail "version of b ($vb) not above a's ($va)"
ugt 4611686018427387904 "$vb" || fail "the rejected version moved the clock: b got $vb"

fi

if part 2; then
note "2. a coordinator restart: new versions are above what the shards hold"
# A client clock 50 s ahead is within the skew: accepted, and moves the clock that far.
ahead=$((($(date +%s%3N) + 50000) << 16))
"${C[@]}" upsert --id c --vector 0,0,1,0 --version "$ahead" >/dev/null
vd=$("${C[@]}" --json upsert --id d --vector 0,0,0,1 | json_version)
ugt "$vd" "$ahead" || fail "d ($vd) not above the accepted client version ($ahead)"
restart_coordinator
out=$("${C[@]}" --json upsert --id d --vector 1,1,0,0 --attr n=3)
echo "$out" | grep -q '"code":0' || fail "update of d after the restart: $out"
ugt "$(echo "$out" | json_version)" "$vd" || fail "d's new version not above $vd: $out"
out=$("${C[@]}" --json delete --id c)
echo "$out" | grep -q '"deleted":true' || fail "delete of c after the restart: $out"
"${C[@]}" get --id c --no-vector >/dev/null 2>&1 && fail "c still readable after its delete"
for ep in "$s0" "$s1"; do
  "$BIN/cirrus" --endpoint "$ep" --json get --id d --no-vector | grep -q '"n":3' ||
    fail "replica $ep missed the update of d"
done

fi

if part 3; then
note "3. a replica holding a version >= 2^63 seeds the clock; --json prints it unsigned"
# Written straight to replica 1 (the shard port is internal and takes versions as given), as
# a coordinator without this fix would have.
high=$C2_63
"$BIN/cirrus" --endpoint "$s1" upsert --id p --vector 1,0,1,0 --version "$high" >/dev/null
out=$("$BIN/cirrus" --endpoint "$s1" --json get --id p --no-vector)
echo "$out" | grep -q "\"version\":$high[,}]" || fail "shard --json version not unsigned: $out"
# The whole cluster restarts: the replica finds its highest version again at open.
{ kill -9 "$coord" "$pid_s1" && wait "$coord" "$pid_s1"; } 2>/dev/null || true
start_bg "$WORK/shard1b.log" "$BIN/cirrus-shard" --dir "$WORK/shard1" --bind "$s1" --log-level warn
wait_ready "$s1"
out=$("$BIN/cirrus" --endpoint "$s1" --json stats)
echo "$out" | grep -q "\"max_version\":$high[,}]" || fail "replica 1 max_version after restart: $out"
start_coordinator
out=$("${C[@]}" --json upsert --id p --vector 0,1,1,0 --attr n=4)
echo "$out" | grep -q '"code":0' || fail "update of p above 2^63: $out"
vp=$(echo "$out" | json_version)
ugt "$vp" "$high" || fail "p's new version $vp not above $high (signed output?): $out"
for ep in "$s0" "$s1"; do
  "$BIN/cirrus" --endpoint "$ep" --json get --id p --no-vector | grep -q "\"version\":$vp[,}]" ||
    fail "replica $ep does not hold p at $vp"
done
http=$(curl -s --max-time 5 "http://127.0.0.1:$hport/v1/items/p")
echo "$http" | grep -q "\"version\":$vp[,}]" || fail "HTTP version not unsigned: $http"
echo "  p stored at $vp on both replicas; HTTP: $(echo "$http" | head -c 80)"
fi
note "ok"
