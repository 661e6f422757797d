#!/usr/bin/env bash
# `cirrus eval run` end to end on `cirrus serve` with the clip-tiny fixture (random weights, so
# rankings are not semantic): a tiny synthetic CIRCO, FashionIQ and CIRR, each in the layout its
# authors publish, built from `cirrus-bench catalog` images and hand-made annotations. Checks
# that --index-catalog indexes the galleries, that the prediction files exist in the official
# formats and are accepted by `cirrus eval circo|fashioniq|cirr`, that the metrics are numbers
# in [0, 1], and that the predictions are right where they can be known: a query whose target
# is its own reference (empty caption, method `image`) ranks it first (CIRCO, FashionIQ); for
# CIRR, which removes the reference, a byte-identical copy under another name ranks first.
# Also: a reference missing from the catalog is reported and counted and the run goes on
# (exit 1); missing and malformed annotation files are clear errors naming the file; a split
# without ground truth writes predictions and no metrics.
. "$(dirname "$0")/lib.sh"

SHARED=${CIRRUS_SHARED_DIR:-}
FIX="$SHARED/fixtures/clip-tiny"
if [ ! -f "$FIX/clip-openai-names.safetensors" ]; then
  echo "SKIP: fixture model not found under ${SHARED:-(CIRRUS_SHARED_DIR unset)}"
  exit 77
fi

note "stand-in images (cirrus-bench catalog)"
"$BIN/cirrus-bench" catalog --out "$WORK/cat" --n 30 >/dev/null 2>&1
IMG="$WORK/cat/images" # sku-0.png .. sku-29.png

# ---- CIRCO: annotations/val.json, COCO2017_unlabeled/{annotations,unlabeled2017} ----------
D="$WORK/circo"
mkdir -p "$D/annotations" "$D/COCO2017_unlabeled/unlabeled2017" "$D/COCO2017_unlabeled/annotations"
info='{"info":{},"images":['
for i in $(seq 1 30); do
  f=$(printf '%012d.jpg' "$i") # COCO names; PNG bytes are fine, the decoder sniffs
  cp "$IMG/sku-$((i - 1)).png" "$D/COCO2017_unlabeled/unlabeled2017/$f"
  info+="{\"id\":$i,\"file_name\":\"$f\",\"width\":64,\"height\":64}"
  [ "$i" -lt 30 ] && info+=","
done
echo "$info]}" >"$D/COCO2017_unlabeled/annotations/image_info_unlabeled2017.json"
cat >"$D/annotations/val.json" <<'EOF'
[
 {"id": 0, "reference_img_id": 1, "target_img_id": 1, "relative_caption": "",
  "shared_concept": "a garment", "gt_img_ids": [1], "semantic_aspects": ["cardinality"]},
 {"id": 1, "reference_img_id": 2, "target_img_id": 9, "relative_caption": "is red",
  "shared_concept": "a dress", "gt_img_ids": [9, 10, 11], "semantic_aspects": ["addition"]},
 {"id": 2, "reference_img_id": 5, "target_img_id": 20, "relative_caption": "has stripes",
  "shared_concept": "a shirt", "gt_img_ids": [20], "semantic_aspects": []},
 {"id": 3, "reference_img_id": 12, "target_img_id": 3, "relative_caption": "is shorter",
  "shared_concept": "a skirt", "gt_img_ids": [3, 4], "semantic_aspects": ["viewpoint"]},
 {"id": 4, "reference_img_id": 30, "target_img_id": 7, "relative_caption": "is blue and longer",
  "shared_concept": "a coat", "gt_img_ids": [7]}
]
EOF
cat >"$D/annotations/test.json" <<'EOF'
[
 {"id": 10, "reference_img_id": 3, "relative_caption": "is green", "shared_concept": "x"},
 {"id": 11, "reference_img_id": 4, "relative_caption": "has no sleeves", "shared_concept": "y"}
]
EOF

# ---- FashionIQ: captions/, image_splits/, images/ ----------------------------------------
F="$WORK/fiq"
mkdir -p "$F/captions" "$F/image_splits" "$F/images"
cats=(dress shirt toptee)
for c in 0 1 2; do
  names=()
  for j in $(seq 0 9); do
    n="B0${c}${j}X"
    cp "$IMG/sku-$((c * 10 + j)).png" "$F/images/$n.png"
    names+=("\"$n\"")
  done
  (IFS=,; echo "[${names[*]}]") >"$F/image_splits/split.${cats[$c]}.val.json"
