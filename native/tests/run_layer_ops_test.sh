#!/usr/bin/env bash
# Builds and runs the layer-op kernel test (softmax, norms, elementwise, layout), -O2 and under ASan + UBSan.
# Usage: native/tests/run_layer_ops_test.sh [--no-sanitize]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/kernel_test_lib.sh"
NAME=layer_ops OPT=-O2 SANITIZE=1 ARGS=()
[[ "${1:-}" == "--no-sanitize" ]] && SANITIZE=0
# The four families the test covers (each folder's frontend and per-ISA files).
SRCS=("$ROOT"/native/runtime/*.cc "$ROOT"/native/kernels/{softmax,norms,elementwise,layout}/*.cc
  "$ROOT"/native/tests/layer_ops_test.cc)
kernel_test
