#!/usr/bin/env bash
# Builds and runs the standalone GEMM correctness test, -O3 and under ASan + UBSan.
# Usage: native/tests/run_gemm_test.sh [--quick]   (arguments go to the test)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/kernel_test_lib.sh"
NAME=gemm OPT=-O3 SANITIZE=1 ARGS=("$@")
SRCS=("$ROOT"/native/tests/gemm_test.cc "$ROOT"/native/runtime/cpu_features.cc "$ROOT"/native/runtime/thread_pool.cc
  "$ROOT"/native/runtime/thread_priority.cc "$ROOT"/native/runtime/huge_pages.cc "$ROOT"/native/kernels/gemm/*.cc "$ROOT"/native/kernels/qgemm/*.cc)
kernel_test
