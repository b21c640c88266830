#!/usr/bin/env bash
# Builds and runs the RoPE kernel test, -O2 and under ASan + UBSan.
# Usage: native/tests/run_rotary_test.sh [--no-sanitize]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/kernel_test_lib.sh"
NAME=rotary OPT=-O2 SANITIZE=1 ARGS=()
[[ "${1:-}" == "--no-sanitize" ]] && SANITIZE=0
SRCS=("$ROOT"/native/runtime/*.cc "$ROOT"/native/kernels/rotary/*.cc "$ROOT"/native/tests/rotary_test.cc)
kernel_test
