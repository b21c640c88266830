#!/usr/bin/env bash
# Builds and runs the thread pool test, -O2 and under ASan + UBSan.
# Usage: native/tests/run_thread_pool_test.sh [--no-sanitize]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/kernel_test_lib.sh"
NAME=thread_pool OPT=-O2 SANITIZE=1 ARGS=()
[[ "${1:-}" == "--no-sanitize" ]] && SANITIZE=0
SRCS=("$ROOT"/native/runtime/cpu_features.cc "$ROOT"/native/runtime/thread_pool.cc "$ROOT"/native/runtime/thread_priority.cc
  "$ROOT"/native/tests/thread_pool_test.cc)
kernel_test
