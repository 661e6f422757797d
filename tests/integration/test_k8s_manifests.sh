#!/usr/bin/env bash
# deploy/k8s/*.yaml against the binaries and the gateway (tools/check_manifests.py): every
# command, flag, port, probe and volume must be one that exists. Then the check itself must
# fail on a manifest with a flag the binary lacks, a port nothing binds, a probe path the
# gateway does not serve and a mount of no volume, so that a broken checker cannot pass.
. "$(dirname "$0")/lib.sh"
SRC=${CIRRUS_SOURCE_DIR:?}
/usr/bin/python3 -c 'import yaml' 2>/dev/null || { echo "SKIP: Debian's python3-yaml is not installed"; exit 77; }
CHECK=(/usr/bin/python3 "$SRC/tools/check_manifests.py" "$BIN" "$SRC/gateway/openapi.json")
note "the manifests as committed"
"${CHECK[@]}" "$SRC"/deploy/k8s/*.yaml || fail "deploy/k8s has drifted from the binaries"

mutate() { # NAME SED_EXPR EXPECTED_MESSAGE
  sed "$2" "$SRC/deploy/k8s/cirrus.yaml" >"$WORK/$1.yaml"
  cmp -s "$WORK/$1.yaml" "$SRC/deploy/k8s/cirrus.yaml" && fail "mutation $1 changed nothing"
  out=$("${CHECK[@]}" "$WORK/$1.yaml" 2>&1) && fail "mutation $1 passed the check"
  grep -q "$3" <<<"$out" || fail "mutation $1: expected '$3', got: $out"
  echo "refused: $1"
}
note "broken manifests are refused"
mutate flag 's/"--create",/"--create", "--no-such-flag",/' "flag --no-such-flag is not in its --help"
mutate port 's/containerPort: 7710/containerPort: 7711/' "containerPort 7711 is not bound"
mutate probe 's|path: /readyz|path: /ready|' "httpGet path /ready is not a gateway route"
mutate mount 's/volumeMounts: \[{name: models,/volumeMounts: [{name: modelz,/' "volumeMount modelz names no volume"
mutate map 's|cirrus-shard-3.cirrus-shard:7701|cirrus-shard-4.cirrus-shard:7701|' "no such StatefulSet pod"
mutate binary 's/command: \["cirrus-encoder"\]/command: ["cirrus-encodr"]/' "no such binary"
echo "PASS"
