#!/usr/bin/env bash
# Builds and runs the fused optimizer kernel test, -O2 and under ASan + UBSan.
# Usage: native/tests/run_optim_test.sh [--no-sanitize]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/kernel_test_lib.sh"
NAME=optim OPT=-O2 SANITIZE=1 ARGS=()
[[ "${1:-}" == "--no-sanitize" ]] && SANITIZE=0
SRCS=("$ROOT"/native/runtime/*.cc "$ROOT"/native/kernels/optim/*.cc "$ROOT"/native/tests/optim_test.cc)
kernel_test
