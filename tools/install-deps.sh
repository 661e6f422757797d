#!/usr/bin/env bash
# Installs the Debian 12 packages cirrus needs to build and test. Idempotent: packages that
# are already installed are skipped, and apt-get runs only when something is missing.
set -euo pipefail

# --build: only what compiling the binaries needs (deploy/Dockerfile's build stage).
BUILD_PACKAGES=(
  build-essential cmake pkg-config git
  libfaiss-dev libopenblas-dev liblapack-dev
  libzmq3-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
  liblmdb-dev lmdb-utils
  libjansson-dev zlib1g-dev libutf8proc-dev libstb-dev libwebp-dev
  libmicrohttpd-dev libgnutls28-dev libhdf5-dev curl python3
)
# The tests besides: the browser, libFuzzer, Debian's Python packages the tests and the
# worker use, containers (make image, make test-deploy).
TEST_PACKAGES=(
  chromium openssl
  clang libclang-rt-14-dev libomp-dev
  python3-pil python3-yaml python3-zmq python3-protobuf python3-h5py
  podman runc debootstrap gnuplot-nox
)
if [ "${1:-}" = "--build" ]; then
  PACKAGES=("${BUILD_PACKAGES[@]}")
  NO_NPM=1
else
  PACKAGES=("${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}")
fi
# node and npm (the tests' OpenAPI validator): Debian's nodejs and npm unless a node with npm
# is already installed (a NodeSource nodejs ships its own npm, which Debian's npm conflicts
# with).
[ "${1:-}" = "--build" ] || command -v npm >/dev/null 2>&1 || PACKAGES+=(nodejs npm)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# The npm packages the tests use (tools/package.json: the OpenAPI validator), into
# tools/node_modules, pinned by tools/package-lock.json.
npm_deps() {
  [ -z "${NO_NPM:-}" ] || return 0
  local dir
  dir="$(cd "$(dirname "$0")" && pwd)"
  if [ -d "$dir/node_modules/@apidevtools/swagger-parser" ] &&
     [ -d "$dir/node_modules/playwright-core" ] &&
     [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
    echo "deps: npm packages present"
    return 0
  fi
  echo "deps: npm ci in tools/"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
}

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#PACKAGES[@]} packages present"
  npm_deps
  exit 0
fi

echo "deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps: run as root or install sudo" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
npm_deps
