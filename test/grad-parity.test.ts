/**
 * Gradient parity with PyTorch 1.13: every case in test/fixtures/grad
 * (scripts/gen_grad_fixtures.py) is rebuilt from its metadata, loaded with
 * PyTorch's state dict, run forward in eval mode, and backward from the same
 * output gradients (or through the same loss); the outputs, the gradient of
 * every parameter and of every float input must match PyTorch's to 1e-4 of
 * the largest magnitude, on each backend.
 */
import { readdirSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import * as nn from '../lib/nn';
import * as ops from '../lib/ops';
import '../lib/autograd/index';
import { Tensor } from '../lib/tensor';
import { loadSafetensors } from '../lib/io/safetensors';
import { TransformerModel } from '../lib/cli/seed-model';
import type { BackendName } from '../lib/backend/backend';
import { backends } from './helpers/backends';

type F32 = Tensor<'float32'>;

const dir = path.join(__dirname, 'fixtures', 'grad');
const files = readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort();

const camel = (s: string): string => s.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
const camelKeys = (o: Record<string, unknown>): Record<string, unknown> =>
  Object.fromEntries(Object.entries(o).map(([k, v]) => [camel(k), v]));

function compare(name: string, actual: Tensor | null | undefined, expected: Tensor): void {
  expect(actual, `${name} missing`).toBeTruthy();
  expect(actual!.shape, `${name} shape`).toEqual(expected.shape);
  const a = actual!.contiguous().data;
  const e = expected.data as Float32Array;
  let scale = 0;
  for (let i = 0; i < e.length; i++) scale = Math.max(scale, Math.abs(e[i]!));
  let worst = 0;
  for (let i = 0; i < e.length; i++) worst = Math.max(worst, Math.abs(a[i]! - e[i]!));
  expect(worst / Math.max(scale, 1e-30), `${name}: max error ${worst} vs magnitude ${scale}`).toBeLessThanOrEqual(1e-4);
}

/** The fixture's module, with its forward on our inputs returning the named outputs. */
function buildModule(name: string, options: Record<string, unknown>): nn.Module {
  const o = camelKeys(options) as never;
  switch (name) {
    case 'Linear':
      return new nn.Linear(o);
    case 'LayerNorm':
      return new nn.LayerNorm(o);
    case 'Embedding':
      return new nn.Embedding(o);
    case 'MultiheadAttention':
      return new nn.MultiheadAttention(o);
    case 'TransformerEncoderLayer':
      return new nn.TransformerEncoderLayer(o);
    case 'TransformerDecoderLayer':
      return new nn.TransformerDecoderLayer(o);
    default:
      throw new Error(`unknown module ${name}`);
  }
}

function runModule(name: string, m: nn.Module, args: Tensor[], kwargs: Record<string, unknown>): Record<string, F32> {
  const call = (m as unknown as { forward: (...a: unknown[]) => unknown }).forward.bind(m);
  if (name === 'MultiheadAttention') {
    const r = call(args[0], args[1], args[2], kwargs) as { output: F32; weights: F32 | null };
    return r.weights ? { attn_output: r.output, attn_weights: r.weights } : { attn_output: r.output };
  }
  if (name === 'TransformerEncoderLayer') return { output: call(args[0], kwargs) as F32 };
  if (name === 'TransformerDecoderLayer') return { output: call(args[0], args[1], kwargs) as F32 };
  return { output: call(args[0]) as F32 };
}

describe.each(backends)('gradients match PyTorch on the %s backend', (backend: BackendName) => {
  it.each(files)('%s', async (file) => {
    const { tensors, metadata } = await loadSafetensors(path.join(dir, file));
    const pick = (prefix: string): Record<string, Tensor> =>
      Object.fromEntries(Object.entries(tensors).filter(([k]) => k.startsWith(prefix)).map(([k, t]) => [k.slice(prefix.length), t]));
    const state = Object.fromEntries(Object.entries(pick('state.')).map(([k, t]) => [k, t.clone()]));
    const inputs = pick('in.');
    const gradState = pick('grad.state.');
    const gradIn = pick('grad.in.');
    const positional = JSON.parse(metadata.inputs!) as string[];
    // Float inputs PyTorch differentiated require grad here too (fresh copies: one per backend run).
    const leaves: Record<string, Tensor> = {};
    for (const [k, t] of Object.entries(inputs)) leaves[k] = k in gradIn ? (t as F32).clone().requiresGrad_() : t;

    let module: nn.Module | null = null;
    if (metadata.kind === 'module') {
      module = buildModule(metadata.module!, JSON.parse(metadata.options!) as Record<string, unknown>);
      module.loadStateDict(state);
      module.useBackend(backend).eval();
      const fwd = JSON.parse(metadata.forward!) as Record<string, unknown>;
      const kwargs = Object.fromEntries(Object.entries(fwd).map(([k, v]) =>
        [camel(k), typeof v === 'string' && v.startsWith('in.') ? leaves[v.slice(3)] : v]));
      const outs = runModule(metadata.module!, module, positional.map((n) => leaves[n]!), kwargs);
      const outputs = JSON.parse(metadata.outputs!) as string[];
      for (const k of outputs) compare(`${file}: out.${k}`, outs[k], tensors[`out.${k}`]!);
      // Backward from PyTorch's output gradients: loss = Σ output · gout, summed over the outputs.
      let loss: F32 | null = null;
      for (const k of outputs) {
        const term = ops.sum(ops.mul(outs[k]!, tensors[`gout.${k}`] as F32, { backend }), null, { backend });
        loss = loss ? ops.add(loss, term, { backend }) : term;
      }
      loss!.backward();
    } else {
      const spec = JSON.parse(metadata.loss!) as { kind: string; options: Record<string, unknown>; layout: string };
      let input: F32;
      if (metadata.module === 'SeedModel') {
        const o = JSON.parse(metadata.options!) as Record<string, number>;
        const seed = new TransformerModel(o.vocab!, o.d_model!, o.nhead!, o.enc!, o.dec!, o.ff!);
        seed.loadStateDict(state);
        seed.useBackend(backend).eval();
        module = seed;
        const out = seed.forward(leaves.src as Tensor<'int32'>, leaves.tgt as Tensor<'int32'>);
        input = spec.layout === 'flat' ? out.reshape(-1, out.shape[2]!) : out.permute(1, 2, 0);
      } else {
        input = leaves.input as F32;
      }
      const lossOpts = { ...camelKeys(spec.options), backend } as Record<string, unknown>;
      delete lossOpts.weight;
      const loss = spec.kind === 'cross_entropy'
        ? ops.crossEntropy(input, leaves.target as Tensor<'int32'>, { ...lossOpts, weight: (inputs.weight as F32 | undefined) ?? null })
        : ops.mseLoss(input, leaves.target as F32, lossOpts);
      compare(`${file}: loss`, loss, tensors.loss!);
      const gout = tensors['gout.loss'] as F32;
      if (loss.ndim === 0) ops.mul(loss, gout, { backend }).backward();
      else loss.backward(gout);
    }
    for (const [k, g] of Object.entries(gradIn)) compare(`${file}: grad of input ${k}`, leaves[k]!.grad, g);
    if (module) {
      const params = Object.fromEntries(module.namedParameters());
      for (const [k, g] of Object.entries(gradState)) {
        const p = params[k];
        expect(p, `${file}: parameter ${k}`).toBeDefined();
        compare(`${file}: grad of ${k}`, p!.grad, g);
      }
    }
  });
});
