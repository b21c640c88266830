# Shared by run_*_test.sh: builds one standalone kernel test twice, optimised
# (like the addon) and under AddressSanitizer + UBSan, and runs both. Baseline
# flags only: ISA files carry their own #pragma GCC target, so no -m flags
# (and never -march=native) are needed or wanted.
#
# The caller sets NAME, OPT (e.g. -O2), SANITIZE (1/0), SRCS=(...) and
# ARGS=(...) (arguments for the test binary), then calls kernel_test.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

kernel_test() {
  local out="${TMPDIR:-/tmp}/attnode_${NAME}_test"
  local cxx="${CXX:-g++}"
  # -I native: sources include "runtime/..." and "kernels/..." paths.
  local common=(-std=c++17 -Wall -Wextra -pthread -I "$ROOT/native")
  mkdir -p "$out"
  echo "== build $OPT"
  "$cxx" "${common[@]}" "$OPT" "${SRCS[@]}" -o "$out/test"
  echo "== run $OPT"
  "$out/test" "${ARGS[@]}"
  if [[ "$SANITIZE" == 1 ]]; then
    echo "== build -fsanitize=address,undefined"
    "$cxx" "${common[@]}" -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined \
      "${SRCS[@]}" -o "$out/test_san"
    echo "== run sanitized"
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 "$out/test_san" "${ARGS[@]}"
  fi
}
