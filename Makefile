# g4 quick start:
#   make run [PROMPT="Why is the sky blue?"]   install, build, fetch the default model, run it
#   make test                                  build everything and run the whole test suite
SHELL := /bin/bash
PROMPT ?=
JOBS ?= $(shell nproc)
G4 := build/release/g4
export G4_PYTHON := $(CURDIR)/.venv/bin/python

.PHONY: all setup release asan model run test test-release test-asan bench clean format

all: release

setup:
	@scripts/setup.sh

release: setup
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS)

asan: setup
	@cmake --preset asan >/dev/null
	@cmake --build --preset asan -j $(JOBS)

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

test: test-release test-asan

test-release: model
	@cd build/release && ctest --output-on-failure -j 1

test-asan: asan model
	@cd build/asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j 1 -E 'Golden.(LogitParity.*|PerplexityWithinOnePercent)'

bench: model
	@scripts/setup.sh --dev && .venv/bin/python bench/compare_llamacpp.py

format:
	@clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf build
