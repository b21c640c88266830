#!/usr/bin/env bash
# Builds and runs the standalone int8 GEMM test, -O3 and under ASan + UBSan.
# Usage: native/tests/run_qgemm_test.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/kernel_test_lib.sh"
NAME=qgemm OPT=-O3 SANITIZE=1 ARGS=("$@")
SRCS=("$ROOT"/native/tests/qgemm_test.cc "$ROOT"/native/runtime/cpu_features.cc "$ROOT"/native/runtime/thread_pool.cc
  "$ROOT"/native/runtime/thread_priority.cc "$ROOT"/native/runtime/huge_pages.cc "$ROOT"/native/kernels/gemm/*.cc "$ROOT"/native/kernels/qgemm/*.cc)
kernel_test
