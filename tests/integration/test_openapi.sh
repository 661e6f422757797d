#!/usr/bin/env bash
# /openapi.json: the built-in OpenAPI 3 document is valid (@apidevtools/swagger-parser, from
# the npm registry, installed by `make deps`), and every operation it documents, called with
# its examples on a real `cirrus serve --http`, answers a documented status with the
# documented required fields (tools/openapi_check.js).
. "$(dirname "$0")/lib.sh"
SRC=${CIRRUS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
[ -d "$SRC/tools/node_modules/@apidevtools/swagger-parser" ] ||
  fail "tools/node_modules lacks the OpenAPI validator: run make deps"

ep="tcp://127.0.0.1:$(free_port)"
hp=$(free_port)
start_bg "$WORK/serve.log" "$BIN/cirrus" serve --data "$WORK/data" --dim 4 --index Flat \
  --bind "$ep" --http ":$hp"
wait_ready "$ep"
node "$SRC/tools/openapi_check.js" "http://127.0.0.1:$hp" || fail "the API does not match its document"

note "a broken document is caught by the validator"
curl -s "http://127.0.0.1:$hp/openapi.json" | sed 's/"openapi": "3.0.3"/"openapi": "9"/' >"$WORK/bad.json"
node -e 'require(process.argv[1]).validate(process.argv[2]).then(() => process.exit(1), () => process.exit(0))' \
  "$SRC/tools/node_modules/@apidevtools/swagger-parser" "$WORK/bad.json" ||
  fail "the validator accepted an invalid document"
echo "1 passed, 0 failed"
