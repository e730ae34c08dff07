# g4 quick start:
#   make run [PROMPT="Why is the sky blue?"]   install, build, fetch the default model, run it
#   make test                                  build everything and run the whole test suite
SHELL := /bin/bash
PROMPT ?=
JOBS ?= $(shell nproc)
G4 := build/release/g4
export G4_PYTHON := $(CURDIR)/.venv/bin/python

.PHONY: all setup release asan tsan model run test test-release test-asan test-tsan bench clean format

all: release

setup:
	@scripts/setup.sh

release: setup
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS)

asan: setup
	@cmake --preset asan >/dev/null
	@cmake --build --preset asan -j $(JOBS)

# Only what test-tsan runs: the server and the unit tests.
tsan: setup
	@cmake --preset tsan >/dev/null
	@cmake --build --preset tsan -j $(JOBS) --target g4 g4_tests

model: release
	@$(G4) pull >/dev/null

run: model
ifeq ($(strip $(PROMPT)),)
	@$(G4) run
else
	@$(G4) run "$$G4_RUN_PROMPT"
endif

# `make run PROMPT=...` hands the prompt through the environment so quotes survive.
run: export G4_RUN_PROMPT = $(PROMPT)

test: test-release test-asan test-tsan

test-release: model
	@cd build/release && ctest --output-on-failure -j 1

test-asan: asan model
	@cd build/asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j 1 -E 'Golden.(LogitParity.*|PerplexityWithinOnePercent)|avx2.golden'

# ThreadSanitizer on what shares memory between threads: g4 serve (HTTP worker threads and
# the engine thread) under the server tests, and the multi-threaded forward and matmuls
# (thread pool) of the unit tests. A race report stops the process (halt_on_error) and fails
# the run. tests/tsan.supp lists third-party false positives only, never g4's own code.
TSAN_OPTIONS_ALL := halt_on_error=1 second_deadlock_stack=1 suppressions=$(CURDIR)/tests/tsan.supp
# Tiny-model forwards on 2-3 threads (Gemma 3, Gemma 4, MoE), pool matmuls, repack, KV cache,
# the pool itself.
TSAN_UNIT_TESTS := *TinyGemma3.*:*TinyGemma4.*:*TinyGemma4Moe*:MoeStats.*:*BatchInvariant*:AttentionJobs.*:MatmulMulti.*:Repack.*:KvCache.*:ThreadPool.*

test-tsan: tsan model
	@TSAN_OPTIONS="$(TSAN_OPTIONS_ALL)" build/tsan/tests/g4_tests --gtest_brief=1 \
	  --gtest_filter='$(TSAN_UNIT_TESTS)'
	@TSAN_OPTIONS="$(TSAN_OPTIONS_ALL)" G4_BIN=$(CURDIR)/build/tsan/g4 G4_TSAN=1 \
	  .venv/bin/python -m pytest -q -p no:cacheprovider tests/server

bench: model
	@scripts/setup.sh --dev && .venv/bin/python bench/compare_llamacpp.py

format:
	@clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf build
