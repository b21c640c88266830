#!/usr/bin/env bash
# npm run bench:llm [-- ROUNDS]: makes the model and the GGUF files if missing, then alternates
# attnode (bench/llm/run.ts) and node-llama-cpp (bench/llm/peer_llamacpp.ts) rounds, one process each,
# JSON per round in bench/results/tmp/; summarize with bench/llm/report.ts.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-2}
DIR=bench/models/smollm-135m-random
OUT=bench/results/tmp
mkdir -p "$OUT"
[ -f $DIR/model.safetensors ] || npx tsx bench/llm/make_model.ts
for t in f32 bf16 q8_0; do [ -f $DIR/model-$t.gguf ] || npx tsx bench/llm/write_gguf.ts --type $t; done
for r in $(seq 1 "$ROUNDS"); do
  npx tsx bench/llm/run.ts --reps 2 --json $OUT/llm-attnode-r$r.json > /dev/null
  npx tsx bench/llm/peer_llamacpp.ts --reps 2 --json $OUT/llm-llamacpp-r$r.json > /dev/null
done
npx tsx bench/llm/report.ts $OUT/llm-attnode-r*.json $OUT/llm-llamacpp-r*.json
