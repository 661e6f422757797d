#!/usr/bin/env bash
# HTTP API keys with roles and TLS (docs/security.md, gateway/auth.c) through `cirrus serve
# --http --http-keys --http-tls-cert --http-tls-key` with a certificate made here by openssl:
# each role (read, write, admin) can do exactly its operations and gets 403 on the others;
# no key and an unknown key get 401 with a JSON error; public routes stay open; SIGHUP
# reloads the keys file (a new key works, a removed one stops working, a broken file keeps
# the old keys); plain HTTP to the TLS port gets no answer; an HTTP API open to other hosts
# without keys logs a warning.
. "$(dirname "$0")/lib.sh"
command -v openssl >/dev/null || { echo "SKIP: openssl not installed (make deps)"; exit 77; }
command -v curl >/dev/null || { echo "SKIP: curl not installed (make deps)"; exit 77; }

K="$WORK/keys"
READ=$("$BIN/cirrus" keygen --http read --name reader --append "$K")
WRITE=$("$BIN/cirrus" keygen --http write --name writer --append "$K")
ADMIN=$("$BIN/cirrus" keygen --http admin --name admin --append "$K")
RW=$("$BIN/cirrus" keygen --http read,write --name both --append "$K")
[ "$(stat -c %a "$K")" = 600 ] || fail "the keys file is not mode 0600"
grep -q "$READ" "$K" && fail "the keys file holds a token, not its hash"
grep -q "^read $(printf %s "$READ" | sha256sum | cut -d' ' -f1) reader$" "$K" ||
  fail "the keys file line is not 'read sha256(token) reader': $(head -1 "$K")"

note "a test certificate for 127.0.0.1 (openssl, now)"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" \
  -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null || fail "openssl req failed"

ep="tcp://127.0.0.1:$(free_port)"
hp=$(free_port)
start_bg "$WORK/serve.log" "$BIN/cirrus" serve --data "$WORK/data" --dim 4 --index Flat \
  --bind "$ep" --http ":$hp" --http-keys "$K" --http-tls-cert "$WORK/tls.crt" \
  --http-tls-key "$WORK/tls.key"
SERVE_PID=$LAST_PID
wait_ready "$ep"
H="https://127.0.0.1:$hp"
CURL=(curl -s -m 5 --cacert "$WORK/tls.crt")
code() { "${CURL[@]}" -o "$WORK/body" -w '%{http_code}' "$@"; }
for _ in $(seq 1 100); do [ "$(code "$H/healthz")" = 200 ] && break; sleep 0.1; done

