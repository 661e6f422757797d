# Thin wrapper over CMake. `make deps` installs Debian packages; `make` builds into build/;
# `make test` = deps + build + every test; `make demo` = the end-to-end demo.
BUILD ?= build
JOBS ?= 2
CMAKE_FLAGS ?=

.PHONY: all build deps test test-asan test-tsan demo clean bench-deps

all: build

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

deps:
	@bash tools/install-deps.sh

test: deps
	$(MAKE) build CMAKE_FLAGS="-DCIRRUS_WERROR=ON $(CMAKE_FLAGS)"
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: deps
	$(MAKE) build BUILD=build-asan CMAKE_FLAGS="-DCMAKE_BUILD_TYPE=Debug -DCIRRUS_SANITIZE=address"
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS)

test-tsan: deps
	$(MAKE) build BUILD=build-tsan CMAKE_FLAGS="-DCMAKE_BUILD_TYPE=Debug -DCIRRUS_SANITIZE=thread"
	cd build-tsan && ctest --output-on-failure -j $(JOBS)

demo: deps build
	@bash tools/demo.sh $(BUILD)

clean:
	rm -rf $(BUILD) build-asan build-tsan
