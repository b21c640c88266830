#!/usr/bin/env bash
# Threading benchmark: layer ops and GEMM at 1 vs 2 pool threads, on an idle
# machine and with a deliberate background load (one spinning process,
# started here and bounded in time), for the working tree and optionally a
# baseline git revision (sources read with `git show`, nothing checked out).
#
# Each set runs back to back (gap 0: workers are still spinning from the
# previous call) and with a 300 µs gap of caller-only work before each call
# (workers have gone to sleep: every call pays a wake-up, as op-by-op calls
# from JS do).
#
# Usage: bench/threading/run.sh [--reps N] [--baseline REF] [--no-load] [--quick]
# Writes bench/results/threading-latest.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${TMPDIR:-/tmp}/attnode-threading-bench"
mkdir -p "$OUT" bench/results
REPS=15
BASE=""
LOAD=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --reps) REPS="$2"; shift 2 ;;
    --baseline) BASE="$2"; shift 2 ;;
    --no-load) LOAD=0; shift ;;
    --quick) REPS=5; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

FLAGS=(-std=c++17 -O3 -pthread)

# The pool's runtime files and every kernel source (whatever the folder
# layout of the revision), so a baseline from before a file moved still builds.
sources() {  # sources <root>
  local f
  for f in cpu_features thread_pool thread_priority; do
    [[ -f "$1/native/runtime/$f.cc" ]] && echo "$1/native/runtime/$f.cc"
  done
  find "$1/native/kernels" -name '*.cc' | sort
}

build() {  # build <root> <binary>
  local root="$1" srcs=()
  mapfile -t srcs < <(sources "$root")
  g++ "${FLAGS[@]}" bench/threading/bench_threading.cc -I"$root" "${srcs[@]}" -o "$2"
}

echo "== build (working tree)"
build . "$OUT/bench_new"
RUNS=("new")
if [[ -n "$BASE" ]]; then
  echo "== build (baseline $BASE)"
  rm -rf "$OUT/base" && mkdir -p "$OUT/base"
  # Headers of the baseline too, so the kernels build against their own API.
  git archive "$BASE" native | tar -x -C "$OUT/base"
  # The benchmark includes ../../native/...: compile a copy that sits in the baseline tree.
  mkdir -p "$OUT/base/bench/threading"
  cp bench/threading/bench_threading.cc "$OUT/base/bench/threading/"
  mapfile -t srcs < <(sources "$OUT/base")
  g++ "${FLAGS[@]}" "$OUT/base/bench/threading/bench_threading.cc" "${srcs[@]}" -o "$OUT/bench_base"
  RUNS+=("base")
fi

REPORT=bench/results/threading-latest.md
TMP="$OUT/report.md"
{
  echo "# Threading benchmark ($(date -u +%Y-%m-%d))"
  echo
  echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores available."
  echo "Per-call latency in µs, median (and p90) over $REPS samples of ~2 ms each; the thread count alternates"
  echo "sample by sample so both see the same load. \`2t/1t\` < 1 means two threads are faster."
  echo "The machine is shared: other processes may occupy a core during any run (load average at start:"
  echo "$(cut -d' ' -f1-3 /proc/loadavg))."
  echo
} >"$TMP"

run_set() {  # run_set <title>
  for gap in 0 300; do
    for r in "${RUNS[@]}"; do
      local label="working tree"
      [[ "$r" == base ]] && label="baseline $BASE"
      echo "== $1, gap $gap us: $label"
      {
        echo "## $1, gap $gap µs: $label"
        echo
        echo '```'
        "$OUT/bench_$r" --reps "$REPS" --gap-us "$gap" --label "$label ($1)" | tee /dev/stderr
        echo '```'
        echo
      } >>"$TMP"
    done
  done
}

run_set "idle"
if [[ "$LOAD" == 1 ]]; then
  # One busy-looping process, not pinned (like a compile running next to us: the scheduler
  # moves it between cores), bounded by timeout and stopped by its pid when the runs end.
  timeout 900 sh -c 'while :; do :; done' &
  SPIN=$!
  trap 'kill "$SPIN" 2>/dev/null || true' EXIT
  sleep 0.5
  run_set "loaded (one spinning process)"
  kill "$SPIN" 2>/dev/null || true
  wait "$SPIN" 2>/dev/null || true
  trap - EXIT
fi
mv "$TMP" "$REPORT"
echo "wrote $REPORT"
