#!/usr/bin/env bash
# Builds and runs the layer-op kernel test twice: optimised (-O2, like the
# addon) and under AddressSanitizer + UBSan. Baseline flags only: the ISA
# files carry their own #pragma GCC target, so no -m flags (and never
# -march=native) are needed or wanted.
#
# Usage: native/tests/run_layer_ops_test.sh [--no-sanitize]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${TMPDIR:-/tmp}/attnode_layer_ops_test"
mkdir -p "$OUT"
CXX="${CXX:-g++}"
SRCS=("$ROOT"/native/runtime/*.cc "$ROOT"/native/kernels/layer_ops.cc "$ROOT"/native/kernels/layer_ops_portable.cc
  "$ROOT"/native/kernels/layer_ops_avx2.cc "$ROOT"/native/kernels/layer_ops_avx512.cc
  "$ROOT"/native/tests/layer_ops_test.cc)
# -I native: runtime sources include "runtime/..." paths.
COMMON=(-std=c++17 -Wall -Wextra -pthread -I "$ROOT/native")

echo "== build -O2"
"$CXX" "${COMMON[@]}" -O2 "${SRCS[@]}" -o "$OUT/layer_ops_test"
echo "== run -O2"
"$OUT/layer_ops_test"

if [[ "${1:-}" != "--no-sanitize" ]]; then
  echo "== build -fsanitize=address,undefined"
  "$CXX" "${COMMON[@]}" -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined \
    "${SRCS[@]}" -o "$OUT/layer_ops_test_san"
  echo "== run sanitized"
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 "$OUT/layer_ops_test_san"
fi