done
cat >"$F/captions/cap.dress.val.json" <<'EOF'
[
 {"target": "B000X", "candidate": "B000X", "captions": ["", ""]},
 {"target": "B003X", "candidate": "B001X", "captions": ["is red.", "has a belt"]},
 {"target": "B005X", "candidate": "B002X", "captions": ["is shorter", "is darker?"]}
]
EOF
cat >"$F/captions/cap.shirt.val.json" <<'EOF'
[
 {"target": "B014X", "candidate": "B010X", "captions": ["has stripes", "is blue"]},
 {"target": "B019X", "candidate": "B011X", "captions": ["no sleeves", "is white"]}
]
EOF
cat >"$F/captions/cap.toptee.val.json" <<'EOF'
[
 {"target": "B022X", "candidate": "B027X", "captions": ["is green", "has a logo"]}
]
EOF

# ---- CIRR: cirr/captions, cirr/image_splits, dev/ -----------------------------------------
R="$WORK/cirr"
mkdir -p "$R/cirr/captions" "$R/cirr/image_splits" "$R/dev"
split='{'
for i in $(seq 0 29); do
  n="dev-$((i / 6))-0-img$((i % 6))"
  cp "$IMG/sku-$i.png" "$R/dev/$n.png"
  split+="\"$n\": \"./dev/$n.png\","
done
cp "$IMG/sku-0.png" "$R/dev/dev-dup-0-img0.png" # a byte-identical copy of dev-0-0-img0
echo "$split\"dev-dup-0-img0\": \"./dev/dev-dup-0-img0.png\"}" >"$R/cirr/image_splits/split.rc2.val.json"
members() { local s=$1; echo "[\"dev-$s-0-img0\",\"dev-$s-0-img1\",\"dev-$s-0-img2\",\"dev-$s-0-img3\",\"dev-$s-0-img4\",\"dev-$s-0-img5\"]"; }
cat >"$R/cirr/captions/cap.rc2.val.json" <<EOF
[
 {"pairid": 100, "reference": "dev-0-0-img0", "target_hard": "dev-dup-0-img0",
  "target_soft": {"dev-dup-0-img0": 1.0}, "caption": "",
  "img_set": {"id": 0, "members": ["dev-0-0-img0", "dev-dup-0-img0", "dev-0-0-img2",
                                   "dev-0-0-img3", "dev-0-0-img4", "dev-0-0-img5"]}},
 {"pairid": 101, "reference": "dev-1-0-img0", "target_hard": "dev-1-0-img3",
  "target_soft": {"dev-1-0-img3": 1.0}, "caption": "the dog is now on the left",
  "img_set": {"id": 1, "members": $(members 1)}},
 {"pairid": 102, "reference": "dev-2-0-img4", "target_hard": "dev-2-0-img1",
  "target_soft": {"dev-2-0-img1": 1.0}, "caption": "two of them and a red background",
  "img_set": {"id": 2, "members": $(members 2)}},
 {"pairid": 103, "reference": "dev-4-0-img2", "target_hard": "dev-3-0-img0",
  "target_soft": {"dev-3-0-img0": 1.0}, "caption": "more of them",
  "img_set": {"id": 4, "members": $(members 4)}}
]
EOF

# One cirrus serve per dataset: the benchmarks rank their own gallery only.
declare -A EP
for ds in circo fashioniq cirr; do
  EP[$ds]="tcp://127.0.0.1:$(free_port)"
  note "start cirrus serve for $ds on ${EP[$ds]} (fixture model, phi and combiner, Flat index)"
  start_bg "$WORK/serve-$ds.log" "$BIN/cirrus" serve --data "$WORK/data-$ds" \
    --model "$FIX/clip-openai-names.safetensors" --phi "$FIX/phi.safetensors" \
    --combiner "$FIX/combiner.safetensors" --index Flat --bind "${EP[$ds]}" --threads 1
done
for ds in circo fashioniq cirr; do wait_ready "${EP[$ds]}" 60; done
E() { local ds=$1; shift; "$BIN/cirrus" --endpoint "${EP[$ds]}" --timeout 30000 "$@"; }

# check_metrics JSON: every metric is null or a number in [0, 1], and there is at least one.
check_metrics() {
  local m nums
  m=$(echo "$1" | sed -n 's/.*"metrics":\(.*\),"seconds".*/\1/p')
  [ -n "$m" ] || fail "no metrics in: $1"
  nums=$(echo "$m" | sed 's/"n_queries":[0-9]*//g' | grep -oE ':-?[0-9][0-9.eE+-]*' | cut -c2- || true)
  [ -n "$nums" ] || fail "no numeric metric in: $m"
  echo "$nums" | awk '{ if ($1 < 0 || $1 > 1) { print "out of range: " $1; bad = 1 } }
                      END { exit bad }' || fail "metrics outside [0,1]: $m"
}

