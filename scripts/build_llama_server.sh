#!/usr/bin/env bash
# Builds llama.cpp's llama-server and llama-bench from the llama.cpp sources vendored in
# llama-cpp-python's PyPI sdist (the only registry reachable here), for the side-by-side
# benchmarks in bench/. Output: $G4_HOME/llama.cpp/bin/{llama-server,llama-bench}.
#   scripts/build_llama_server.sh [--avx2] [VERSION]   (default: the version in requirements-dev.txt)
# LLAMA_EXTRA_TARGETS (space-separated) adds more tools to the native build, copied beside them,
# e.g. LLAMA_EXTRA_TARGETS=llama-quantize for bench/shape_models.py.
# --avx2 builds llama-bench alone without AVX-512 into $G4_HOME/llama.cpp/bin-avx2, for
# bench/callgrind_compare.py (valgrind cannot execute AVX-512 instructions).
set -euo pipefail
cd "$(dirname "$0")/.."
AVX2=0
if [ "${1:-}" = "--avx2" ]; then
  AVX2=1
  shift
fi
VER=${1:-$(sed -n 's/^llama-cpp-python==//p' scripts/requirements-dev.txt)}
HOME_DIR=${G4_HOME:-$HOME/.cache/g4}
OUT=$HOME_DIR/llama.cpp
SRC=$OUT/src-$VER
if [ ! -d "$SRC" ]; then
  mkdir -p "$OUT/dl"
  python3 -m pip download -q --no-deps --no-binary :all: -d "$OUT/dl" "llama-cpp-python==$VER"
  mkdir -p "$SRC"
  tar xzf "$OUT/dl/llama_cpp_python-$VER.tar.gz" -C "$SRC" --strip-components=3 \
    "llama_cpp_python-$VER/vendor/llama.cpp"
fi
if [ "$AVX2" = 1 ]; then
  cmake -S "$SRC" -B "$OUT/build-avx2-$VER" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON \
    -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF >/dev/null
  cmake --build "$OUT/build-avx2-$VER" -j "$(nproc)" --target llama-bench
  mkdir -p "$OUT/bin-avx2"
  cp "$OUT/build-avx2-$VER/bin/llama-bench" "$OUT/bin-avx2/"
  echo "built: $OUT/bin-avx2/llama-bench (AVX2, no AVX-512; llama.cpp from llama-cpp-python $VER)"
  exit 0
fi
cmake -S "$SRC" -B "$OUT/build-$VER" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DGGML_NATIVE=ON >/dev/null
EXTRA=${LLAMA_EXTRA_TARGETS:-}
# shellcheck disable=SC2086  # word splitting of the target list is intended
cmake --build "$OUT/build-$VER" -j "$(nproc)" --target llama-server llama-bench $EXTRA
mkdir -p "$OUT/bin"
for t in llama-server llama-bench $EXTRA; do
  cp "$OUT/build-$VER/bin/$t" "$OUT/bin/"
done
echo "built: $(for t in llama-server llama-bench $EXTRA; do printf '%s ' "$OUT/bin/$t"; done)(llama.cpp from llama-cpp-python $VER)"
