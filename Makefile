# The front door. `make` builds build/flow and the library, `make run` runs
# the example pipeline, `make test` runs every test (also under ASan+UBSan),
# `make bench` runs the benchmarks next to the peers, `make fuzz` runs each
# fuzz harness for FUZZ_TIME seconds (clang, in build-fuzz/).
BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_TIME  ?= 60
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all setup build run test test-fast test-asan bench clean check-src fuzz fuzz-setup

all: build

setup:
	@sh scripts/setup.sh

$(BUILD)/CMakeCache.txt: | setup
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)

build: setup $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

run: build
	$(BUILD)/flow run examples/pipeline/pipeline.yaml --input rows=12

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

$(ASAN_BUILD)/CMakeCache.txt: | setup
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DFLOW_SANITIZE=address,undefined $(CMAKE_FLAGS)

test-asan: setup $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS) -LE nosan

test: test-fast test-asan

fuzz-setup:
	@sh scripts/setup.sh fuzz

$(FUZZ_BUILD)/CMakeCache.txt: | fuzz-setup
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DFLOW_FUZZ=ON $(CMAKE_FLAGS)

fuzz: fuzz-setup $(FUZZ_BUILD)/CMakeCache.txt
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_all
	FUZZ_BUILD=$(FUZZ_BUILD) FUZZ_TIME=$(FUZZ_TIME) bash tests/fuzz/run.sh

bench: build
	bash bench/run.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
