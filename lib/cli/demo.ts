/**
 * `attnode demo` (what `npm start` runs): the seed model on a batch, and the
 * core kernels, each on the native and the pure-TypeScript backend side by
 * side, with latency, throughput and the speedup.
 */
import { performance } from 'node:perf_hooks';
import { availableBackends, info, ops, randn, tensor, type BackendName, type Tensor } from '../index';
import { manualSeed } from '../nn/init';
import { TransformerModel } from './seed-model';

export interface DemoOptions {
  quick: boolean;
  vocab: number;
  dModel: number;
  nhead: number;
  numLayers: number;
  numDecoderLayers: number;
  dimFeedforward: number;
  batch: number;
  srcLen: number;
  tgtLen: number;
}

export const demoDefaults: DemoOptions = {
  quick: false,
  vocab: 1000,
  // PyTorch's nn.Transformer defaults; num_layers = 6 as in nn.Transformer's own default.
  dModel: 512,
  nhead: 8,
  numLayers: 6,
  numDecoderLayers: 6,
  dimFeedforward: 2048,
  batch: 4,
  srcLen: 32,
  tgtLen: 32,
};

/**
 * Median wall time in ms of `fn` over `reps` runs, after a warm-up of at least
 * one run and ~150 ms: until then freshly allocated outputs still fault in new
 * pages (~11 µs per 4 KiB here), which would be timed as the kernel.
 */
function time(fn: () => void, reps: number): number {
  const warm = performance.now() + 150;
  do fn();
  while (performance.now() < warm);
  const t: number[] = [];
  for (let i = 0; i < reps; i++) {
    const s = performance.now();
    fn();
    t.push(performance.now() - s);
  }
  t.sort((a, b) => a - b);
  return t[Math.floor(t.length / 2)]!;
}

function fmt(ms: number): string {
  return ms >= 100 ? ms.toFixed(0) : ms >= 1 ? ms.toFixed(2) : ms.toFixed(3);
}

function row(cells: string[], widths: number[]): string {
  return cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
}

