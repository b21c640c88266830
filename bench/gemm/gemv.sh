#!/usr/bin/env bash
# Builds and runs bench/gemm/gemv_bench.cc: the decode-step GEMVs against the read bandwidth, in one run.
# Usage: bench/gemm/gemv.sh [threads]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${TMPDIR:-/tmp}/attnode-gemv-bench"
mkdir -p "$OUT"
g++ -std=c++17 -O3 -pthread -Inative bench/gemm/gemv_bench.cc native/runtime/cpu_features.cc native/runtime/thread_pool.cc \
  native/runtime/thread_priority.cc native/runtime/huge_pages.cc native/kernels/gemm/*.cc native/kernels/qgemm/*.cc -o "$OUT/gemv_bench"
grep -m1 'model name' /proc/cpuinfo || true
uptime
exec "$OUT/gemv_bench" "${1:-1}"
