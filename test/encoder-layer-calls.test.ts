/**
 * The native calls of an inference encoder layer: one GEMM for q, k and v, one attention call reading the heads in
 * place, the output projection with its bias in the GEMM's store, the residual add fused into LayerNorm, the first
 * feed-forward GEMM with bias and GELU in its store, the second with its bias, and the second add + LayerNorm. Any
 * extra call (a permute copy, a separate bias, activation or add) is a pass over the activations that issue 18's
 * encoder figures pay for; this test names the call that appeared. Replayed (lib/forward-program.ts), the same
 * calls are recorded once and a forward is one runList call.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Activation } from '../lib/backend/backend';
import { addon } from '../lib/backend/native';
import * as a from '../lib/index';
import { setForwardProgramEnabled } from '../lib/forward-program';

type Call = { op: string; args: Record<string, unknown> };

/** The memory behind a kernel argument (views of one tensor are different arrays on the same buffer). */
const buffer = (x: unknown): ArrayBufferLike => (x as Float32Array).buffer;

const table = addon as unknown as Record<string, unknown> | null;
const wrapped = new Map<string, unknown>();

/**
 * Records every addon op call made by `fn` (op names and argument objects); with `recorded`, the calls recorded
 * into command lists instead (`<op>Record(list, args)`), and `runList` calls as op 'runList'.
 */
function recordCalls(fn: () => void, recorded = false): Call[] {
  const calls: Call[] = [];
  for (const op of Object.keys(table!)) {
    const f = table![op];
    if (typeof f !== 'function' || /^(packWeight|createCommandList|submit|info)$|^(set|get)[A-Z]/.test(op)) continue;
    const isRecord = /Record$/.test(op);
    if (recorded ? !isRecord && op !== 'runList' : isRecord || op === 'runList') continue;
    wrapped.set(op, f);
    table![op] = (...args: unknown[]): unknown => {
      const name = isRecord ? op.slice(0, -'Record'.length) : op;
      calls.push({ op: name, args: (args[isRecord ? 1 : 0] ?? {}) as Record<string, unknown> });
      return (f as (...x: unknown[]) => unknown).apply(addon, args);
    };
  }
  try {
    fn();
  } finally {
    for (const [op, f] of wrapped) table![op] = f;
    wrapped.clear();
  }
  return calls;
}

const layerOptions = { dModel: 64, nhead: 4, dimFeedforward: 128, activation: 'gelu' as const, batchFirst: true, dropout: 0 };
const LAYER_OPS = ['gemm', 'attention', 'gemm', 'addLayerNorm', 'gemm', 'gemm', 'addLayerNorm'];

describe.skipIf(!addon)('encoder layer forward: native calls (skipped: native addon not loaded)', () => {
  afterEach(() => {
    a.setGradEnabled(true);
    setForwardProgramEnabled(true);
  });

  it('a post-norm GELU layer is 7 calls: qkv GEMM, attention, out-proj GEMM, add+LayerNorm, ff1 GEMM+GELU, ff2 GEMM, add+LayerNorm', () => {
    const layer = new a.nn.TransformerEncoderLayer(layerOptions).eval();
    const x = a.randn([2, 16, 64]);
    a.setGradEnabled(false);
    setForwardProgramEnabled(false);
    layer.forward(x); // weights packed on first use
    const calls = recordCalls(() => layer.forward(x));
    expect(calls.map((c) => c.op)).toEqual(LAYER_OPS);
    const [qkv, attn, out, , ff1, ff2] = calls.map((c) => c.args);
    expect([qkv!.m, qkv!.n, qkv!.k]).toEqual([32, 192, 64]);
    expect(qkv!.bias).toBeInstanceOf(Float32Array);
    // Heads read in place from the qkv projection: q, k and v are the GEMM's output buffer.
    for (const t of [attn!.q, attn!.k, attn!.v]) expect(buffer(t)).toBe(buffer(qkv!.c));
    expect([attn!.batch, attn!.heads, attn!.lq, attn!.lk]).toEqual([2, 4, 16, 16]);
    // The attention output is the output projection's A, without a copy in between.
    expect(buffer(out!.a)).toBe(buffer(attn!.out));
    expect(out!.bias).toBeInstanceOf(Float32Array);
    expect(ff1!.act).toBe(Activation.Gelu);
    expect(ff1!.bias).toBeInstanceOf(Float32Array);
    expect(buffer(ff2!.a)).toBe(buffer(ff1!.c));
    expect(ff2!.bias).toBeInstanceOf(Float32Array);
  });

  it('a 3-layer encoder is 3 × the layer\'s calls and nothing else', () => {
    const enc = new a.nn.TransformerEncoder({ layer: layerOptions, numLayers: 3 }).eval();
    const x = a.randn([1, 8, 64]);
    a.setGradEnabled(false);
    setForwardProgramEnabled(false);
    enc.forward(x);
    const calls = recordCalls(() => enc.forward(x));
    expect(calls.map((c) => c.op)).toEqual([...LAYER_OPS, ...LAYER_OPS, ...LAYER_OPS]);
  });

  it('replayed, the 3-layer encoder records the same calls once and each later forward is one runList', () => {
    const enc = new a.nn.TransformerEncoder({ layer: layerOptions, numLayers: 3 }).eval();
    const x = a.randn([1, 8, 64]);
    a.setGradEnabled(false);
    enc.forward(x); // eager: the first call with a shape
    const recording = recordCalls(() => enc.forward(x), true);
    expect(recording.map((c) => c.op)).toEqual([...LAYER_OPS, ...LAYER_OPS, ...LAYER_OPS, 'runList']);
    // The layers' intermediates are reused across layers as in the eager forward: the qkv GEMMs share a buffer.
    const qkv = recording.filter((c) => c.op === 'gemm' && c.args.n === 192).map((c) => buffer(c.args.c));
    expect(new Set(qkv).size).toBe(1);
    expect(recordCalls(() => enc.forward(x), true).map((c) => c.op)).toEqual(['runList']);
    expect(recordCalls(() => enc.forward(x)).map((c) => c.op)).toEqual([]);
  });
});
