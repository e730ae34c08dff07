#!/usr/bin/env bash
# Builds llama.cpp's llama-server and llama-bench from the llama.cpp sources vendored in
# llama-cpp-python's PyPI sdist (the only registry reachable here), for the side-by-side
# benchmarks in bench/. Output: $G4_HOME/llama.cpp/bin/{llama-server,llama-bench}.
#   scripts/build_llama_server.sh [VERSION]   (default: the version in requirements-dev.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
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
cmake -S "$SRC" -B "$OUT/build-$VER" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DGGML_NATIVE=ON >/dev/null
cmake --build "$OUT/build-$VER" -j "$(nproc)" --target llama-server llama-bench
mkdir -p "$OUT/bin"
cp "$OUT/build-$VER/bin/llama-server" "$OUT/build-$VER/bin/llama-bench" "$OUT/bin/"
echo "built: $OUT/bin/llama-server $OUT/bin/llama-bench (llama.cpp from llama-cpp-python $VER)"
