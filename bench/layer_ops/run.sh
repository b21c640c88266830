#!/usr/bin/env bash
# Builds and runs the layer-op (incl. silu, siluMul, RoPE) and attention (incl. GQA decode) micro-benchmarks on every ISA
# path (ISAS="avx512 avx2 portable" by default). Both measure 1 and 2 threads;
# the attention benchmark also times a same-FLOP-scale sgemm in the same run
# and prints attention / GEMM GFLOP/s ratios. -O3 like the addon build.
# Usage: bench/layer_ops/run.sh [--quick]   (passed to bench_attention)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${TMPDIR:-/tmp}/attnode_layer_ops_bench"
mkdir -p "$OUT"
CXX="${CXX:-g++}"
FLAGS=(-std=c++17 -O3 -pthread -I "$ROOT/native")
"$CXX" "${FLAGS[@]}" "$ROOT"/native/runtime/*.cc "$ROOT"/native/kernels/{softmax,norms,elementwise,rotary}/*.cc "$ROOT"/bench/layer_ops/bench.cc \
  -o "$OUT/bench"
"$CXX" "${FLAGS[@]}" "$ROOT"/native/runtime/*.cc "$ROOT"/native/kernels/attention/*.cc "$ROOT"/native/kernels/gemm/*.cc \
  "$ROOT"/bench/layer_ops/bench_attention.cc -o "$OUT/bench_attention"
for isa in ${ISAS:-avx512 avx2 portable}; do
  [[ -n "${SKIP_LAYER_OPS:-}" ]] || ATTNODE_ISA=$isa "$OUT/bench"
  ATTNODE_ISA=$isa "$OUT/bench_attention" "$@"
  echo
done
