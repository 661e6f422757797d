#!/usr/bin/env bash
# Index quality regression: a shard's index built from small write batches (the engine's
# backlog and indexer thread, also interleaved with searches) must keep recall@10 within 0.01
# of the same FAISS index built in-process in one call, for HNSW and IVF (cirrus-bench index
# exits 3 otherwise). Small data: 30k x 128-d, 1,000 queries, batches of 64.
. "$(dirname "$0")/lib.sh"

"$BIN/cirrus-bench" gen --n 30000 --dim 128 --clusters 200 --queries 1000 --seed 7 \
  --out "$WORK/b.fvecs" --query-out "$WORK/q.fvecs" >/dev/null
"$BIN/cirrus-bench" truth --base "$WORK/b.fvecs" --queries "$WORK/q.fvecs" --k 10 --metric l2 \
  --out "$WORK/t.ivecs" >/dev/null
for spec in "HNSW32|--ef 16" "IVF256,Flat|--nprobe 2"; do
  IFS='|' read -r index params <<<"$spec"
  note "$index $params, batches of 64"
  rc=0
  # shellcheck disable=SC2086
  "$BIN/cirrus-bench" index --base "$WORK/b.fvecs" --queries "$WORK/q.fvecs" \
    --truth "$WORK/t.ivecs" --metric l2 --batch 64 --no-chunked --workdir "$WORK" \
    --index "$index" $params | tee "$WORK/out.txt" || rc=$?
  [ "$rc" -eq 0 ] || fail "$index: shard recall more than 0.01 below in-process (rc $rc)"
  [ "$(grep -c "^| $index |" "$WORK/out.txt")" -eq 3 ] || fail "$index: missing rows"
done
echo "PASS"