note "TLS: the certificate verifies; plain HTTP on the same port gets no HTTP answer"
[ "$(code "$H/healthz")" = 200 ] || fail "HTTPS /healthz: $(cat "$WORK/body")"
c=$(curl -s -m 3 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$hp/healthz" || true)
[ "$c" = 000 ] || fail "plain HTTP to the TLS port answered $c"
curl -s -m 3 "$H/healthz" >/dev/null 2>&1 && fail "a client without the CA accepted the certificate"
grep -q "HTTPS API on" "$WORK/serve.log" || fail "the log does not say HTTPS"

# op METHOD PATH [BODY]: the operations, with the role each needs.
OPS_READ=("POST /v1/search {\"vector\":[1,0,0,0],\"k\":1}" "GET /v1/items/sku-1" "GET /v1/schema"
          "GET /v1/stats" "GET /v1/jobs/j1" "GET /metrics")
OPS_WRITE=("POST /v1/items {\"items\":[{\"id\":\"sku-9\",\"vector\":[0,0,0,1]}]}"
           "DELETE /v1/items/sku-9" "POST /v1/generate {}" "DELETE /v1/jobs/j1")
OPS_ADMIN=("POST /v1/snapshot {}" "POST /v1/backup {}" "POST /v1/rebalance {}" "POST /v1/reload {}")
call() { # TOKEN|- "METHOD PATH [BODY]" -> status
  local tok=$1 m p b
  read -r m p b <<<"$2"
  local args=(-X "$m" "$H$p")
  [ -n "$b" ] && args+=(-d "$b")
  [ "$tok" != - ] && args+=(-H "Authorization: Bearer $tok")
  code "${args[@]}"
}
expect_ops() { # TOKEN NAME ALLOWED(read|write|admin|...) OPS...: allowed: not 401/403; else 403
  local tok=$1 name=$2 allowed=$3 kind op s
  shift 3
  for kind in read write admin; do
    local -n ops="OPS_${kind^^}"
    for op in "${ops[@]}"; do
      s=$(call "$tok" "$op")
      if [[ ",$allowed," == *",$kind,"* ]]; then
        [ "$s" != 401 ] && [ "$s" != 403 ] || fail "$name key refused ($s) on $kind op $op: $(cat "$WORK/body")"
      else
        [ "$s" = 403 ] || fail "$name key got $s, not 403, on $kind op $op: $(cat "$WORK/body")"
        grep -q '"error":{"code":"forbidden"' "$WORK/body" || fail "403 body: $(cat "$WORK/body")"
      fi
    done
  done
  echo "  $name: exactly its operations"
}

note "the write key upserts; the read key finds it"
[ "$(call "$WRITE" 'POST /v1/items {"items":[{"id":"sku-1","vector":[1,0,0,0]}]}')" = 200 ] ||
  fail "upsert with the write key: $(cat "$WORK/body")"
[ "$(call "$READ" 'POST /v1/search {"vector":[1,0,0,0],"k":1}')" = 200 ] ||
  fail "search with the read key: $(cat "$WORK/body")"
grep -q '"sku-1"' "$WORK/body" || fail "search answer: $(cat "$WORK/body")"

note "each role can do exactly its operations"
expect_ops "$READ" read read
expect_ops "$WRITE" write write
expect_ops "$ADMIN" admin admin
expect_ops "$RW" read,write read,write

note "no key, an unknown key, a malformed header: 401 with a JSON error; public routes open"
for op in "${OPS_READ[@]}" "${OPS_WRITE[@]}" "${OPS_ADMIN[@]}"; do
  [ "$(call - "$op")" = 401 ] || fail "no key: $op answered $(cat "$WORK/body")"
  [ "$(call crs_0000000000000000000000000000000000000000000000000000000000000000 "$op")" = 401 ] ||
    fail "an unknown key: $op"
done
grep -q '"error":{"code":"unauthorized","message":"unknown API key"}' "$WORK/body" ||
  fail "401 body: $(cat "$WORK/body")"
[ "$(code -H "Authorization: Basic $READ" "$H/v1/stats")" = 401 ] || fail "Basic accepted"
[ "$(code -H "Authorization: Bearer ${READ}x" "$H/v1/stats")" = 401 ] || fail "a longer token accepted"
[ "$(code -H "Authorization: bearer $READ" "$H/v1/stats")" = 200 ] || fail "scheme case"
"${CURL[@]}" -D - -o /dev/null "$H/v1/stats" | grep -qi '^WWW-Authenticate: Bearer' ||
  fail "401 without WWW-Authenticate"
for p in /healthz /readyz /openapi.json /; do
  [ "$(code "$H$p")" = 200 ] || fail "public $p needs a key: $(head -c 200 "$WORK/body")"
done

note "SIGHUP reloads the keys: a new key works, a removed one stops, a broken file is refused"
NEW=$("$BIN/cirrus" keygen --http read --name late --append "$K")
grep -v " reader$" "$K" >"$WORK/k2" && cat "$WORK/k2" >"$K"
kill -HUP "$SERVE_PID"
for _ in $(seq 1 50); do [ "$(code -H "Authorization: Bearer $NEW" "$H/v1/stats")" = 200 ] && break; sleep 0.1; done
[ "$(code -H "Authorization: Bearer $NEW" "$H/v1/stats")" = 200 ] || fail "the new key after SIGHUP"
[ "$(code -H "Authorization: Bearer $READ" "$H/v1/stats")" = 401 ] || fail "a removed key still works"
cp "$K" "$WORK/k.good"
echo "reed 1234 broken" >>"$K"
kill -HUP "$SERVE_PID"
for _ in $(seq 1 50); do grep -q "keys not reloaded" "$WORK/serve.log" && break; sleep 0.1; done
grep -q "keys not reloaded.*unknown role 'reed'" "$WORK/serve.log" ||
  fail "a broken keys file was not refused: $(tail -3 "$WORK/serve.log")"
[ "$(code -H "Authorization: Bearer $NEW" "$H/v1/stats")" = 200 ] || fail "the old keys did not stay"

note "a bad keys file or half a TLS pair stops the start"
expect_error "unknown role" "$BIN/cirrus" serve --data "$WORK/d2" --dim 4 --bind \
  "tcp://127.0.0.1:$(free_port)" --http ":$(free_port)" --http-keys "$K"
expect_error "go together" "$BIN/cirrus" serve --data "$WORK/d3" --dim 4 --bind \
  "tcp://127.0.0.1:$(free_port)" --http ":$(free_port)" --http-tls-cert "$WORK/tls.crt"

note "an HTTP API open to other hosts without keys says so"
op=$(free_port)
start_bg "$WORK/open.log" "$BIN/cirrus" serve --data "$WORK/d4" --dim 4 --index Flat \
  --bind "tcp://127.0.0.1:$(free_port)" --http "0.0.0.0:$op"
for _ in $(seq 1 100); do grep -q "HTTP API on" "$WORK/open.log" && break; sleep 0.1; done
grep -q "reachable from other hosts, without API keys" "$WORK/open.log" ||
  fail "no warning: $(cat "$WORK/open.log")"
grep -q "reachable from other hosts" "$WORK/serve.log" && fail "the loopback server warned"
echo "PASS"
