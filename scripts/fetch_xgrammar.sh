#!/usr/bin/env bash
# Fetches XGrammar's C++ sources (the constrained-decoding engine behind response_format,
# tools, regex and grammar constraints) from its PyPI sdist, pinned by version and SHA-256,
# into third_party/ (git-ignored); CMake compiles its cpp/ folder into a static library.
# Idempotent: does nothing when the pinned sources are already there.
set -euo pipefail
cd "$(dirname "$0")/.."
VER=0.2.9
SHA256=87b466bca2475e29bb0323abc62c6c33cbcbcff47e5fb800a3e2099ac9620b90
DEST=third_party/xgrammar-$VER
[ -f "$DEST/.g4-verified" ] && exit 0
PY=${G4_PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
echo "setup: fetching xgrammar $VER sources (PyPI sdist)"
# --no-binary for xgrammar only: its build dependencies may come as wheels (pip prepares the
# sdist's metadata with them; nothing is compiled here).
"$PY" -m pip download -q --disable-pip-version-check --no-deps --no-binary xgrammar \
  -d "$TMP" "xgrammar==$VER"
echo "$SHA256  $TMP/xgrammar-$VER.tar.gz" | sha256sum -c --quiet -
rm -rf "$DEST"
mkdir -p third_party
tar xzf "$TMP/xgrammar-$VER.tar.gz" -C third_party \
  "xgrammar-$VER/cpp" "xgrammar-$VER/include" "xgrammar-$VER/3rdparty/picojson" \
  "xgrammar-$VER/3rdparty/dlpack/include" "xgrammar-$VER/LICENSE" "xgrammar-$VER/NOTICE"
touch "$DEST/.g4-verified"
