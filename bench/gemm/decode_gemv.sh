#!/usr/bin/env bash
# Builds and runs bench/gemm/decode_gemv_bench.cc: every M = 1 product of a SmolLM-135M decode step in model order,
# weights on 4 KiB pages against 2 MiB huge pages, interleaved. Usage: bench/gemm/decode_gemv.sh [threads] [rounds]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${TMPDIR:-/tmp}/attnode-decode-gemv-bench"
mkdir -p "$OUT"
g++ -std=c++17 -O3 -pthread -Inative bench/gemm/decode_gemv_bench.cc native/runtime/cpu_features.cc \
  native/runtime/thread_pool.cc native/runtime/thread_priority.cc native/runtime/huge_pages.cc \
  native/kernels/gemm/*.cc native/kernels/qgemm/*.cc -o "$OUT/decode_gemv_bench"
grep -m1 'model name' /proc/cpuinfo || true
uptime
"$OUT/decode_gemv_bench" "${1:-1}" "${2:-9}"
uptime
