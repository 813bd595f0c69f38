# The front door. `make` builds build/flow and the library, `make run` runs
# the example pipeline, `make test` runs every test (also under ASan+UBSan
# and under ThreadSanitizer; the instruction-count guard in build/ only),
# `make bench` runs the benchmarks next to the peers, `make budgets` rewrites
# bench/budgets from a fresh instruction count, `make fuzz` runs each fuzz
# harness for FUZZ_TIME seconds (clang, in build-fuzz/). `make install
# PREFIX=DIR` (DESTDIR=STAGE too) installs the program, the libraries, the
# header, the man page, the completions, libflow.pc and the CMake package;
# `make uninstall` removes what the last install put there.
BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
FUZZ_BUILD ?= build-fuzz
FUZZ_TIME  ?= 60
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=
PREFIX     ?= /usr/local

.PHONY: all setup build run test test-fast test-asan test-tsan bench budgets clean check-src fuzz fuzz-setup \
        install uninstall

all: build

setup:
	@sh scripts/setup.sh

$(BUILD)/CMakeCache.txt: | setup
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)

build: setup $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# cmake --install honours DESTDIR from the environment, so a staged install
# (packaging) is `make install PREFIX=/usr DESTDIR=/tmp/stage`.
install: build
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix "$(PREFIX)"

# What the last install wrote, listed by cmake in install_manifest.txt.
uninstall:
	@if [ ! -f $(BUILD)/install_manifest.txt ]; then \
	    echo "uninstall: nothing installed from $(BUILD) (no install_manifest.txt)"; exit 1; fi
	@while IFS= read -r f || [ -n "$$f" ]; do \
	    if [ -e "$$f" ] || [ -L "$$f" ]; then rm -f -- "$$f" && echo "removed $$f"; fi; \
	done < $(BUILD)/install_manifest.txt

run: build
	$(BUILD)/flow run examples/pipeline/pipeline.yaml --input rows=12

# After ctest, the performance guard's verdicts (bench/guard.sh): ctest shows
# no output of a test that passes, and a note to lower a budget is one.
test-fast: build
	@rm -f $(BUILD)/perf-guard.txt
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS); rc=$$?; \
	if [ -f perf-guard.txt ]; then cat perf-guard.txt; fi; exit $$rc

$(ASAN_BUILD)/CMakeCache.txt: | setup
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DFLOW_SANITIZE=address,undefined $(CMAKE_FLAGS)

test-asan: setup $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS) -LE nosan

$(TSAN_BUILD)/CMakeCache.txt: | setup
	cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DFLOW_SANITIZE=thread $(CMAKE_FLAGS)

# Every process the tests start (runners, `flow ctl`, examples) writes its
# reports to $(TSAN_BUILD)/tsan-reports: one from a process whose exit
# status no test checks fails the target too.
test-tsan: setup $(TSAN_BUILD)/CMakeCache.txt
	cmake --build $(TSAN_BUILD) -j $(JOBS)
	@rm -rf $(TSAN_BUILD)/tsan-reports && mkdir -p $(TSAN_BUILD)/tsan-reports
	@cd $(TSAN_BUILD) && \
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 log_path=$$PWD/tsan-reports/report $$TSAN_OPTIONS" \
	ctest --output-on-failure -j $(JOBS) -LE 'nosan|notsan'; rc=$$?; \
	for f in tsan-reports/report.*; do [ -e "$$f" ] || continue; cat "$$f"; rc=1; done; \
	[ $$rc = 0 ] || echo "test-tsan: failed (reports, if any, above; also in $(TSAN_BUILD)/tsan-reports)"; \
	exit $$rc

test: test-fast test-asan test-tsan

fuzz-setup:
	@sh scripts/setup.sh fuzz

$(FUZZ_BUILD)/CMakeCache.txt: | fuzz-setup
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DFLOW_FUZZ=ON $(CMAKE_FLAGS)

fuzz: fuzz-setup $(FUZZ_BUILD)/CMakeCache.txt
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_all
	FUZZ_BUILD=$(FUZZ_BUILD) FUZZ_TIME=$(FUZZ_TIME) bash tests/fuzz/run.sh

bench: build
	bash bench/run.sh

# Instructions per task for the guard of `make test` (bench/guard.sh), measured
# again and written to bench/budgets: commit it, saying why when one went up.
budgets: build
	BUILD=$(BUILD) bash bench/guard.sh --update

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD)
