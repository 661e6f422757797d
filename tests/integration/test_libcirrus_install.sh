#!/usr/bin/env bash
# The installed libcirrus, as a program outside the tree sees it: `cmake --install` into a
# temporary prefix, then tests/example/search.c (which includes only <cirrus/cirrus.h>) is
# compiled with `pkg-config --cflags --libs cirrus` and, separately, through a tiny CMake
# project with find_package(cirrus) + cirrus::cirrus (and cirrus::cirrus_static). Each binary
# runs a vector, item, text and composed search against a real `cirrus serve` process, and
# `ldd` must show none of FAISS, LMDB, BLAS/LAPACK, OpenMP, libmicrohttpd or jansson.
. "$(dirname "$0")/lib.sh"
SRC=${CIRRUS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=$(cd "$BIN/.." && pwd)
FIX=${CIRRUS_SHARED_DIR:-}/fixtures/clip-tiny
[ -f "$FIX/clip-openai-names.safetensors" ] || { echo "SKIP: $FIX not found"; exit 77; }
command -v pkg-config >/dev/null || { echo "SKIP: pkg-config not installed"; exit 77; }
CC=${CC:-cc}
PREFIX=$WORK/prefix
FORBIDDEN='faiss|lmdb|blas|lapack|gomp|microhttpd|jansson'

note "cmake --install into $PREFIX"
cmake --install "$BUILD" --prefix "$PREFIX" >"$WORK/install.log" 2>&1 ||
  fail "cmake --install: $(tail -5 "$WORK/install.log")"
[ -f "$PREFIX/include/cirrus/cirrus.h" ] && [ -f "$PREFIX/include/cirrus/cirrus.pb-c.h" ] ||
  fail "headers not installed as include/cirrus/{cirrus.h,cirrus.pb-c.h}"
pc=$(find "$PREFIX" -name cirrus.pc | head -1)
[ -n "$pc" ] || fail "no cirrus.pc installed"
export PKG_CONFIG_PATH=$(dirname "$pc")
grep -q jansson "$pc" && fail "cirrus.pc still mentions jansson: $(cat "$pc")"
libdir=$(cd "$(pkg-config --variable=libdir cirrus)" && pwd -P)
[ -e "$libdir/libcirrus.so" ] && [ -e "$libdir/libcirrus.a" ] || fail "no libcirrus.so/.a in $libdir"
soname=$(readelf -d "$libdir/libcirrus.so" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
[ "$soname" = "libcirrus.so.0" ] || fail "libcirrus.so has SONAME '$soname'"
# Only the public API and the protobuf code are exported (common/'s cr_* stay inside).
# (Outputs go through variables: with pipefail, `cmd | grep -q` fails when grep exits early.)
others=$(nm -D --defined-only "$libdir/libcirrus.so" | awk '$2 ~ /^[TDBRW]$/ && $3 !~ /^cirrus_/')
[ -z "$others" ] || fail "libcirrus.so exports non-cirrus_ symbols: $others"
needed=$(readelf -d "$libdir/libcirrus.so" | grep NEEDED)
echo "$needed" | grep -Eiq "$FORBIDDEN" && fail "libcirrus.so needs: $needed"

note "compile tests/example/search.c with pkg-config --cflags --libs cirrus"
# shellcheck disable=SC2046
"$CC" -std=c17 -Wall -Wextra -Wpedantic -Werror -o "$WORK/search" "$SRC/tests/example/search.c" \
  $(pkg-config --cflags --libs cirrus) -Wl,-rpath,"$libdir" || fail "the example does not compile"
deps=$(ldd "$WORK/search")
echo "$deps" | grep -q "$libdir/libcirrus.so.0" || fail "not linked to the installed libcirrus: $deps"
echo "$deps" | grep -Eiq "$FORBIDDEN" && fail "the example pulls in: $(echo "$deps" | grep -Ei "$FORBIDDEN")"
echo "  ldd: $(echo "$deps" | awk '{print $1}' | tr '\n' ' ')"

note "build it through find_package(cirrus) and cirrus::cirrus / cirrus::cirrus_static"
mkdir -p "$WORK/cm"
cat >"$WORK/cm/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.18)
project(cirrus_example C)
find_package(cirrus 0.1 REQUIRED)
add_executable(search_shared "$SRC/tests/example/search.c")
target_link_libraries(search_shared PRIVATE cirrus::cirrus)
add_executable(search_static "$SRC/tests/example/search.c")
target_link_libraries(search_static PRIVATE cirrus::cirrus_static)
EOF
(cmake -S "$WORK/cm" -B "$WORK/cm/build" -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_C_FLAGS="-Werror" &&
  cmake --build "$WORK/cm/build") >"$WORK/cm.log" 2>&1 || fail "find_package(cirrus): $(tail -20 "$WORK/cm.log")"
for exe in search_shared search_static; do
  deps=$(ldd "$WORK/cm/build/$exe")
  echo "$deps" | grep -Eiq "$FORBIDDEN" && fail "$exe pulls in: $(echo "$deps" | grep -Ei "$FORBIDDEN")"
  case $exe in
  search_shared) echo "$deps" | grep -q "$libdir/libcirrus.so.0" || fail "$exe: not on libcirrus.so.0: $deps" ;;
  search_static) echo "$deps" | grep -q libcirrus && fail "$exe links libcirrus.so: $deps" ;;
  esac
done

note "run them against cirrus serve (CLIP fixture model, 2 shards)"
port=$(free_port)
ep=tcp://127.0.0.1:$port
start_bg "$WORK/serve.log" "$BIN/cirrus" serve --data "$WORK/data" --shards 2 --index Flat \
  --model "$FIX/clip-openai-names.safetensors" --phi "$FIX/phi.safetensors" \
  --combiner "$FIX/combiner.safetensors" --bind "$ep"
SERVE=$LAST_PID
wait_ready "$ep"
for exe in "$WORK/search" "$WORK/cm/build/search_shared" "$WORK/cm/build/search_static"; do
  out=$("$exe" "$ep" 2>&1) || fail "$(basename "$exe"): $out"
  echo "$out" | sed 's/^/  /'
  for what in vector item text composed; do
    echo "$out" | grep -q "^$what: sku-" || fail "$(basename "$exe"): no $what search results"
  done
  [ "$(echo "$out" | tail -1)" = ok ] || fail "$(basename "$exe"): $out"
done

kill -TERM "$SERVE"
wait "$SERVE" || fail "cirrus serve did not stop cleanly: $(tail -5 "$WORK/serve.log")"
echo "1 passed, 0 failed"
