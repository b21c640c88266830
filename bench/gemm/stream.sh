#!/usr/bin/env bash
# Builds and runs bench/gemm/stream_bench.cc: read bandwidth of one buffer on 4 KiB pages against 2 MiB huge pages,
# several read-loop shapes, 1 and 2 threads. Usage: bench/gemm/stream.sh [MiB] [rounds]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${TMPDIR:-/tmp}/attnode-stream-bench"
mkdir -p "$OUT"
g++ -std=c++17 -O3 -pthread bench/gemm/stream_bench.cc -o "$OUT/stream_bench"
grep -m1 'model name' /proc/cpuinfo || true
cat /sys/kernel/mm/transparent_hugepage/enabled || true
uptime
"$OUT/stream_bench" "${1:-512}" "${2:-7}"
uptime
