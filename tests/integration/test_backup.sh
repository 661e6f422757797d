#!/usr/bin/env bash
# cirrus backup / restore, real processes: a backup of a shard taken while a loader keeps
# writing holds every item acknowledged before it started, each exactly (cirrus verify
# compares vectors bit for bit), possibly later ones and nothing else; cirrus restore copies
# it into place and cirrus-shard serves it. A cluster's backup (--map: one replica per
# group) restored and served by cirrus serve answers like the live cluster. Refusals: an
# existing directory, a coordinator endpoint, a missing backup.
. "$(dirname "$0")/lib.sh"
SRC=${CIRRUS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
trap 'bash "$SRC/deploy/local/cluster.sh" down --dir "$WORK/cl" >/dev/null 2>&1; cleanup' EXIT
D=16

"$BIN/cirrus-bench" gen --n 3000 --dim $D --out "$WORK/a.fvecs" >/dev/null
"$BIN/cirrus-bench" gen --n 200000 --dim $D --seed 9 --out "$WORK/w.fvecs" >/dev/null

note "one shard: an initial load, then a backup while a loader writes"
p=$(free_port); ep="tcp://127.0.0.1:$p"
start_bg "$WORK/shard.log" "$BIN/cirrus-shard" --dir "$WORK/s0" --bind "$ep" --create --dim $D \
  --metric l2 --index Flat --snapshot-writes 2000 --log-level info
wait_ready "$ep"
S=("$BIN/cirrus" --endpoint "$ep" --timeout 20000)
"${S[@]}" load --vectors "$WORK/a.fvecs" --id-prefix a --acked "$WORK/acked-a" 2>/dev/null
"${S[@]}" load --vectors "$WORK/w.fvecs" --id-prefix w --batch 64 --acked "$WORK/acked-w" \
  >/dev/null 2>&1 &
loader=$!
PIDS+=("$loader")
for _ in $(seq 1 300); do
  [ -s "$WORK/acked-w" ] && [ "$(wc -l <"$WORK/acked-w")" -ge 2000 ] && break
  sleep 0.02
done
kill -0 $loader 2>/dev/null || fail "the loader ended before the backup"
head -n "$(wc -l <"$WORK/acked-w")" "$WORK/acked-w" >"$WORK/before-w"
"${S[@]}" --json backup --out "$WORK/bk1" >"$WORK/bk1.json" || fail "backup failed"
kill -0 $loader 2>/dev/null || fail "the loader ended during the backup: the test proves nothing"
"${S[@]}" --json stats | jq -e '.count > 0' >/dev/null || fail "the shard stopped serving"
wait $loader || fail "the loader failed during the backup"
echo "  $(cat "$WORK/bk1.json"); acknowledged before: $(wc -l <"$WORK/before-w")"
[ -f "$WORK/bk1/data.mdb" ] && [ ! -e "$WORK/bk1.partial" ] || fail "backup layout: $(ls "$WORK")"
grep -q 'backup of' "$WORK/shard.log" || fail "the shard did not log the backup"

note "restore and serve the copy: every write acknowledged before the backup, exactly"
"$BIN/cirrus" restore --from "$WORK/bk1" --to "$WORK/r1" || fail "restore"
p2=$(free_port); rep="tcp://127.0.0.1:$p2"
start_bg "$WORK/restored.log" "$BIN/cirrus-shard" --dir "$WORK/r1" --bind "$rep" --log-level info
wait_ready "$rep"
R=("$BIN/cirrus" --endpoint "$rep" --timeout 20000)
"${R[@]}" verify --vectors "$WORK/a.fvecs" --id-prefix a --acked "$WORK/acked-a" ||
  fail "items of the first load missing from the restored backup"
"${R[@]}" verify --vectors "$WORK/w.fvecs" --id-prefix w --acked "$WORK/before-w" ||
  fail "an item acknowledged before the backup is missing or differs"
n=$("${R[@]}" --json stats | jq .count)
lo=$((3000 + $(wc -l <"$WORK/before-w")))
hi=$((3000 + $(wc -l <"$WORK/acked-w")))
[ "$n" -ge "$lo" ] && [ "$n" -le "$hi" ] || fail "the copy holds $n items, not in [$lo, $hi]"
# Whatever later items it holds are whole: the dump of the copy equals the live shard's, item
# for item, on the ids they share.
"${R[@]}" dump >"$WORK/copy.jsonl"
"${S[@]}" dump >"$WORK/live.jsonl"
missing=$(jq -r .id "$WORK/copy.jsonl" | sort | comm -23 - <(jq -r .id "$WORK/live.jsonl" | sort) | wc -l)
[ "$missing" -eq 0 ] || fail "the copy holds $missing ids the shard never had"
join <(jq -r '[.id, (.vector | map(tostring) | join(","))] | join(" ")' "$WORK/copy.jsonl" | sort) \
     <(jq -r '[.id, (.vector | map(tostring) | join(","))] | join(" ")' "$WORK/live.jsonl" | sort) |
  awk '$2 != $3 { bad++ } END { exit bad > 0 }' || fail "an item of the copy differs from the shard's"

note "refusals"
expect_error 'exists' "${S[@]}" backup --out "$WORK/bk1"
expect_error 'exists' "$BIN/cirrus" restore --from "$WORK/bk1" --to "$WORK/r1"
expect_error 'not a backup' "$BIN/cirrus" restore --from "$WORK" --to "$WORK/r9"

note "a cluster: one replica per group, restored, served by cirrus serve"
cep=$(bash "$SRC/deploy/local/cluster.sh" up --dir "$WORK/cl" --bin "$BIN" --dim $D --index Flat \
  --metric l2)
# shellcheck disable=SC1091
. "$WORK/cl/cluster.env"
PIDS+=("$COORDINATOR_PID" "$SHARD_0_0_PID" "$SHARD_0_1_PID" "$SHARD_1_0_PID" "$SHARD_1_1_PID")
"$BIN/cirrus" --endpoint "$cep" load --vectors "$WORK/a.fvecs" --id-prefix c --acked "$WORK/acked-c" \
  2>/dev/null
expect_error 'shard operation' "$BIN/cirrus" --endpoint "$cep" backup --out "$WORK/bk-coord"
kill -9 "$SHARD_0_0_PID" # the first replica of group 0 is down: its peer makes the copy
"$BIN/cirrus" --json backup --map "$WORK/cl/map.json" --out "$WORK/bk2" >"$WORK/bk2.json" 2>&1 ||
  fail "cluster backup: $(cat "$WORK/bk2.json")"
[ -f "$WORK/bk2/cluster.json" ] && [ -f "$WORK/bk2/group-1/data.mdb" ] || fail "cluster backup layout"
"$BIN/cirrus" restore --from "$WORK/bk2" --to "$WORK/r2" || fail "cluster restore"
sp=$(free_port); sep="tcp://127.0.0.1:$sp"
start_bg "$WORK/serve.log" "$BIN/cirrus" serve --data "$WORK/r2" --bind "$sep"
wait_ready "$sep"
"$BIN/cirrus" --endpoint "$sep" verify --vectors "$WORK/a.fvecs" --id-prefix c --acked "$WORK/acked-c" ||
  fail "the restored cluster lacks acknowledged items (or finds them in the wrong group)"
q=$("$BIN/cirrus" --endpoint "$sep" --json get --id c42 | jq -r '.vector | map(tostring) | join(",")')
a=$("$BIN/cirrus" --endpoint "$cep" --json search --vector "$q" -k 10 | jq -c '[.hits[] | [.id, .score]]')
b=$("$BIN/cirrus" --endpoint "$sep" --json search --vector "$q" -k 10 | jq -c '[.hits[] | [.id, .score]]')
[ "$a" = "$b" ] || fail "restored cluster answers $b, live $a"
note "ok"