for ds in circo fashioniq cirr; do
  case $ds in circo) root=$D ;; fashioniq) root=$F ;; cirr) root=$R ;; esac
  method=searle
  [ "$ds" = fashioniq ] && method=combiner
  note "$ds: eval run --index-catalog --method $method"
  out=$(E $ds --json eval run --dataset $ds --root "$root" --index-catalog --method $method \
    --out "$WORK/out-$ds" --quiet) || fail "$ds run failed: $out"
  echo "  $out" | cut -c1-300
  echo "$out" | grep -q '"failed":0' || fail "$ds: failed queries: $out"
  echo "$out" | grep -q '"index_failed":0' || fail "$ds: failed images: $out"
  check_metrics "$out"
  note "$ds: text output"
  E $ds eval run --dataset $ds --root "$root" --method $method --out "$WORK/txt-$ds" \
    --quiet >"$WORK/txt-$ds.out" || fail "$ds text run failed"
  grep -q "queries" "$WORK/txt-$ds.out" || fail "$ds text: $(cat "$WORK/txt-$ds.out")"
done
grep -q '"indexed":30' <<<"$(E circo --json eval run --dataset circo --root "$D" \
  --index-catalog --out "$WORK/re" --quiet)" || fail "circo gallery of 30 images not indexed"

note "official formats, accepted by cirrus eval"
P="$WORK/out-circo/circo_val.json"
[ -f "$P" ] || fail "no $P"
grep -qE '^\{"0":\[[0-9]+(,[0-9]+)*\],"1":\[' "$P" || fail "circo format: $(head -c 200 "$P")"
"$BIN/cirrus" eval circo --annotations "$D/annotations/val.json" --predictions "$P" >/dev/null ||
  fail "cirrus eval circo refuses $P"
[ -f "$WORK/out-circo/circo_val_metrics.json" ] || fail "no circo metrics file"

P="$WORK/out-fashioniq/fashioniq_val.jsonl"
[ "$(wc -l <"$P")" -eq 6 ] || fail "fashioniq: expected 6 lines in $P"
grep -q '^{"category":"shirt","candidate":"B010X","target":"B014X","ranking":\["B01' "$P" ||
  fail "fashioniq format: $(head -2 "$P")"
grep -q '"ranking":\[[^]]*"B00' <(grep '"category":"shirt"' "$P") &&
  fail "fashioniq: a shirt query ranked a dress image (category filter): $(grep shirt "$P")"
"$BIN/cirrus" eval fashioniq --predictions "$P" >/dev/null || fail "cirrus eval fashioniq refuses $P"

P="$WORK/out-cirr/cirr_val.json"
S="$WORK/out-cirr/cirr_val_subset.json"
grep -q '^{"version":"rc2","metric":"recall","100":\["' "$P" || fail "cirr format: $(head -c 200 "$P")"
grep -q '^{"version":"rc2","metric":"recall_subset","100":\["' "$S" || fail "cirr subset format: $(head -c 200 "$S")"
grep -q '"dev-0-0-img0"' <(grep -o '"100":\[[^]]*\]' "$P") && fail "cirr: reference not removed"
n=$(grep -o '"101":\[[^]]*\]' "$S" | grep -o ',' | wc -l)
[ "$n" -eq 2 ] || fail "cirr subset list of pairid 101 is not 3 long: $(cat "$S")"
"$BIN/cirrus" eval cirr --annotations "$R/cirr/captions/cap.rc2.val.json" --predictions "$P" \
  --subset-predictions "$S" >/dev/null || fail "cirrus eval cirr refuses the files"

note "correctness: the reference itself (image method, empty caption) ranks first"
E circo --json eval run --dataset circo --root "$D" --method image --out "$WORK/img-circo" \
  --quiet >/dev/null || fail "circo image run failed"
grep -q '^{"0":\[1,' "$WORK/img-circo/circo_val.json" ||
  fail "circo: query 0 does not rank image 1 first: $(head -c 120 "$WORK/img-circo/circo_val.json")"
E fashioniq --json eval run --dataset fashioniq --root "$F" --method image --out "$WORK/img-fiq" \
  --quiet >/dev/null || fail "fashioniq image run failed"
