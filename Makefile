# SPDX-License-Identifier: BSL-1.0
# backoff — the two commands a newcomer needs:
#   make demo   install what is missing, build, run the demo
#   make test   install what is missing, build, run every test (also under ASan+UBSan)
# and `make bench` for the benchmarks (JSON in build/bench.json), `make bench-get` for
# backoff get against curl, `make fuzz` for the fuzz targets.

BUILD      ?= build
BUILD_TYPE ?= RelWithDebInfo
WERROR     ?= ON
CMAKE_ARGS ?=
JOBS       ?= $(shell nproc)

# ccache: paths below this clone are hashed relative to it, so that a second
# clone (CI's, a colleague's) reuses the first one's cache.
export CCACHE_BASEDIR := $(CURDIR)
export CCACHE_NOHASHDIR := true

CONFIGURE = cmake -G Ninja -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DBACKOFF_WERROR=$(WERROR) $(CMAKE_ARGS)

.PHONY: all deps build demo test test-main test-asan test-tsan bench bench-get bench-segmented bench-matrix bench-redis-exit bench-many bench-quota bench-hedge bench-concurrent bench-fleet bench-run package fuzz mutate mutate-generated coverage clean

all: build

deps:
	@bash tools/install-deps.sh

$(BUILD)/build.ninja:
	$(CONFIGURE) -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

# Only what the demo runs: the two executables, not the tests and benchmarks.
demo: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS) --target backoff_cli backoff_http_cli
	$(BUILD)/bin/backoff demo

test-main: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The sanitizer build lives in build/asan and runs the unit tests only.
$(BUILD)/asan/build.ninja:
	$(CONFIGURE) -S . -B $(BUILD)/asan -DCMAKE_BUILD_TYPE=Debug -DBACKOFF_SANITIZE=address,undefined \
	  -DBACKOFF_BUILD_BENCH=OFF -DBACKOFF_BUILD_EXAMPLES=OFF -DBACKOFF_INSTALL=OFF

test-asan: deps $(BUILD)/asan/build.ninja
	cmake --build $(BUILD)/asan -j $(JOBS)
	cd $(BUILD)/asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j $(JOBS) -LE consumer

# ThreadSanitizer: the core test executable, shared gates above all.
$(BUILD)/tsan/build.ninja:
	$(CONFIGURE) -S . -B $(BUILD)/tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBACKOFF_SANITIZE=thread \
	  -DBACKOFF_BUILD_BENCH=OFF -DBACKOFF_BUILD_EXAMPLES=OFF -DBACKOFF_BUILD_TOOLS=OFF -DBACKOFF_INSTALL=OFF

test-tsan: deps $(BUILD)/tsan/build.ninja
	cmake --build $(BUILD)/tsan -j $(JOBS) --target backoff_tests
	TSAN_OPTIONS=halt_on_error=1 setarch $$(uname -m) -R $(BUILD)/tsan/bin/backoff_tests --gtest_brief=1

test: test-tsan test-asan test-main

# Line and branch coverage of every test (gcc --coverage, gcovr from Debian):
# build/coverage/html/index.html, build/coverage/summary.txt (per file) and
# build/coverage/directories.txt (per directory).
$(BUILD)/coverage/build.ninja:
	$(CONFIGURE) -S . -B $(BUILD)/coverage -DCMAKE_BUILD_TYPE=Debug \
	  "-DCMAKE_CXX_FLAGS=--coverage -fprofile-update=atomic" -DCMAKE_EXE_LINKER_FLAGS=--coverage -DBACKOFF_BUILD_BENCH=OFF -DBACKOFF_BUILD_EXAMPLES=OFF -DBACKOFF_INSTALL=OFF

coverage: deps $(BUILD)/coverage/build.ninja
	cmake --build $(BUILD)/coverage -j $(JOBS)
	# Objects of sources a target no longer has leave their .gcno behind, and
	# gcovr would merge two versions of one file: drop them.
	ninja -C $(BUILD)/coverage -t cleandead > /dev/null
	find $(BUILD)/coverage -name '*.gcno' | while read -r g; do [ -e "$${g%.gcno}.o" ] || rm -f "$$g"; done
	find $(BUILD)/coverage -name '*.gcda' -delete
	-cd $(BUILD)/coverage && ctest -j $(JOBS) -LE "consumer|package" > ctest.log 2>&1; tail -3 ctest.log
	mkdir -p $(BUILD)/coverage/html
	gcovr -r . --object-directory $(BUILD)/coverage --filter include/ --filter src/ --filter tools/backoff/ \
	  --exclude-unreachable-branches --exclude-throw-branches --gcov-ignore-parse-errors \
	  --html-details $(BUILD)/coverage/html/index.html --txt $(BUILD)/coverage/summary.txt \
	  --json-summary $(BUILD)/coverage/summary.json --print-summary
	python3 tools/coverage_dirs.py $(BUILD)/coverage/summary.json | tee $(BUILD)/coverage/directories.txt

