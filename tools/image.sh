#!/usr/bin/env bash
# image.sh [TAG] — builds deploy/Dockerfile with podman into TAG (default cirrus:latest),
# then runs it: `cirrus serve` in the container must answer an upsert and a search from the
# host. What this sandbox needs, set up here and nowhere else:
#   - podman's own config in build-image/containers.conf (CONTAINERS_CONF): runc as the
#     runtime (crun cannot set rlimits or cgroups here) and default_ulimits = [];
#   - a Debian 12 base image: none can be pulled (no registry is reachable), so when
#     `debian:12` is absent it is made with debootstrap (minbase, from the apt mirror this
#     machine uses) and `podman import`ed;
#   - host networking for the build (apt inside the build stage) and for the run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TAG=${1:-cirrus:latest}
WORK="$ROOT/build-image"
mkdir -p "$WORK"
cat >"$WORK/containers.conf" <<'CONF'
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
export CONTAINERS_CONF="$WORK/containers.conf"
P=(podman --runtime /usr/sbin/runc)

if ! "${P[@]}" image exists debian:12; then
  mirror=$(grep -rhoE 'https?://deb\.debian\.org/debian/?' /etc/apt/sources.list /etc/apt/sources.list.d 2>/dev/null | head -1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  echo "image: making the debian:12 base with debootstrap from $mirror"
  rm -rf "$WORK/rootfs"
  debootstrap --variant=minbase bookworm "$WORK/rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 ||
    { tail -20 "$WORK/debootstrap.log"; exit 1; }
  tar -C "$WORK/rootfs" -c . | "${P[@]}" import - debian:12
  rm -rf "$WORK/rootfs"
fi

echo "image: building $TAG"
"${P[@]}" build --network host -f "$ROOT/deploy/Dockerfile" -t "$TAG" "$ROOT"

echo "image: running cirrus serve in $TAG"
port=$(( 20000 + RANDOM % 10000 ))
name="cirrus-image-check-$$"
"${P[@]}" run -d --rm --network host --name "$name" "$TAG" serve --data /tmp/data --dim 4 \
  --index Flat --bind "tcp://127.0.0.1:$port" >/dev/null
trap '"${P[@]}" rm -f "$name" >/dev/null 2>&1 || true' EXIT
C=("${P[@]}" exec "$name" cirrus --endpoint "tcp://127.0.0.1:$port" --timeout 2000)
for _ in $(seq 1 100); do "${C[@]}" health >/dev/null 2>&1 && break; sleep 0.2; done
"${C[@]}" upsert --id sku-1 --vector 1,0,0,0 >/dev/null
out=$("${C[@]}" --json search --vector 1,0,0,0 -k 1)
grep -q '"sku-1"' <<<"$out" || { echo "image: the search did not find sku-1: $out"; exit 1; }
echo "image: $TAG serves (search answered: $out)"
