/**
 * node-llama-cpp 3.21.1 (prebuilt @node-llama-cpp/linux-x64 binary from npm,
 * CPU only, build: 'never') on the GGUF files of write_gguf.ts: prompt
 * processing of the same 512-token prompt (evaluateWithoutGeneratingNewTokens
 * on a cleared sequence) and greedy decode over 128 steps (sequence.evaluate,
 * temperature 0), 1 and 2 threads, F32, BF16 and Q8_0 (model-<type>.gguf
 * from write_gguf.ts).
 *
 *   npx tsx bench/llm/peer_llamacpp.ts [--reps 3] [--threads 1,2] [--types f32,bf16,q8_0] [--json out.json]
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { DEFAULT_DIR } from './make_model';
import { promptIds } from './prompt';

const { values: args } = parseArgs({
  options: {
    reps: { type: 'string', default: '3' },
    threads: { type: 'string', default: '1,2' },
    types: { type: 'string', default: 'f32,bf16,q8_0' },
    prompt: { type: 'string', default: '512' },
    steps: { type: 'string', default: '128' },
    json: { type: 'string' },
    dir: { type: 'string' },
  },
});
const reps = Number(args.reps);
const P = Number(args.prompt);
const STEPS = Number(args.steps);

async function main(): Promise<void> {
  const dir = path.resolve(args.dir ?? DEFAULT_DIR);
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: process.env.NLC_LOG === 'debug' ? LlamaLogLevel.debug : LlamaLogLevel.warn, maxThreads: 0 });
  const prompt = Array.from(promptIds(P, cfg.vocab_size)) as never[];
  const cells: unknown[] = [];
  let tokensF32: number[] | null = null;
  for (const type of args.types!.split(',')) {
    const modelPath = path.join(dir, `model-${type}.gguf`);
    if (!fs.existsSync(modelPath)) throw new Error(`peer_llamacpp: ${modelPath} is missing: write it with npx tsx bench/llm/write_gguf.ts --type ${type}`);
    const model = await llama.loadModel({ modelPath, gpuLayers: 0, useMmap: true });
    for (const threads of args.threads!.split(',').map(Number)) {
      const ctx = await model.createContext({ contextSize: 1024, batchSize: 512, threads: { ideal: threads, min: threads }, flashAttention: false });
      const seq = ctx.getSequence();
      const cell = { threads, precision: type, prefillTokS: [] as number[], decodeTokS: [] as number[], tokens: [] as number[], prefillCpuPerWall: [] as number[], decodeCpuMsPerTok: [] as number[] };
      // Warm-up
      await seq.evaluateWithoutGeneratingNewTokens(prompt.slice(0, 16));
      await seq.clearHistory();
      for (let r = 0; r < reps; r++) {
        await seq.clearHistory();
        let t0 = performance.now();
        const cpu0 = process.cpuUsage();
        await seq.evaluateWithoutGeneratingNewTokens(prompt);
        const wallS = (performance.now() - t0) / 1000;
        const cpu = process.cpuUsage(cpu0);
        cell.prefillTokS.push(P / wallS);
        cell.prefillCpuPerWall.push((cpu.user + cpu.system) / 1e6 / wallS);
        // Greedy decode: the first evaluate() call feeds one token and yields STEPS generated tokens.
        const toks: number[] = [];
        const dcpu0 = process.cpuUsage();
        t0 = performance.now();
        for await (const tok of seq.evaluate([5 as never], { temperature: 0 })) {
          toks.push(tok as unknown as number);
          if (toks.length >= STEPS) break;
        }
        cell.decodeTokS.push(STEPS / ((performance.now() - t0) / 1000));
        // Process CPU time per token (llama.cpp's threads + this JS thread), as attnode's run.ts records it.
        const dcpu = process.cpuUsage(dcpu0);
        cell.decodeCpuMsPerTok.push((dcpu.user + dcpu.system) / 1000 / toks.length);
        if (r === 0) cell.tokens = toks.slice(0, 16);
        process.stderr.write(`  llama.cpp ${type} t${threads} rep ${r}: prefill ${cell.prefillTokS.at(-1)!.toFixed(1)} tok/s (cpu/wall ${cell.prefillCpuPerWall.at(-1)!.toFixed(2)}), decode ${cell.decodeTokS.at(-1)!.toFixed(2)} tok/s\n`);
      }
      if (type === 'f32' && !tokensF32) tokensF32 = cell.tokens;
      cells.push(cell);
      await ctx.dispose();
    }
    await model.dispose();
  }
  const result = {
    engine: 'node-llama-cpp', version: JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'node_modules', 'node-llama-cpp', 'package.json'), 'utf8')).version,
    llamaCpp: (llama as unknown as { buildType?: string }).buildType, gpu: llama.gpu, when: new Date().toISOString(), loadavgAtEnd: (await import('node:os')).loadavg(), prompt: P, steps: STEPS, reps, cells,
  };
  const text = JSON.stringify(result, null, 1);
  if (args.json) fs.writeFileSync(args.json, text);
  console.log(text);
}

void main();
