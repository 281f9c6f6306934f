# Wrapper over CMake for the common commands. BUILD picks the build folder; CMAKE_ARGS passes
# options (e.g. CMAKE_ARGS=-DMLXN_CUDA=OFF).
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=
PREFIX ?= /usr/local

.PHONY: all build test test-asan fuzz run bench install clean

all: build

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# The tests: every op on every device present (GPU cases are reported as skipped without a GPU),
# JOBS at a time (test_ops is split in two: tests/CMakeLists.txt).
test: build
	cd $(BUILD) && ctest --output-on-failure --verbose -j $(JOBS)

# The same tests under AddressSanitizer and UndefinedBehaviorSanitizer (CPU backend only: the
# CUDA runtime does not run under ASan; the model tests on their first prompt only), JOBS at a
# time.
test-asan:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DMLXN_SANITIZE=ON -DMLXN_CUDA=OFF
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 MLXN_TEST_MODEL_PROMPTS=1 \
	  ctest --output-on-failure --verbose -j $(JOBS)

# libFuzzer targets (clang): make fuzz FUZZ_SECONDS=600 runs each for that long, then replaces
# tests/fuzz/corpus/<target> by a minimized merge of the old corpus and the new inputs.
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= gguf safetensors
fuzz:
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DMLXN_FUZZ=ON -DMLXN_CUDA=OFF -DMLXN_BUILD_TOOLS=OFF
	cmake --build $(FUZZ_BUILD) -j $(JOBS)
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus-$$t && \
	  ./$(FUZZ_BUILD)/tests/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    $(FUZZ_BUILD)/corpus-$$t tests/fuzz/corpus/$$t && \
	  rm -rf $(FUZZ_BUILD)/min-$$t && mkdir $(FUZZ_BUILD)/min-$$t && \
	  ./$(FUZZ_BUILD)/tests/fuzz_$$t -merge=1 $(FUZZ_BUILD)/min-$$t tests/fuzz/corpus/$$t $(FUZZ_BUILD)/corpus-$$t && \
	  rm -rf tests/fuzz/corpus/$$t && mv $(FUZZ_BUILD)/min-$$t tests/fuzz/corpus/$$t || exit 1; \
	done

# The main job: fetch the default model (cached, checksummed), build, and generate text on the
# best device present (the first GPU, else the CPU).
MODEL ?= gemma3-270m
PROMPT ?= The history of the printing press
TOKENS ?= 64
run: build
	python3 scripts/fetch_models.py $(MODEL)
	./$(BUILD)/mlxn run -m "$$(python3 scripts/fetch_models.py --print-path $(MODEL))" -p "$(PROMPT)" -n $(TOKENS)

# The op benchmarks on the best device present, against the same-run copy ceiling.
bench: build
	./$(BUILD)/mlxn bench

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