bench: build
	$(BUILD)/bin/backoff_bench --benchmark_out=$(BUILD)/bench.json --benchmark_out_format=json \
	  --benchmark_repetitions=3 --benchmark_report_aggregates_only=true

# backoff get against curl -o on a 1 GiB file from nginx on loopback (SIZE_MB, ROUNDS).
bench-get: build
	bash bench/get_vs_curl.sh $(BUILD)/bin/backoff

# One file from nginx capped per connection: backoff get against aria2c -x 8 and
# curl; and a file replaced mid-download (what each saves).
bench-segmented: build
	bash bench/segmented.sh $(BUILD)/bin/backoff

# The same file through cut connections, limit_conn, no ranges, chunked and 429s: backoff, aria2, curl.
bench-matrix: build
	bash bench/matrix.sh $(BUILD)/bin/backoff

# How long get --share takes to exit with Redis healthy, refusing, slow (200 ms) and hung.
bench-redis-exit: build
	bash bench/redis_exit.sh $(BUILD)/bin/backoff

# backoff get -P 16 for 500 files of 1 MiB through faults, against xargs + curl --retry.
bench-many: build
	$(BUILD)/bin/backoff_many_bench $(BUILD)/bin/backoff 500 1048576 2

# 9000 downloads at once from one process: async_client against a bare curl multi loop.
bench-quota: build
	$(BUILD)/bin/backoff_quota_bench $(BUILD)/bin/backoff 120 40 2000

# 100 GETs one after another, 1 in 20 held for 2 s: get plain, --hedge-after auto and 50ms; a POST sent once.
bench-hedge: build
	$(BUILD)/bin/backoff_hedge_bench $(BUILD)/bin/backoff 100 20 2000

bench-concurrent: build
	$(BUILD)/bin/backoff_concurrent_bench 9000 65536 16k 2

# backoff::redis: Redis commands per second, propagation between processes, Redis down.
bench-fleet: build
	$(BUILD)/bin/backoff_fleet_bench

# backoff run -- true against a shell retry loop: start-up cost.
bench-run: build
	bash bench/run_startup.sh $(BUILD)/bin/backoff

# A Debian package (CPack): the CLI, headers, libraries, CMake and pkg-config
# files, man page and bash completion. Written to $(BUILD)/package/.
package: build
	cd $(BUILD) && cpack -G DEB

# Mutation testing (tests/mutants.txt): not part of `make test`, too slow for CI.
mutate: deps
	bash tools/mutate.sh

# Mutants made from the source (tools/mutation/generate.py): a seeded sample of
# operator swaps, constant nudges, deleted calls and emptied returns, built
# into one scratch build behind run-time switches (tools/mutation/schema.py);
# each runs only the tests that reach it. The table names each survivor's
# file:line. SAMPLE=0 takes all of them.
SAMPLE ?= 200
SEED   ?= 1
mutate-generated: deps
	python3 tools/mutation/schema.py --sample $(SAMPLE) --seed $(SEED)

# libFuzzer (clang): every parser of server input and of flag values, each for
# FUZZ_SECONDS from the seeds in fuzz/corpus/. New findings go to build/fuzz/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS  = fuzz_retry_after fuzz_content_range fuzz_digest fuzz_ratelimit fuzz_cli_values
$(BUILD)/fuzz/build.ninja:
	cmake -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -S . -B $(BUILD)/fuzz \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBACKOFF_BUILD_FUZZ=ON -DBACKOFF_BUILD_TESTS=OFF -DBACKOFF_BUILD_BENCH=OFF \
	  -DBACKOFF_BUILD_EXAMPLES=OFF -DBACKOFF_BUILD_TOOLS=OFF -DBACKOFF_INSTALL=OFF

fuzz: deps $(BUILD)/fuzz/build.ninja
	cmake --build $(BUILD)/fuzz -j $(JOBS) --target $(FUZZ_TARGETS)
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(BUILD)/fuzz/corpus/$$t; \
	  $(BUILD)/fuzz/bin/$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=$(BUILD)/fuzz/$$t- \
	    $(BUILD)/fuzz/corpus/$$t fuzz/corpus/$$t > $(BUILD)/fuzz/$$t.log 2>&1 || { tail -40 $(BUILD)/fuzz/$$t.log; exit 1; }; \
	  echo "$$t: $$(grep -o 'number_of_executed_units: *[0-9]*' $(BUILD)/fuzz/$$t.log | grep -o '[0-9]*$$') runs in $(FUZZ_SECONDS) s"; \
	done

clean:
	rm -rf $(BUILD)
