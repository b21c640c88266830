#!/usr/bin/env bash
# Builds and runs bench/gemm/pool_probe.cc: how the thread pool shares a GEMM's tiles after idle gaps of several
# lengths (tiles per thread, the worker's first claim, its CPU, the caller's wake-up cost).
# Usage: bench/gemm/pool_probe.sh [--threads 2] [--shapes 512x768x768,...] [--layout xWt|xW|packed]
#                                 [--gaps-us 0,200,2000,150000] [--calls 15]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${TMPDIR:-/tmp}/attnode-pool-probe"
mkdir -p "$OUT"
g++ -std=c++17 -O3 -pthread -Inative bench/gemm/pool_probe.cc native/runtime/cpu_features.cc \
  native/runtime/thread_pool.cc native/runtime/thread_priority.cc native/runtime/huge_pages.cc \
  native/kernels/gemm/*.cc native/kernels/qgemm/*.cc -o "$OUT/pool_probe"
uptime
"$OUT/pool_probe" "$@"
