# Thin wrapper over CMake. `make deps` installs Debian packages; `make` builds into build/;
# `make test` = deps + build + every test; `make demo` = the end-to-end demo.
BUILD ?= build
JOBS ?= 2
CMAKE_FLAGS ?=

.PHONY: all build deps test test-asan test-tsan fuzz soak image demo clean bench-deps

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
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$(CURDIR)/tools/lsan.supp ctest --output-on-failure -j $(JOBS)

test-tsan: deps
	$(MAKE) build BUILD=build-tsan CMAKE_FLAGS="-DCMAKE_BUILD_TYPE=Debug -DCIRRUS_SANITIZE=thread"
	cd build-tsan && TSAN_OPTIONS="suppressions=$(CURDIR)/tools/tsan.supp halt_on_error=0" ctest --output-on-failure -j $(JOBS)

# libFuzzer: every decoder of untrusted bytes (tests/fuzz/), FUZZ_SECONDS each (CI: 30).
FUZZ_SECONDS ?= 600
fuzz: deps
	CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DCIRRUS_SANITIZE=fuzz $(CMAKE_FLAGS)
	cmake --build build-fuzz -j $(JOBS) --target fuzz_targets
	bash tools/fuzz.sh build-fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# An hour of mixed load on cirrus serve, resources judged and plotted (docs/soak.png).
SOAK_MINUTES ?= 60
soak: deps build
	SOAK_MINUTES=$(SOAK_MINUTES) bash tests/soak/run.sh $(BUILD)

# The container image (deploy/Dockerfile, podman + runc; a debootstrapped Debian 12 base),
# checked by running it.
image: deps
	bash tools/image.sh

demo: deps build
	@bash tools/demo.sh $(BUILD)

# PyTorch peer of `cirrus-bench encoder` and tools/convert_openai_pt.py (Debian 12 ships
# python3-torch 1.13, CPU; it installs for /usr/bin/python3). Optional: the bench runs without.
bench-deps:
	@if dpkg-query -W -f='$${Status}\n' python3-torch python3-numpy 2>/dev/null | \
	    grep -c "ok installed" | grep -qx 2; then echo "bench-deps: python3-torch and python3-numpy present"; \
	else S=$$([ "$$(id -u)" -eq 0 ] || echo sudo); $$S apt-get update -qq && \
	    $$S apt-get install -y --no-install-recommends python3-torch python3-numpy; fi

clean:
	rm -rf $(BUILD) build-asan build-tsan build-fuzz build-image
