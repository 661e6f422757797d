#!/usr/bin/env bash
# CURVE on the ZeroMQ TCP sockets (docs/security.md), with real processes: a shard and a
# coordinator started with --curve-secret/--curve-allow answer a client whose key is allowed;
# a client without a key (plaintext), with an unlisted key, with a revoked key or expecting
# another server key gets no reply at all; a 1-shard cluster answers a search end to end with
# CURVE on both hops; the servers refuse unusable keys and warn when they serve another host
# without CURVE.
. "$(dirname "$0")/lib.sh"

for n in shard coord alice mallory; do "$BIN/cirrus" keygen --out "$WORK/$n" >/dev/null; done
[ "$(stat -c %a "$WORK/alice.key")" = 600 ] || fail "keygen: the secret key is not mode 0600"
"$BIN/cirrus" keygen --out "$WORK/alice" >/dev/null 2>&1 && fail "keygen overwrote a key pair"
mkdir "$WORK/allow-shard" "$WORK/allow-coord"
cp "$WORK/alice.pub" "$WORK/coord.pub" "$WORK/allow-shard/"
cp "$WORK/alice.pub" "$WORK/allow-coord/"

port=$(free_port)
SEP="tcp://127.0.0.1:$port"
start_bg "$WORK/shard.log" "$BIN/cirrus-shard" --dir "$WORK/s0" --create --dim 8 --index Flat \
  --bind "$SEP" --curve-secret "$WORK/shard.key" --curve-allow "$WORK/allow-shard"
SHARD_PID=$LAST_PID
ALICE=("$BIN/cirrus" --endpoint "$SEP" --curve-secret "$WORK/alice.key"
       --curve-server-pub "$WORK/shard.pub")
wait_curve() {
  for _ in $(seq 1 300); do "$@" --timeout 200 health >/dev/null 2>&1 && return 0; sleep 0.1; done
  fail "no answer with the right key: $*"
}
no_reply() { # CMD...: must time out (no answer at all, not an error reply)
  local out rc=0
  out=$("$@" --timeout 1500 health 2>&1) || rc=$?
  [ "$rc" -ne 0 ] || fail "answered without being allowed: $*"
  echo "$out" | grep -qi "timed out\|timeout\|no reply\|did not answer" ||
    fail "expected no reply, got: $out"
  echo "  no reply: ${out:0:100}"
}

note "the right key works"
wait_curve "${ALICE[@]}"
"${ALICE[@]}" upsert --id a1 --vector 1,0,0,0,0,0,0,0 >/dev/null || fail "upsert with CURVE"
"${ALICE[@]}" --json search --vector 1,0,0,0,0,0,0,0 -k 1 | grep -q '"a1"' || fail "search with CURVE"
note "the same through libcirrus's environment (CIRRUS_CURVE_SECRET, CIRRUS_CURVE_SERVER_PUB)"
CIRRUS_CURVE_SECRET="$WORK/alice.key" CIRRUS_CURVE_SERVER_PUB="$(grep -v '^#' "$WORK/shard.pub")" \
  "$BIN/cirrus" --endpoint "$SEP" --timeout 3000 health >/dev/null || fail "env CURVE keys"

note "plaintext, an unlisted key, and a wrong server key get nothing"
no_reply "$BIN/cirrus" --endpoint "$SEP"
no_reply "$BIN/cirrus" --endpoint "$SEP" --curve-secret "$WORK/mallory.key" \
  --curve-server-pub "$WORK/shard.pub"
no_reply "$BIN/cirrus" --endpoint "$SEP" --curve-secret "$WORK/alice.key" \
  --curve-server-pub "$WORK/mallory.pub"
grep -q "refused a CURVE client" "$WORK/shard.log" || fail "the refusal was not logged"
grep -qF "$(grep -v "^#" "$WORK/mallory.pub")" "$WORK/shard.log" || fail "the refused key is not named"

note "a revoked key (removed from the allow directory) gets nothing from the next connection"
mv "$WORK/allow-shard/alice.pub" "$WORK/alice.revoked"
no_reply "${ALICE[@]}"
cp "$WORK/alice.revoked" "$WORK/allow-shard/alice.pub"
wait_curve "${ALICE[@]}"
note "...and after a restart too"
rm "$WORK/allow-shard/alice.pub"
kill "$SHARD_PID"; wait "$SHARD_PID" 2>/dev/null || true
start_bg "$WORK/shard2.log" "$BIN/cirrus-shard" --dir "$WORK/s0" --bind "$SEP" \
  --curve-secret "$WORK/shard.key" --curve-allow "$WORK/allow-shard"
