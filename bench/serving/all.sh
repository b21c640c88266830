#!/usr/bin/env bash
# npm run bench:serving [-- run.ts options]: the continuous-batching benchmark at 1 and 2 threads (bench/serving/run.ts),
# then its report: bench/results/serving-<cpu>-<n>c.{json,md,svg}. With --quick (a smoke run of the harness), the
# files go to bench/results/tmp/ instead, so a smoke never overwrites the results.
set -euo pipefail
cd "$(dirname "$0")/../.."
CPU=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -1)
SLUG=$(echo "${CPU:-cpu}" | tr 'A-Z' 'a-z' | sed -E 's/[^a-z0-9]+/-/g; s/^-|-$//g')-$(nproc)c
OUT=bench/results
for a in "$@"; do [ "$a" = "--quick" ] && OUT=bench/results/tmp; done
mkdir -p "$OUT"
npx tsx bench/serving/run.ts --json "$OUT/serving-$SLUG.json" "$@" > /dev/null
npx tsx bench/serving/report.ts "$OUT/serving-$SLUG.json" --md "$OUT/serving-$SLUG.md" --svg "$OUT/serving-$SLUG.svg" \
  --command "npm run bench:serving${*:+ -- $*}"
echo "wrote $OUT/serving-$SLUG.{json,md,svg}"
