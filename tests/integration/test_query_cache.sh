#!/usr/bin/env bash
# The coordinator's composed query cache (issue 15) through `cirrus serve --http`: a repeated
# composed query gives the same hits, counts a hit in /metrics and does not reach the encoder
# (its request count, from `cirrus stats`, is unchanged); another caption or method misses;
# an item updated with a new vector is composed again (no stale composition); the entry
# bound evicts least recently used first; --query-cache 0 turns it off.
. "$(dirname "$0")/lib.sh"
FIX=${CIRRUS_SHARED_DIR:-}/fixtures/clip-tiny
[ -f "$FIX/clip-openai-names.safetensors" ] || { echo "SKIP: $FIX not found"; exit 77; }

"$BIN/cirrus-bench" catalog --out "$WORK/cat" --n 40 >/dev/null 2>&1
ep="tcp://127.0.0.1:$(free_port)"
hp=$(free_port)
start_bg "$WORK/serve.log" "$BIN/cirrus" serve --data "$WORK/data" \
  --model "$FIX/clip-openai-names.safetensors" --phi "$FIX/phi.safetensors" \
  --combiner "$FIX/combiner.safetensors" --bind "$ep" --http "127.0.0.1:$hp" --query-cache 3
SERVE=$LAST_PID
wait_ready "$ep"
C=("$BIN/cirrus" --endpoint "$ep" --timeout 20000)
"${C[@]}" ingest --catalog "$WORK/cat/catalog.jsonl" --images "$WORK/cat" >/dev/null 2>&1
H="http://127.0.0.1:$hp"

metric() { curl -s -m 5 "$H/metrics" | awk -v n="$1" '$1 == n { print $2 }'; }
enc_requests() { "${C[@]}" --json stats | grep -o '"requests":[0-9]*' | head -1 | cut -d: -f2; }
hits_of() { "${C[@]}" --json search --ref-id "$1" --caption "$2" --method "$3" -k 5 |
  grep -o '"id":"[^"]*"' | tr '\n' ' '; }

note "a repeated composed query: same hits, a cache hit, the encoder not called"
a=$(hits_of sku-3 "is red" searle)
h0=$(metric cirrus_query_cache_hits_total); m0=$(metric cirrus_query_cache_misses_total)
e0=$(enc_requests)
[ -n "$e0" ] || fail "no encoder request count in stats: $("${C[@]}" --json stats)"
b=$(hits_of sku-3 "is red" searle)
[ -n "$a" ] && [ "$a" = "$b" ] || fail "cached answer [$b] differs from the first [$a]"
[ "$(metric cirrus_query_cache_hits_total)" = $((h0 + 1)) ] || fail "no hit counted"
[ "$(metric cirrus_query_cache_misses_total)" = "$m0" ] || fail "a miss counted for a repeat"
[ "$(enc_requests)" = "$e0" ] || fail "the encoder was called: $e0 -> $(enc_requests)"

note "another caption, another method: misses, composed by the encoder"
hits_of sku-3 "is blue" searle >/dev/null
hits_of sku-3 "is red" combiner >/dev/null
[ "$(metric cirrus_query_cache_misses_total)" = $((m0 + 2)) ] || fail "caption/method did not miss"
[ "$(enc_requests)" -gt "$e0" ] || fail "the encoder did not compose the new queries"

note "an updated item is composed from its new vector"
vec=$("${C[@]}" --json get --id sku-9 | sed 's/.*"vector":\[\([^]]*\)\].*/\1/')
m1=$(metric cirrus_query_cache_misses_total)
"${C[@]}" upsert --id sku-3 --vector "$vec" >/dev/null || fail "upsert"
c=$(hits_of sku-3 "is red" searle)
[ "$(metric cirrus_query_cache_misses_total)" = $((m1 + 1)) ] || fail "stale composition served"
want=$(hits_of sku-9 "is red" searle)
[ "$c" = "$want" ] || fail "after the update sku-3 composes [$c], its new vector composes [$want]"

note "the bound (3 entries): least recently used first"
ev0=$(metric cirrus_query_cache_evictions_total)
hits_of sku-5 "x" sum >/dev/null; hits_of sku-5 "y" sum >/dev/null; hits_of sku-5 "z" sum >/dev/null
[ "$(metric cirrus_query_cache_entries)" = 3 ] || fail "entries: $(metric cirrus_query_cache_entries)"
[ "$(metric cirrus_query_cache_evictions_total)" -ge $((ev0 + 2)) ] || fail "no eviction"
hits_of sku-5 "x" sum >/dev/null # x is now the most recent
hits_of sku-5 "w" sum >/dev/null # evicts y
h1=$(metric cirrus_query_cache_hits_total)
hits_of sku-5 "x" sum >/dev/null
[ "$(metric cirrus_query_cache_hits_total)" = $((h1 + 1)) ] || fail "the recent entry was evicted"
hits_of sku-5 "y" sum >/dev/null
[ "$(metric cirrus_query_cache_hits_total)" = $((h1 + 1)) ] || fail "the LRU entry was kept"

kill "$SERVE"; wait "$SERVE" 2>/dev/null
note "--query-cache 0: off"
start_bg "$WORK/serve2.log" "$BIN/cirrus" serve --data "$WORK/data" \
  --model "$FIX/clip-openai-names.safetensors" --phi "$FIX/phi.safetensors" \
  --bind "$ep" --http "127.0.0.1:$hp" --query-cache 0
wait_ready "$ep"
hits_of sku-3 "is red" searle >/dev/null; hits_of sku-3 "is red" searle >/dev/null
[ "$(metric cirrus_query_cache_hits_total)" = 0 ] || fail "a hit with the cache off"
echo "1 passed, 0 failed"
