/**
 * Checks the ops against PyTorch's outputs recorded in test/fixtures/ops.safetensors
 * (written by scripts/gen_fixtures.py), on every backend, and checks that the
 * module parity fixtures are well-formed for the module tests that consume them.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { loadSafetensors, type SafetensorsFile } from '../lib/io/safetensors';
import { add, embedding, gelu, layerNorm, linear, matmul, relu, softmax } from '../lib/ops';
import type { Tensor } from '../lib/tensor';
import { backends } from './helpers/backends';

const FIXTURES = join(__dirname, 'fixtures');


type F32 = Tensor<'float32'>;

/**
 * Element-wise closeness with tolerance 1e-5 · max|expected| (+1e-7 absolute, for
 * outputs that are all ~0). NaN must meet NaN and ±Infinity the same infinity,
 * since PyTorch's special values (masked rows, overflow) are part of parity.
 */
function expectClose(actual: Tensor, expected: Tensor, label: string): void {
  expect(actual.shape, `${label}: shape`).toEqual(expected.shape);
  let scale = 0;
  for (const v of expected.data) if (Number.isFinite(v)) scale = Math.max(scale, Math.abs(v));
  const tol = 1e-5 * scale + 1e-7;
  let worst = 0;
  let worstAt = -1;
  for (let i = 0; i < expected.data.length; i++) {
    const e = expected.data[i]!;
    const a = actual.data[i]!;
    if (Number.isNaN(e) || !Number.isFinite(e)) {
      if (!Object.is(a, e) && !(Number.isNaN(e) && Number.isNaN(a))) {
        throw new Error(`${label}: element ${i} is ${a}, PyTorch gives ${e}`);
      }
      continue;
    }
    const d = Math.abs(a - e);
    // `!(d <= worst)` also catches a NaN actual.
    if (!(d <= worst)) {
      worst = Number.isNaN(d) ? Infinity : d;
      worstAt = i;
    }
  }
  if (worst > tol) {
    throw new Error(
      `${label}: max abs error ${worst} at element ${worstAt} (got ${actual.data[worstAt]}, PyTorch ` +
        `${expected.data[worstAt]}) exceeds tolerance ${tol}`,
    );
  }
}

interface Case {
  op: string;
  name: string;
  params: Record<string, unknown>;
}

let ops: SafetensorsFile;
let cases: Case[] = [];

beforeAll(async () => {
  ops = await loadSafetensors(join(FIXTURES, 'ops.safetensors'));
  cases = Object.entries(ops.metadata)
    .filter(([k]) => /^[a-z_]+\.[a-z0-9_]+$/.test(k))
    .map(([k, v]) => {
      const [op, name] = k.split('.') as [string, string];
      return { op, name, params: JSON.parse(v) as Record<string, unknown> };
    });
});

const OPS = ['matmul', 'linear', 'softmax', 'layer_norm', 'relu', 'gelu', 'embedding', 'add'] as const;

describe.each(backends)('ops vs PyTorch (ops.safetensors), %s backend', (backend) => {
  const opts = { backend };

  function get(key: string): Tensor {
    const t = ops.tensors[key];
    if (t === undefined) throw new Error(`ops.safetensors has no tensor '${key}'`);
    return t;
  }
  const f = (key: string): F32 => get(key) as F32;
  const maybe = (key: string): F32 | undefined => ops.tensors[key] as F32 | undefined;

  function run(c: Case): Tensor {
    const p = `${c.op}.${c.name}.`;
    switch (c.op) {
      case 'matmul':
        return matmul(f(`${p}a`), f(`${p}b`), opts);
      case 'linear':
        return linear(f(`${p}x`), f(`${p}weight`), maybe(`${p}bias`) ?? null, opts);
      case 'softmax':
        return softmax(f(`${p}x`), c.params['dim'] as number, opts);
      case 'layer_norm':
        return layerNorm(
          f(`${p}x`),
          c.params['normalized_shape'] as number[],
          maybe(`${p}weight`) ?? null,
          maybe(`${p}bias`) ?? null,
          c.params['eps'] as number,
          opts,
        );
      case 'relu':
        return relu(f(`${p}x`), opts);
      case 'gelu':
        return gelu(f(`${p}x`), { ...opts, approximate: c.params['approximate'] as 'none' | 'tanh' });
      case 'embedding':
        return embedding(get(`${p}ids`) as Tensor<'int32'>, f(`${p}weight`), opts);
      case 'add':
        return add(f(`${p}a`), f(`${p}b`), opts);
      default:
        throw new Error(`unknown op '${c.op}' in ops.safetensors`);
    }
  }

  it('covers every op', () => {
    expect(new Set(cases.map((c) => c.op))).toEqual(new Set(OPS));
  });

  // The case list is only known after the file loads, so one test per op iterates its cases.
  it.each(OPS)('%s', (op) => {
    const mine = cases.filter((c) => c.op === op);
    expect(mine.length).toBeGreaterThan(0);
    for (const c of mine) expectClose(run(c), get(`${c.op}.${c.name}.out`), `${c.op}.${c.name}`);
  });
});

const MODULES = [
  'MultiheadAttention',
  'TransformerEncoderLayer',
  'TransformerDecoderLayer',
  'TransformerEncoder',
  'TransformerDecoder',
  'Transformer',
  'TransformerModel',
];

describe('module parity fixtures are well-formed', () => {
  const files = readdirSync(FIXTURES).filter(
    (n) => n.endsWith('.safetensors') && n !== 'ops.safetensors' && n !== 'dtypes.safetensors' && n !== 'rms_norm.safetensors' && n !== 'llama_ops.safetensors',
  );

  it('exist', () => {
    expect(files.length).toBeGreaterThanOrEqual(30);
  });

  it.each(files)('%s', async (name) => {
    const { tensors, metadata } = await loadSafetensors(join(FIXTURES, name));
    expect(MODULES).toContain(metadata['module']);
    expect(typeof JSON.parse(metadata['options']!)).toBe('object');
    const forward = JSON.parse(metadata['forward']!) as { inputs: string[] };
    expect(metadata['path']).toBe('math');
    const keys = Object.keys(tensors);
    expect(keys.filter((k) => k.startsWith('in.')).sort()).toEqual(forward.inputs.map((i) => `in.${i}`).sort());
    expect(keys.some((k) => k.startsWith('state.'))).toBe(true);
    expect(keys.some((k) => k.startsWith('out.'))).toBe(true);
    expect(keys.every((k) => /^(state|in|out|out_fastpath)\./.test(k))).toBe(true);
    // Token ids are stored as I64 by PyTorch and must arrive as int32.
    if (metadata['module'] === 'TransformerModel') {
      expect(tensors['in.src']!.dtype).toBe('int32');
      expect(tensors['state.embedding.weight']!.dtype).toBe('float32');
    }
  });
});
