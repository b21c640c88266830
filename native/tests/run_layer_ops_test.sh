#!/usr/bin/env bash
# Builds and runs the layer-op kernel test, -O2 and under ASan + UBSan.
# Usage: native/tests/run_layer_ops_test.sh [--no-sanitize]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/kernel_test_lib.sh"
NAME=layer_ops OPT=-O2 SANITIZE=1 ARGS=()
[[ "${1:-}" == "--no-sanitize" ]] && SANITIZE=0
SRCS=("$ROOT"/native/runtime/*.cc "$ROOT"/native/kernels/layer_ops.cc "$ROOT"/native/kernels/layer_ops_portable.cc
  "$ROOT"/native/kernels/layer_ops_avx2.cc "$ROOT"/native/kernels/layer_ops_avx512.cc
  "$ROOT"/native/tests/layer_ops_test.cc)
kernel_test
