#!/usr/bin/env bash
# Builds and runs bench/layer_ops/decode_attention_bench.cc (-O3 like the addon): a SmolLM-135M decode step's
# attention over its KV caches, cold, against a plain read of the same bytes, at 1 and 2 threads.
# Usage: bench/layer_ops/decode_attention.sh [lk] [rounds] [warm]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${TMPDIR:-/tmp}/attnode-decode-attention-bench"
mkdir -p "$OUT"
g++ -std=c++17 -O3 -pthread -Inative native/runtime/*.cc native/kernels/attention/*.cc native/kernels/gemm/*.cc native/kernels/qgemm/*.cc \
  bench/layer_ops/decode_attention_bench.cc -o "$OUT/decode_attention_bench"
grep -m1 'model name' /proc/cpuinfo || true
uptime
for t in 1 2; do "$OUT/decode_attention_bench" "${1:-640}" "$t" "${2:-15}" "${3:-cold}"; done
uptime