head -1 "$WORK/img-fiq/fashioniq_val.jsonl" | grep -q '"ranking":\["B000X",' ||
  fail "fashioniq: B000X not first: $(head -1 "$WORK/img-fiq/fashioniq_val.jsonl")"
out=$(E cirr --json eval run --dataset cirr --root "$R" --method image --out "$WORK/img-cirr" \
  --quiet) || fail "cirr image run failed: $out"
grep -q '"100":\["dev-dup-0-img0",' "$WORK/img-cirr/cirr_val.json" ||
  fail "cirr: the duplicate is not first: $(cat "$WORK/img-cirr/cirr_val.json")"
grep -q '"100":\["dev-dup-0-img0",' "$WORK/img-cirr/cirr_val_subset.json" ||
  fail "cirr subset: the duplicate is not first: $(cat "$WORK/img-cirr/cirr_val_subset.json")"

note "a split without ground truth: predictions, no metrics"
out=$(E circo --json eval run --dataset circo --root "$D" --split test --out "$WORK/test" --quiet) ||
  fail "circo test split failed: $out"
echo "$out" | grep -q '"metrics"' && fail "metrics without ground truth: $out"
grep -q '^{"10":\[[0-9]' "$WORK/test/circo_test.json" || fail "circo test predictions"

note "a reference missing from the catalog: reported, counted, the run goes on (exit 1)"
B="$WORK/circo-bad"
mkdir -p "$B/annotations"
sed 's/"reference_img_id": 30/"reference_img_id": 999/' "$D/annotations/val.json" >"$B/annotations/val.json"
rc=0
out=$(E circo --json eval run --dataset circo --root "$B" --out "$WORK/bad" --quiet 2>"$WORK/bad.err") || rc=$?
[ "$rc" -eq 1 ] || fail "exit $rc with a missing reference (expected 1)"
grep -q "query 4 (reference 999)" "$WORK/bad.err" || fail "not reported: $(cat "$WORK/bad.err")"
echo "$out" | grep -q '"failed":1,"missing_reference":1' || fail "not counted: $out"
grep -q '"4":\[\]' "$WORK/bad/circo_val.json" || fail "no empty ranking for the failed query"
check_metrics "$out"

note "a gallery image that is missing: reported, counted, the run goes on (exit 1)"
cp -r "$F" "$WORK/fiq-bad"
rm "$WORK/fiq-bad/images/B015X.png"
rc=0
out=$(E fashioniq --json eval run --dataset fashioniq --root "$WORK/fiq-bad" --index-catalog \
  --out "$WORK/fb" --quiet 2>"$WORK/fb.err") || rc=$?
[ "$rc" -eq 1 ] || fail "exit $rc with a missing image (expected 1)"
echo "$out" | grep -q '"indexed":29,"index_failed":1' || fail "not counted: $out"
grep -q "image B015X: .*images/B015X.png: no such image" "$WORK/fb.err" ||
  fail "not reported: $(cat "$WORK/fb.err")"

note "bad input: clear errors naming the file"
expect_error "none: no such directory" E circo eval run --dataset circo --root "$WORK/none"
mkdir -p "$WORK/none"
expect_error "none/annotations/val.json: cannot open" \
  E circo eval run --dataset circo --root "$WORK/none" --out "$WORK/x"
mkdir -p "$WORK/mal/annotations"
echo '[{"id": 1, "reference_img_id": 2,' >"$WORK/mal/annotations/val.json"
expect_error "mal/annotations/val.json: malformed JSON" \
  E circo eval run --dataset circo --root "$WORK/mal" --out "$WORK/x"
echo '[{"id": 1}]' >"$WORK/mal/annotations/val.json"
expect_error "mal/annotations/val.json: entry 0 needs" \
  E circo eval run --dataset circo --root "$WORK/mal" --out "$WORK/x"
expect_error "cap.dress.val.json: cannot open" \
  E circo eval run --dataset fashioniq --root "$WORK/mal" --out "$WORK/x"
expect_error "cirr/captions/cap.rc2.val.json: cannot open" \
  E circo eval run --dataset cirr --root "$WORK/mal" --out "$WORK/x"
expect_error "unknown dataset" E circo eval run --dataset coco --root "$D"
expect_error "did not answer" "$BIN/cirrus" --endpoint "tcp://127.0.0.1:$(free_port)" \
  --timeout 300 eval run --dataset circo --root "$D" --out "$WORK/x"

echo "OK"
