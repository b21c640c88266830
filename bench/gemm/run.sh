#!/usr/bin/env bash
# Builds and runs the GEMM benchmark (attnode vs OpenBLAS vs oneDNN), which
# writes bench/results/gemm-<uarch>-<date>.{md,json} (see gemm_bench.cc).
# Usage: bench/gemm/run.sh [--quick] [--reps N] [--threads 1,2] [--m 128,512,2048]
#                          [--layouts xWt,xW,packed] [--shapes 768x3072,...] [--tag NAME] [--out DIR] [--no-int8 | --int8-only]
#
# OpenBLAS setting used: the environment's OPENBLAS_CORETYPE=Haswell and
# OPENBLAS_L2_SIZE=512 caps are UNSET for the benchmark process only, so
# Debian's DYNAMIC_ARCH OpenBLAS picks its own kernel for this CPU (the
# detected core name is printed in the header).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${TMPDIR:-/tmp}/attnode-gemm-bench"
mkdir -p "$OUT" bench/results

SRCS=(bench/gemm/gemm_bench.cc native/runtime/cpu_features.cc native/runtime/thread_pool.cc native/runtime/thread_priority.cc native/runtime/huge_pages.cc
  native/kernels/gemm/*.cc native/kernels/qgemm/*.cc)
FLAGS=(-std=c++17 -O3 -pthread -fopenmp -Inative -I/usr/include/x86_64-linux-gnu)
LIBS=(-lopenblas)
if [[ -f /usr/include/dnnl.h ]] && ldconfig -p | grep -q 'libdnnl\.so'; then
  FLAGS+=(-DHAVE_DNNL)
  LIBS+=(-ldnnl)
else
  echo "oneDNN not found: skipping dnnl_sgemm (apt-get install libdnnl-dev to include it)"
fi
g++ "${FLAGS[@]}" "${SRCS[@]}" -o "$OUT/gemm_bench" "${LIBS[@]}"

grep -m1 'model name' /proc/cpuinfo || true
uptime
echo "running: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_WAIT_POLICY=passive $OUT/gemm_bench $*"
exec env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_WAIT_POLICY=passive "$OUT/gemm_bench" "$@"
