#!/usr/bin/env bash
# Builds and runs the layer-op micro-benchmark on every ISA path.
# Usage: bench/layer_ops/run.sh   (ATTNODE_NUM_THREADS is respected; 1 and 2 threads are measured)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${TMPDIR:-/tmp}/attnode_layer_ops_bench"
mkdir -p "$OUT"
"${CXX:-g++}" -std=c++17 -O2 -pthread "$ROOT"/native/runtime/*.cc "$ROOT"/native/kernels/layer_ops*.cc \
  "$ROOT"/bench/layer_ops/bench.cc -o "$OUT/bench"
for isa in ${ISAS:-avx512 avx2 portable}; do
  ATTNODE_ISA=$isa "$OUT/bench"
  echo
done
