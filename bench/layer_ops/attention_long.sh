#!/usr/bin/env bash
# Builds bench_attention_long.cc (-O3 like the addon) against this tree's
# attention kernel and, with BASE=<git ref>, against that commit's kernel too,
# then runs them in turns (ROUNDS rounds, order alternating) so that both see
# the same load: the 1-thread medians (thread CPU time) of one round compare.
# Usage: bench/layer_ops/attention_long.sh [bench args, e.g. --seq 4096 --threads 1 --reps 3]
#   BASE=main ROUNDS=3 bench/layer_ops/attention_long.sh --threads 1
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${TMPDIR:-/tmp}/attnode_attention_long"
mkdir -p "$OUT"
CXX="${CXX:-g++}"
FLAGS=(-std=c++17 -O3 -pthread)
build() {  # build <native source root> <binary>
  "$CXX" "${FLAGS[@]}" -I "$1" "$1"/runtime/*.cc "$1"/kernels/attention/*.cc \
    "$ROOT"/bench/layer_ops/bench_attention_long.cc -o "$2"
}
build "$ROOT/native" "$OUT/new"
bins=("$OUT/new")
if [[ -n "${BASE:-}" ]]; then
  rm -rf "$OUT/base_src" && mkdir -p "$OUT/base_src"
  git -C "$ROOT" archive "$BASE" native | tar -x -C "$OUT/base_src"
  build "$OUT/base_src/native" "$OUT/base"
  bins=("$OUT/base" "$OUT/new")
fi
for ((r = 0; r < ${ROUNDS:-1}; ++r)); do
  order=("${bins[@]}")
  if ((r % 2 == 1 && ${#bins[@]} == 2)); then order=("${bins[1]}" "${bins[0]}"); fi
  for b in "${order[@]}"; do
    echo "== round $r: $(basename "$b") ($(uptime | sed 's/.*load/load/'))"
    "$b" "$@"
  done
done
