#!/usr/bin/env bash
# The real cirrus-encoder on a loopback port with the clip-tiny fixture: health and stats
# through the CLI, `cirrus tokenize` ids against clip.tokenize, `cirrus embed` in-process
# (a crafted 150-byte BMP under squarepad / targetpad in bounded memory), the encoder's
# preprocessing limits, a clean exit (0) on SIGTERM.
. "$(dirname "$0")/lib.sh"

SHARED=${CIRRUS_SHARED_DIR:-}
FIX="$SHARED/fixtures/clip-tiny"
if [ ! -f "$FIX/clip-openai-names.safetensors" ]; then
  echo "SKIP: fixture model not found under ${SHARED:-(CIRRUS_SHARED_DIR unset)}"
  exit 77
fi
MODEL="$FIX/clip-openai-names.safetensors"

ep="tcp://127.0.0.1:$(free_port)"
C=("$BIN/cirrus" --endpoint "$ep" --json)

note "start cirrus-encoder on $ep"
start_bg "$WORK/enc.log" "$BIN/cirrus-encoder" --model "$MODEL" --bind "$ep" --threads 1 \
  --phi "$FIX/phi.safetensors" --combiner "$FIX/combiner.safetensors" --log-level info
pid=$LAST_PID
wait_ready "$ep"

note "health and stats"
"${C[@]}" health | grep -q '"role":"encoder"' || fail "health: $("${C[@]}" health)"
stats=$("${C[@]}" stats)
echo "$stats" | grep -q '"role":"encoder"' || fail "stats role: $stats"
echo "$stats" | grep -q '"dim":64' || fail "stats dim: $stats"
echo "$stats" | grep -q '"model":"clip-openai-names.safetensors"' || fail "stats model: $stats"

note "an encoder refuses shard operations clearly"
out=$("$BIN/cirrus" --endpoint "$ep" snapshot 2>&1) && fail "snapshot succeeded on an encoder"
echo "$out" | grep -q "not served by an encoder" || fail "snapshot error: $out"

note "tokenize (ids of clip.tokenize, from the fixture's caption_tokens)"
tok=$("$BIN/cirrus" tokenize "is red and has short sleeves")
case "$tok" in
  "[49406,533,736,537,791,3005,19691,49407,0,0,"*) ;;
  *) fail "tokenize: $tok" ;;
esac
[ "$(echo "$tok" | tr ',' '\n' | wc -l)" -eq 77 ] || fail "tokenize: not 77 ids: $tok"
tok=$("$BIN/cirrus" tokenize "ALL CAPS SHOUTING AND MiXeD cAsE" "a")
[ "$(echo "$tok" | wc -l)" -eq 2 ] || fail "tokenize: one line per text expected: $tok"

note "embed (in-process), argument order kept"
emb=$("$BIN/cirrus" embed --model "$MODEL" --threads 1 --text "is red" \
  --image "$FIX/images/img0_40x30_rgb.png" --text "has a v-neck" --normalize)
[ "$(echo "$emb" | wc -l)" -eq 3 ] || fail "embed: 3 lines expected: $emb"
echo "$emb" | sed -n 1p | grep -q '^{"kind":"text","input":"is red","embedding":\[' ||
  fail "embed line 1: $(echo "$emb" | sed -n 1p | cut -c1-120)"
echo "$emb" | sed -n 2p | grep -q '"kind":"image"' || fail "embed line 2"
n=$(echo "$emb" | sed -n 2p | sed 's/.*"embedding":\[\([^]]*\)\].*/\1/' | tr ',' '\n' | wc -l)
[ "$n" -eq 64 ] || fail "embed: $n values, expected 64"
"$BIN/cirrus" embed --model "$MODEL" --image /dev/null 2>"$WORK/err.txt" && fail "empty image accepted"
grep -q "image 0" "$WORK/err.txt" || fail "embed error: $(cat "$WORK/err.txt")"

note "a 150-byte BMP of 32272 x 16 under squarepad: cheap (the padded canvas is never allocated)"
# BMP header (24 bpp, 32272 x 16) and 120 bytes of pixel data; stb reads the rest as zeros.
printf 'BM\226\0\0\0\0\0\0\0\066\0\0\0\050\0\0\0\020\176\0\0\020\0\0\0\001\0\030\0' \
  >"$WORK/bomb.bmp"
head -c 120 /dev/zero >>"$WORK/bomb.bmp"
[ "$(wc -c <"$WORK/bomb.bmp")" -eq 150 ] || fail "crafted BMP is not 150 bytes"
for pp in squarepad targetpad; do
  # 1 GB of address space: the old code asked for 32272^2 x 3 = 3.1 GB here
  emb=$( (ulimit -v 1000000; timeout 20 "$BIN/cirrus" embed --model "$MODEL" --threads 1 \
    --preprocess "$pp" --image "$WORK/bomb.bmp") 2>&1) || fail "embed $pp of the BMP: $emb"
  echo "$emb" | grep -q '"kind":"image"' || fail "embed $pp: $(echo "$emb" | cut -c1-200)"
done

note "encoder options: allowed pipelines and work limits are documented and checked"
help=$("$BIN/cirrus-encoder" --help)
for f in --allow-preprocess --max-image-work --max-request-work --drain-ms; do
  echo "$help" | grep -q -- "$f" || fail "--help does not document $f"
done
out=$("$BIN/cirrus-encoder" --model "$MODEL" --allow-preprocess clip,bogus 2>&1) &&
  fail "a bad --allow-preprocess was accepted"
echo "$out" | grep -q "bogus" || fail "--allow-preprocess error: $out"

note "SIGTERM exits 0"
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
[ "$rc" -eq 0 ] || fail "cirrus-encoder exited $rc: $(tail -5 "$WORK/enc.log")"
grep -q "stopped cleanly" "$WORK/enc.log" || fail "no clean stop in the log"
echo "1 passed, 0 failed"
