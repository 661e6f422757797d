# Every third-party library cirrus uses, found once here. `make deps` installs the Debian
# packages that provide them.
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
find_package(OpenMP REQUIRED COMPONENTS C CXX)

pkg_check_modules(ZMQ REQUIRED IMPORTED_TARGET libzmq)
pkg_check_modules(PROTOBUFC REQUIRED IMPORTED_TARGET libprotobuf-c)
pkg_check_modules(LMDB REQUIRED IMPORTED_TARGET lmdb)
pkg_check_modules(HDF5 REQUIRED IMPORTED_TARGET hdf5) # ann-benchmarks files: offline/vecfile.c only
pkg_check_modules(OPENBLAS REQUIRED IMPORTED_TARGET openblas)
pkg_check_modules(JANSSON REQUIRED IMPORTED_TARGET jansson)
pkg_check_modules(UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)
pkg_check_modules(WEBP REQUIRED IMPORTED_TARGET libwebp)
pkg_check_modules(STB REQUIRED IMPORTED_TARGET stb)
pkg_check_modules(ZLIB REQUIRED IMPORTED_TARGET zlib)
pkg_check_modules(MHD REQUIRED IMPORTED_TARGET libmicrohttpd)
# SHA-256 of the HTTP API keys (gateway/auth.c); libmicrohttpd's TLS is GnuTLS already.
pkg_check_modules(GNUTLS REQUIRED IMPORTED_TARGET gnutls)

find_program(PROTOC_C NAMES protoc-c REQUIRED)
find_library(MATH_LIB m REQUIRED)

# FAISS: a system libfaiss_c if there is one, else our compat C API over libfaiss.a
# (shard/faiss_capi/). See DESIGN §3.
find_library(FAISS_C_LIB NAMES faiss_c)
find_library(FAISS_LIB NAMES faiss REQUIRED)
find_path(FAISS_INCLUDE_DIR faiss/c_api/Index_c.h REQUIRED)
find_library(LAPACK_LIB NAMES lapack openblas REQUIRED)
