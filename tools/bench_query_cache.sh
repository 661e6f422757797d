#!/usr/bin/env bash
# composed query latency, cold (each caption new: composed by the encoder) vs cached (repeat)
set -e
BIN=${1:-build/bin}; FIX=${2:-../shared/fixtures/clip-tiny}; W=$(mktemp -d); ep=tcp://127.0.0.1:7791
$BIN/cirrus-bench catalog --out $W/cat --n 200 >/dev/null 2>&1
$BIN/cirrus serve --data $W/data --model $FIX/clip-openai-names.safetensors --phi $FIX/phi.safetensors --bind $ep >$W/log 2>&1 &
P=$!; trap 'kill $P; wait $P; rm -rf $W' EXIT
for i in $(seq 100); do $BIN/cirrus --endpoint $ep --timeout 200 health >/dev/null 2>&1 && break; sleep 0.1; done
$BIN/cirrus --endpoint $ep ingest --catalog $W/cat/catalog.jsonl --images $W/cat >/dev/null 2>&1
run() { for i in $(seq 50); do $BIN/cirrus --endpoint $ep --json search --ref-id sku-$((i % 50)) --caption "is red $i" --method searle -k 10; done |
  grep -o '"total_us":[0-9]*' | cut -d: -f2 | sort -n | awk '{a[NR]=$1} END {printf "p50 %.2f ms p90 %.2f ms (n=%d)\n", a[int(NR/2)+1]/1000, a[int(NR*0.9)]/1000, NR}'; }
echo "cold:   $(run)"
echo "cached: $(run)"
