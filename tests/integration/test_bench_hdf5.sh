#!/usr/bin/env bash
# cirrus-bench reads ann-benchmarks HDF5 files: an HDF5 file made here with h5py (train, test,
# neighbors, distances, as ann-benchmarks writes them) is read by `cirrus-bench search` with
# FILE.hdf5:DATASET paths; recall against its neighbors dataset is 1 for Flat and high for
# HNSW32; a missing dataset is refused with its name.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
"$PY" -c "import h5py, numpy" 2>/dev/null || { echo "SKIP: python3-h5py not installed"; exit 77; }

"$PY" - "$WORK/ds.hdf5" <<'PYEOF'
import sys, h5py, numpy as np
rng = np.random.default_rng(3)
centers = rng.normal(size=(50, 32)).astype(np.float32)
def pts(n):
    return (centers[rng.integers(0, 50, n)] + 0.35 * rng.normal(size=(n, 32))).astype(np.float32)
train, test = pts(5000), pts(200)
d = ((test[:, None, :] - train[None, :, :]) ** 2).sum(-1)
nb = np.argsort(d, axis=1)[:, :100].astype(np.int32)
with h5py.File(sys.argv[1], "w") as f:
    f.attrs["distance"] = "euclidean"
    f["train"], f["test"], f["neighbors"] = train, test, nb
    f["distances"] = np.sqrt(np.take_along_axis(d, nb, 1)).astype(np.float32)
PYEOF

rec() { grep -o '"recall":[0-9.e-]*' <<<"$1" | head -1 | cut -d: -f2; }
for spec in "Flat|0.999" "HNSW32|0.9"; do
  IFS='|' read -r index min <<<"$spec"
  note "search --peer-index $index on ds.hdf5"
  out=$("$BIN/cirrus-bench" search --peer-base "$WORK/ds.hdf5:train" --queries "$WORK/ds.hdf5:test" \
    --truth "$WORK/ds.hdf5:neighbors" --peer-index "$index" --metric l2 --k 10 --ef 64 \
    --duration 1 --peer-threads 1 --json)
  r=$(rec "$out")
  echo "$index recall $r"
  awk -v r="$r" -v m="$min" 'BEGIN { exit !(r >= m) }' || fail "$index recall $r < $min"
done
note "a missing dataset is named"
if "$BIN/cirrus-bench" search --peer-base "$WORK/ds.hdf5:nope" --queries "$WORK/ds.hdf5:test" \
  --peer-index Flat --duration 1 >"$WORK/err.txt" 2>&1; then fail "missing dataset accepted"; fi
grep -q "nope" "$WORK/err.txt" || { cat "$WORK/err.txt"; fail "the error does not name the dataset"; }
echo "PASS"
