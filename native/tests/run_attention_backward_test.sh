#!/usr/bin/env bash
# Builds and runs the flash-attention backward kernel test, -O2 and under ASan + UBSan.
# Usage: native/tests/run_attention_backward_test.sh [--no-sanitize]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/kernel_test_lib.sh"
NAME=attention_backward OPT=-O2 SANITIZE=1 ARGS=()
[[ "${1:-}" == "--no-sanitize" ]] && SANITIZE=0
SRCS=("$ROOT"/native/runtime/*.cc "$ROOT"/native/kernels/attention/*.cc "$ROOT"/native/kernels/gemm/*.cc "$ROOT"/native/kernels/qgemm/*.cc "$ROOT"/native/tests/attention_backward_test.cc)
kernel_test
