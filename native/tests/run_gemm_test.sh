#!/usr/bin/env bash
# Builds and runs the standalone GEMM correctness test twice: optimised, and
# with AddressSanitizer + UBSan. Usage: native/tests/run_gemm_test.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${TMPDIR:-/tmp}/attnode-gemm-test"
mkdir -p "$OUT"
SRCS=(native/tests/gemm_test.cc native/runtime/cpu_features.cc native/runtime/thread_pool.cc native/kernels/gemm/*.cc)
CXXFLAGS=(-std=c++17 -Wall -Wextra -pthread)

echo "== build -O3"
g++ "${CXXFLAGS[@]}" -O3 "${SRCS[@]}" -o "$OUT/gemm_test"
echo "== run -O3"
"$OUT/gemm_test" "$@"

echo "== build -O1 -fsanitize=address,undefined"
g++ "${CXXFLAGS[@]}" -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined \
  "${SRCS[@]}" -o "$OUT/gemm_test_asan"
echo "== run sanitized"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 "$OUT/gemm_test_asan" "$@"
