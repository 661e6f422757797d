#!/usr/bin/env bash
# check_layers.sh — every folder includes headers only from itself and the folders below it
# (DESIGN §2, but with node/ above gateway/: node composes every role, the HTTP API included:
# proto, common, encoder, shard, coordinator, jobs, client, gateway, node, eval,
# offline, cli, from the bottom up). tests/, bench/ and tools/ sit above all and are not checked.
# Also: one third-party API per module (FAISS only in shard/index + the compat shim, LMDB only
# in the stores, libmicrohttpd only in gateway/). Exit 1 and print each violation.
set -euo pipefail
cd "$(dirname "$0")/.."
LAYERS=(proto common encoder shard coordinator jobs client gateway node eval offline cli)
declare -A RANK
for i in "${!LAYERS[@]}"; do RANK[${LAYERS[$i]}]=$i; done
bad=0
for dir in "${LAYERS[@]}"; do
  [ -d "$dir" ] || continue
  while IFS= read -r -d '' f; do
    while IFS=: read -r line inc; do
      top=${inc%%/*}
      [ -n "${RANK[$top]+x}" ] || continue
      if [ "${RANK[$top]}" -gt "${RANK[$dir]}" ]; then
        echo "$f:$line: $dir/ includes $inc from $top/, a layer above it"
        bad=1
      fi
    done < <(grep -n -o '#include "[a-z_]*/[A-Za-z0-9_./-]*"' "$f" | sed 's/#include "\(.*\)"/\1/')
  done < <(find "$dir" \( -name '*.c' -o -name '*.h' -o -name '*.cpp' \) -print0)
done
# One third-party API per module.
# PENDING: files known to break the rule, each with the work that removes it; they are
# reported, not failed, so that CI holds every other file to the rule now. Empty it as the
# work lands; a file listed here that no longer breaks the rule fails the check.
PENDING=()
pending_reason() { local p; for p in "${PENDING[@]}"; do [ "${p%%:*}" = "$1" ] && echo "${p#*: }"; done; return 0; }
check_api() { # HEADER_REGEX ALLOWED_PATH_REGEX WHAT
  local hits f why
  hits=$(grep -rlE "#include <($1)" --include='*.c' --include='*.h' --include='*.cpp' \
         "${LAYERS[@]}" 2>/dev/null | grep -vE "$2" || true)
  for f in $hits; do
    why=$(pending_reason "$f")
    if [ -n "$why" ]; then
      echo "pending: $3 included in $f (until it $why)"
    else
      echo "$3 included outside its module: $f"
      bad=1
    fi
  done
}
for p in "${PENDING[@]}"; do
  f=${p%%:*}
  if ! grep -qE '#include <(zmq\.h|faiss/|lmdb\.h|microhttpd\.h)' "$f" 2>/dev/null; then
    echo "$f is listed as pending but no longer breaks the rule: take it off PENDING"
    bad=1
  fi
done
check_api 'faiss/' '^shard/(index\.c|faiss_capi/)' 'FAISS'
check_api 'lmdb\.h' '^(shard/store\.c|jobs/[a-z_]*store\.c)$' 'LMDB'
check_api 'microhttpd\.h' '^gateway/' 'libmicrohttpd'
check_api 'zmq\.h' '^(common/|client/)' 'ZeroMQ'
check_api 'gnutls/' '^gateway/auth\.c$' 'GnuTLS'
if [ "$bad" -ne 0 ]; then echo "layer check: FAILED"; exit 1; fi
echo "layer check: ok (${LAYERS[*]})"
