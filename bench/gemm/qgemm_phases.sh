#!/usr/bin/env bash
# Builds and runs bench/gemm/qgemm_phases.cc: the int8 GEMM's time per call split into A packing, the tile loop
# (with and without the GELU epilogue) and the whole call, for a BERT-base layer's products at M = 128 and 1024,
# against the measured vpdpbusd peak. Usage: bench/gemm/qgemm_phases.sh [reps]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${TMPDIR:-/tmp}/attnode-qgemm-phases"
mkdir -p "$OUT"
# qgemm.cc is part of qgemm_phases.cc's translation unit (it times the frontend's internal steps), so not linked.
QSRCS=()
for f in native/kernels/qgemm/*.cc; do [[ "$f" == */qgemm.cc ]] || QSRCS+=("$f"); done
g++ -std=c++17 -O3 -pthread -Inative bench/gemm/qgemm_phases.cc native/runtime/cpu_features.cc \
  native/runtime/thread_pool.cc native/runtime/thread_priority.cc native/runtime/huge_pages.cc \
  native/kernels/gemm/*.cc "${QSRCS[@]}" -o "$OUT/qgemm_phases"
grep -m1 'model name' /proc/cpuinfo || true
uptime
"$OUT/qgemm_phases" "${1:-15}"
