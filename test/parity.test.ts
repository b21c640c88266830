/**
 * PyTorch parity: every module fixture in test/fixtures (written by
 * scripts/gen_fixtures.py with Debian's torch 1.13) is rebuilt here from its
 * metadata, loaded with PyTorch's own state dict, run on each backend, and
 * compared with PyTorch's outputs to 1e-4 of the output's largest magnitude.
 */
import { readdirSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import * as nn from '../lib/nn';
import { Tensor } from '../lib/tensor';
import { loadSafetensors } from '../lib/io/safetensors';
import { TransformerModel } from '../lib/cli/seed-model';
import type { BackendName } from '../lib/backend/backend';
import { backends } from './helpers/backends';

const dir = path.join(__dirname, 'fixtures');
const files = readdirSync(dir).filter((f) => f.endsWith('.safetensors') && f !== 'ops.safetensors' && f !== 'dtypes.safetensors' && f !== 'rms_norm.safetensors' && f !== 'llama_ops.safetensors');

const camel = (s: string): string => s.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
function camelKeys(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [camel(k), v]));
}

interface Case {
  module: nn.Module;
  run: () => Record<string, Tensor<'float32'> | null>;
}

function build(meta: Record<string, string>, inputs: Record<string, Tensor>): Case {
  const options = JSON.parse(meta.options!) as Record<string, unknown>;
  const forward = JSON.parse(meta.forward!) as { inputs: string[] } & Record<string, unknown>;
  const kwargs: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(forward)) if (k !== 'inputs') kwargs[camel(k)] = v;
  const named = (names: string[]): Tensor[] => names.map((n) => inputs[n]!);
  const extra = (positional: string[]): Record<string, unknown> => {
    const o: Record<string, unknown> = { ...kwargs };
    for (const n of forward.inputs) if (!positional.includes(n)) o[camel(n)] = inputs[n];
    return o;
  };
  const f32 = (t: Tensor): Tensor<'float32'> => t as Tensor<'float32'>;
  switch (meta.module) {
    case 'MultiheadAttention': {
      const m = new nn.MultiheadAttention(camelKeys(options) as never);
      const [q, k, v] = named(['query', 'key', 'value']).map(f32) as [Tensor<'float32'>, Tensor<'float32'>, Tensor<'float32'>];
      return {
        module: m,
        run: () => {
          const r = m.forward(q, k, v, extra(['query', 'key', 'value']) as never);
          return { attn_output: r.output, attn_weights: r.weights };
        },
      };
    }
    case 'TransformerEncoderLayer': {
      const m = new nn.TransformerEncoderLayer(camelKeys(options) as never).eval();
      return { module: m, run: () => ({ output: m.forward(f32(inputs.src!), extra(['src']) as never) }) };
    }
    case 'TransformerDecoderLayer': {
      const m = new nn.TransformerDecoderLayer(camelKeys(options) as never).eval();
      return { module: m, run: () => ({ output: m.forward(f32(inputs.tgt!), f32(inputs.memory!), extra(['tgt', 'memory']) as never) }) };
    }
    case 'TransformerEncoder':
    case 'TransformerDecoder': {
      const enc = meta.module === 'TransformerEncoder';
      const layer = camelKeys(options[enc ? 'encoder_layer' : 'decoder_layer'] as Record<string, unknown>);
      const stack = { layer: layer as never, numLayers: options.num_layers as number, norm: (options.norm ?? false) as never };
      if (enc) {
        const m = new nn.TransformerEncoder(stack).eval();
        return { module: m, run: () => ({ output: m.forward(f32(inputs.src!), extra(['src']) as never) }) };
      }
      const m = new nn.TransformerDecoder(stack).eval();
      return { module: m, run: () => ({ output: m.forward(f32(inputs.tgt!), f32(inputs.memory!), extra(['tgt', 'memory']) as never) }) };
    }
    case 'Transformer': {
      const m = new nn.Transformer(camelKeys(options) as never).eval();
      return { module: m, run: () => ({ output: m.forward(f32(inputs.src!), f32(inputs.tgt!), extra(['src', 'tgt']) as never) }) };
    }
    case 'TransformerModel': {
      const t = options.transformer as Record<string, number>;
      const m = new TransformerModel(options.vocab_size as number, t.d_model!, t.nhead!, t.num_encoder_layers!, t.num_decoder_layers!, t.dim_feedforward!).eval();
      return {
        module: m,
        run: () => ({ output: m.forward(inputs.src as Tensor<'int32'>, inputs.tgt as Tensor<'int32'>) }),
      };
    }
    default:
      throw new Error(`unknown fixture module ${meta.module}`);
  }
}

/** Max |a - b| over elements, NaN positions required to agree; relative to max |expected|. */
function compare(name: string, actual: Tensor<'float32'> | null, expected: Tensor): void {
  expect(actual, `${name} missing`).not.toBeNull();
  expect(actual!.shape, `${name} shape`).toEqual(expected.shape);
  const a = actual!.data;
  const e = expected.data as Float32Array;
  let scale = 0;
  for (let i = 0; i < e.length; i++) if (Number.isFinite(e[i]!)) scale = Math.max(scale, Math.abs(e[i]!));
  let worst = 0;
  for (let i = 0; i < e.length; i++) {
    if (Number.isNaN(e[i]!)) {
      expect(Number.isNaN(a[i]!), `${name}[${i}] should be NaN like PyTorch`).toBe(true);
      continue;
    }
    worst = Math.max(worst, Math.abs(a[i]! - e[i]!));
  }
  expect(worst / Math.max(scale, 1e-30), `${name}: max error ${worst} vs magnitude ${scale}`).toBeLessThanOrEqual(1e-4);
}

describe.each(backends)('PyTorch parity on the %s backend', (backend: BackendName) => {
  it.each(files)('%s', async (file) => {
    const { tensors, metadata } = await loadSafetensors(path.join(dir, file));
    const state: Record<string, Tensor> = {};
    const inputs: Record<string, Tensor> = {};
    const outputs: Record<string, Tensor> = {};
    for (const [k, t] of Object.entries(tensors)) {
      if (k.startsWith('state.')) state[k.slice(6)] = t;
      else if (k.startsWith('in.')) inputs[k.slice(3)] = t;
      else if (k.startsWith('out.')) outputs[k.slice(4)] = t;
    }
    const c = build(metadata, inputs);
    c.module.loadStateDict(state); // strict: PyTorch's keys must be exactly ours
    c.module.useBackend(backend).eval(); // the fixtures are PyTorch's eval-mode outputs
    const got = c.run();
    for (const [name, expected] of Object.entries(outputs)) compare(`${file}:${name}`, got[name] ?? null, expected);
  });
});