export function runDemo(o: DemoOptions): void {
  const backends = availableBackends() as BackendName[];
  const rt = info();
  const nat = rt.native;
  console.log(`attnode demo — node ${rt.node}, ${rt.platform}-${rt.arch}`);
  console.log(
    nat
      ? `native: ${nat.cpu.brand || nat.cpu.vendor}, kernels ${nat.isa}, ${nat.numThreads} thread(s)`
      : `native: unavailable (${rt.nativeError}); only the TypeScript backend runs`,
  );

  // 1. Kernels.
  const m = o.quick ? 64 : 256;
  const d = o.dModel;
  const x = randn([m, d], { seed: 1 });
  const w = randn([d, d], { seed: 2 });
  const b = randn([d], { seed: 3 });
  const rows = randn([m * 8, 128], { seed: 4 });
  const gamma = randn([d], { seed: 5 });
  const reps = o.quick ? 3 : 10;
  console.log(`\nKernels (median of ${reps}, ms)`);
  const widths = [34, 10, 10, 9];
  console.log(row(['op', 'native', 'ts', 'speedup'], widths));
  const kernels: [string, (backend: BackendName) => void][] = [
    [`linear [${m}x${d}]·[${d}x${d}]ᵀ+b`, (backend) => void ops.linear(x, w, b, { backend })],
    [`softmax [${m * 8}x128]`, (backend) => void ops.softmax(rows, -1, { backend })],
    [`layerNorm [${m}x${d}]`, (backend) => void ops.layerNorm(x, [d], gamma, b, 1e-5, { backend })],
    [`gelu [${m}x${d}]`, (backend) => void ops.gelu(x, { backend })],
  ];
  for (const [name, run] of kernels) {
    const t = Object.fromEntries(backends.map((be) => [be, time(() => run(be), reps)])) as Record<BackendName, number>;
    const speed = t.native !== undefined && t.js !== undefined ? `${(t.js / t.native).toFixed(1)}x` : '-';
    console.log(row([name, t.native !== undefined ? fmt(t.native) : '-', fmt(t.js), speed], widths));
  }

  // 2. The seed model.
  manualSeed(0);
  // Inference: eval mode (no dropout); the forwards below run under noGrad.
  const model = new TransformerModel(o.vocab, o.dModel, o.nhead, o.numLayers, o.numDecoderLayers, o.dimFeedforward).eval();
  const ids = (len: number, seed: number): Tensor<'int32'> => {
    const data = new Int32Array(len * o.batch);
    let s = seed;
    for (let i = 0; i < data.length; i++) data[i] = (s = (s * 1103515245 + 12345) >>> 0) % o.vocab;
    return tensor(data, [len, o.batch], 'int32');
  };
  const src = ids(o.srcLen, 7);
  const tgt = ids(o.tgtLen, 11);
  console.log(
    `\nSeed model: Embedding(${o.vocab}, ${o.dModel}) → Transformer(dModel ${o.dModel}, nhead ${o.nhead}, ` +
      `${o.numLayers} encoder + ${o.numDecoderLayers} decoder layers, ff ${o.dimFeedforward}) → Linear(${o.dModel}, ${o.vocab}); ` +
      `${(model.numParameters() / 1e6).toFixed(1)}M parameters`,
  );
  console.log(`batch ${o.batch}, src ${o.srcLen} tokens, tgt ${o.tgtLen} tokens`);
  const tokens = o.batch * (o.srcLen + o.tgtLen);
  const results: Partial<Record<BackendName, number>> = {};
  let shape = '';
  let outputs: Partial<Record<BackendName, Float32Array>> = {};
  for (const backend of backends) {
    model.useBackend(backend);
    const r = backend === 'js' ? (o.quick ? 1 : 3) : reps;
    let out: Tensor<'float32'> | null = null;
    results[backend] = time(() => {
      out = model.forward(src, tgt);
    }, r);
    shape = `[${out!.shape.join(', ')}]`;
    outputs = { ...outputs, [backend]: out!.data };
  }
  console.log(`output shape ${shape} (tgt × batch × vocab)`);
  const w2 = [10, 12, 12];
  console.log(row(['backend', 'latency ms', 'tokens/s'], w2));
  for (const backend of backends) {
    const ms = results[backend]!;
    console.log(row([backend, fmt(ms), ((tokens / ms) * 1000).toFixed(0)], w2));
  }
  if (results.native !== undefined && results.js !== undefined) {
    let maxDiff = 0;
    let maxAbs = 0;
    const a = outputs.native!;
    const c = outputs.js!;
    for (let i = 0; i < a.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(a[i]! - c[i]!));
      maxAbs = Math.max(maxAbs, Math.abs(c[i]!));
    }
    console.log(`speedup native vs ts: ${(results.js / results.native).toFixed(1)}x; max |native − ts| = ${maxDiff.toExponential(2)} (output max ${maxAbs.toFixed(2)})`);
  }
  if (results.native !== undefined && nat?.bf16) {
    // The reduced-precision switch, where the CPU has AVX512-BF16: same model, bfloat16 weight GEMMs and attention.
    model.useBackend('native').useWeightPrecision('bfloat16').useAttentionPrecision('bfloat16');
    let out: Tensor<'float32'> | null = null;
    const ms = time(() => {
      out = model.forward(src, tgt);
    }, reps);
    model.useWeightPrecision('float32').useAttentionPrecision('float32');
    const a = out!.data;
    const ref = outputs.native!;
    let maxDiff = 0;
    let maxAbs = 0;
    for (let i = 0; i < a.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(a[i]! - ref[i]!));
      maxAbs = Math.max(maxAbs, Math.abs(ref[i]!));
    }
    console.log(
      `native with bfloat16 weights and attention (useWeightPrecision, useAttentionPrecision): ${fmt(ms)} ms, ${((tokens / ms) * 1000).toFixed(0)} tokens/s, ` +
        `${(results.native / ms).toFixed(2)}x float32; max |bf16 − fp32| = ${maxDiff.toExponential(2)} (${(maxDiff / maxAbs).toExponential(1)} of the output's scale)`,
    );
  }
}
