#!/usr/bin/env bash
# Builds and runs the backward kernel test (softmax / log_softmax, norms, activations, embedding, cross-entropy),
# -O2 and under ASan + UBSan. Usage: native/tests/run_backward_test.sh [--no-sanitize]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/kernel_test_lib.sh"
NAME=backward OPT=-O2 SANITIZE=1 ARGS=()
[[ "${1:-}" == "--no-sanitize" ]] && SANITIZE=0
SRCS=("$ROOT"/native/runtime/*.cc "$ROOT"/native/kernels/{softmax,norms,elementwise,layout,loss}/*.cc
  "$ROOT"/native/tests/backward_test.cc)
kernel_test