SHARD_PID=$LAST_PID
no_reply "${ALICE[@]}"
cp "$WORK/alice.revoked" "$WORK/allow-shard/alice.pub"
wait_curve "${ALICE[@]}"

note "a CURVE 1-shard cluster answers a search end to end through the coordinator"
cport=$(free_port)
CEP="tcp://127.0.0.1:$cport"
spub=$(grep -v '^#' "$WORK/shard.pub")
cat >"$WORK/map.json" <<EOF
{"bind": "$CEP", "groups": [[{"endpoint": "$SEP", "curve_pub": "$spub"}]], "metric": "ip"}
EOF
start_bg "$WORK/coord.log" "$BIN/cirrus-coordinator" --map "$WORK/map.json" \
  --curve-secret "$WORK/coord.key" --curve-allow "$WORK/allow-coord"
CA=("$BIN/cirrus" --endpoint "$CEP" --curve-secret "$WORK/alice.key"
    --curve-server-pub "$WORK/coord.pub")
wait_curve "${CA[@]}"
res=$("${CA[@]}" --json search --vector 1,0,0,0,0,0,0,0 -k 1)
echo "$res" | grep -q '"a1"' || fail "search through the CURVE coordinator: $res"
echo "$res" | grep -q '"partial":false' || fail "partial answer through CURVE: $res"
no_reply "$BIN/cirrus" --endpoint "$CEP"
no_reply "$BIN/cirrus" --endpoint "$CEP" --curve-secret "$WORK/mallory.key" \
  --curve-server-pub "$WORK/coord.pub"

note "a coordinator whose shard does not allow its key reaches no shard"
c2port=$(free_port)
sed "s#$CEP#tcp://127.0.0.1:$c2port#" "$WORK/map.json" >"$WORK/map2.json"
start_bg "$WORK/coord2.log" "$BIN/cirrus-coordinator" --map "$WORK/map2.json" \
  --curve-secret "$WORK/mallory.key" --curve-allow "$WORK/allow-coord"
C2=("$BIN/cirrus" --endpoint "tcp://127.0.0.1:$c2port" --curve-secret "$WORK/alice.key"
    --curve-server-pub "$WORK/mallory.pub")
for _ in $(seq 1 50); do "${C2[@]}" --timeout 200 stats >/dev/null 2>&1 && break; sleep 0.1; done
res=$("${C2[@]}" --timeout 2000 --json search --vector 1,0,0,0,0,0,0,0 -k 1 2>&1 || true)
echo "$res" | grep -q '"a1"' && fail "a coordinator with an unlisted key got the shard's items: $res"
echo "  $res"

note "unusable keys and missing curve_pub are refused at start"
chmod 644 "$WORK/shard.key"
expect_error "readable by others" "$BIN/cirrus-shard" --dir "$WORK/s1" --create --dim 8 \
  --index Flat --bind "tcp://127.0.0.1:$(free_port)" --curve-secret "$WORK/shard.key" \
  --curve-allow "$WORK/allow-shard"
chmod 600 "$WORK/shard.key"
expect_error "needs --curve-allow" "$BIN/cirrus-shard" --dir "$WORK/s1" --create --dim 8 \
  --index Flat --bind "tcp://127.0.0.1:$(free_port)" --curve-secret "$WORK/shard.key"
echo "{\"bind\": \"tcp://127.0.0.1:$(free_port)\", \"groups\": [[\"$SEP\"]]}" >"$WORK/map3.json"
expect_error "has no curve_pub" "$BIN/cirrus-coordinator" --map "$WORK/map3.json" \
  --curve-secret "$WORK/coord.key" --curve-allow "$WORK/allow-coord"
echo '{"groups": [[{"endpoint": "tcp://127.0.0.1:1", "curve_pub": "short"}]]}' >"$WORK/map4.json"
expect_error "curve_pub must be a Z85" "$BIN/cirrus-coordinator" --map "$WORK/map4.json" \
  --bind "tcp://127.0.0.1:$(free_port)"

note "a server open to other hosts without CURVE says so; on loopback it does not"
start_bg "$WORK/open.log" "$BIN/cirrus-shard" --dir "$WORK/s2" --create --dim 8 --index Flat \
  --bind "tcp://0.0.0.0:$(free_port)"
for _ in $(seq 1 100); do grep -q "reachable from other hosts" "$WORK/open.log" && break; sleep 0.1; done
grep -q "reachable from other hosts, without CURVE" "$WORK/open.log" ||
  fail "no warning for 0.0.0.0 without CURVE: $(cat "$WORK/open.log")"
grep -q "reachable from other hosts" "$WORK/shard.log" "$WORK/coord.log" &&
  fail "a loopback or CURVE server warned"
echo "PASS"
