/**
 * Bad inputs fail fast with the right class (TypeError for the wrong kind of
 * value, RangeError for a wrong shape or value) and a message naming the
 * argument and the shapes involved.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import * as ops from '../lib/ops';
import { arange, randn, tensor, zeros } from '../lib/tensor';
import type { Tensor } from '../lib/tensor';
import { checkInt, checkShape, describeValue, normalizeDim } from '../lib/errors';

/** Asserts that fn throws exactly `cls` with a message containing every fragment. */
function expectThrow(fn: () => unknown, cls: typeof TypeError | typeof RangeError | typeof Error, ...parts: string[]) {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a throw').toBeInstanceOf(Error);
  expect((err as Error).constructor).toBe(cls);
  for (const p of parts) expect((err as Error).message).toContain(p);
}

const f32 = (shape: number[]): Tensor<'float32'> => zeros(shape);

describe('message format', () => {
  it('matmul inner-dim mismatch reads exactly as documented', () => {
    expect(() => ops.matmul(f32([4, 768]), f32([512, 3]))).toThrow(
      new RangeError("matmul: argument 'b' must have shape [..., 768, N] matching a's last dim 768, got [512, 3]"),
    );
  });

  it('describeValue summarises values for the "got" part', () => {
    expect(describeValue(f32([2, 3]))).toBe('Tensor(float32, [2, 3])');
    expect(describeValue([1, 2])).toBe('[1, 2]');
    expect(describeValue('x')).toBe('"x"');
    expect(describeValue(new Float32Array(4))).toBe('Float32Array(4)');
    expect(describeValue(null)).toBe('null');
  });
});

describe('ops argument errors', () => {
  it('matmul', () => {
    expectThrow(() => ops.matmul(f32([2, 3]), f32([4])), RangeError, "'b'", '[3]', 'got [4]');
    expectThrow(() => ops.matmul(f32([2, 3, 4]), f32([5, 4, 2])), RangeError, "'b'", '[2]', '[5]');
    expectThrow(() => ops.matmul(f32([2, 3]), f32([2, 3]), { transB: true, out: f32([3, 3]) }), RangeError, "'out'",
      '[2, 2]', 'got [3, 3]');
    expectThrow(() => ops.matmul(f32([]), f32([3])), RangeError, "'a'", '1-D');
    expectThrow(() => ops.matmul([1, 2] as unknown as Tensor<'float32'>, f32([2])), TypeError, "'a'", 'Tensor');
    expectThrow(() => ops.matmul(zeros([2, 2], 'int32') as unknown as Tensor<'float32'>, f32([2, 2])), TypeError,
      "'a'", 'float32', 'Tensor(int32, [2, 2])');
    const a = f32([2, 2]);
    expectThrow(() => ops.matmul(a, f32([2, 2]), { out: a }), RangeError, "'out'", "'a'");
    expectThrow(() => ops.matmul(a, a, { out: zeros([2, 2], 'int32') as unknown as Tensor<'float32'> }), TypeError,
      "'out'");
    expectThrow(() => ops.matmul(a, a, { backend: 'gpu' as 'js' }), TypeError, "'name'", 'gpu');
  });

  it('linear', () => {
    expectThrow(() => ops.linear(f32([5, 7]), f32([4, 6])), RangeError, "'x'", '[..., 6]', 'got [5, 7]');
    expectThrow(() => ops.linear(f32([5, 7]), f32([7])), RangeError, "'weight'", 'got [7]');
    expectThrow(() => ops.linear(f32([5, 7]), f32([4, 7]), f32([5])), RangeError, "'bias'", '[4]', 'got [5]');
    expectThrow(() => ops.linear(f32([5, 7]), f32([4, 7]), null, { activation: 'tanh' as 'relu' }), TypeError,
      "'activation'", '"tanh"');
  });

  it('softmax / layerNorm', () => {
    expectThrow(() => ops.softmax(f32([2, 3]), 2), RangeError, "'dim'", '[-2, 1]', 'got 2');
    expectThrow(() => ops.softmax(f32([2, 3]), 0.5), RangeError, "'dim'", 'integer');
    expectThrow(() => ops.layerNorm(f32([2, 3]), 4), RangeError, "'normalizedShape'", '[2, 3]', 'got [4]');
    expectThrow(() => ops.layerNorm(f32([2, 3]), [2, 3, 1]), RangeError, "'normalizedShape'");
    expectThrow(() => ops.layerNorm(f32([2, 3]), 3, f32([2])), RangeError, "'weight'", '[3]', 'got [2]');
    expectThrow(() => ops.layerNorm(f32([2, 3]), 3, null, f32([3, 1])), RangeError, "'bias'", 'got [3, 1]');
    expectThrow(() => ops.layerNorm(f32([2, 3]), 3, null, null, -1), RangeError, "'eps'");
  });

  it('element-wise', () => {
    expectThrow(() => ops.add(f32([2, 3]), f32([4])), RangeError, "'b'", '[2, 3]', 'got [4]');
    expectThrow(() => ops.mul(f32([2, 3]), '2' as unknown as number), TypeError, "'b'", '"2"');
    expectThrow(() => ops.gelu(f32([2]), { approximate: 'erf' as 'none' }), TypeError, "'approximate'", '"erf"');
    expectThrow(() => ops.relu(f32([2]), { out: f32([3]) }), RangeError, "'out'", '[2]', 'got [3]');
    // out sharing memory with a broadcast operand would read values it already overwrote.
    const buf = new Float32Array(6);
    expectThrow(() => ops.add(f32([2, 3]), tensor(buf.subarray(0, 3)), { out: tensor(buf, [2, 3]) }),
      RangeError, "'out'", "input 'b'");
    expectThrow(() => ops.add(f32(Array(10).fill(2)), 1), RangeError, 'at most 8');
  });

  it('embedding names the position and value of a bad id', () => {
    const w = f32([10, 4]);
    expectThrow(() => ops.embedding(tensor([1, 10, 3], null, 'int32'), w), RangeError, "'ids'", '[0, 10)',
      'got 10 at position 1');
    expectThrow(() => ops.embedding(tensor([[1, 2], [3, -1]], null, 'int32'), w), RangeError, "'ids'",
      'got -1 at position [1, 1]');
    expectThrow(() => ops.embedding(tensor([1, 2]) as unknown as Tensor<'int32'>, w), TypeError, "'ids'", 'int32');
    expectThrow(() => ops.embedding(tensor([1], null, 'int32'), f32([10])), RangeError, "'weight'", 'got [10]');
  });

  it('heads and transpose', () => {
    expectThrow(() => ops.splitHeads(f32([2, 5, 12]), 5), RangeError, "'x'", 'numHeads 5', 'got [2, 5, 12]');
    expectThrow(() => ops.splitHeads(f32([5, 12]), 3), RangeError, "'x'", 'got [5, 12]');
    expectThrow(() => ops.splitHeads(f32([1, 5, 12]), 0), RangeError, "'numHeads'");
    expectThrow(() => ops.mergeHeads(f32([2, 3, 4])), RangeError, "'x'", 'got [2, 3, 4]');
    expectThrow(() => ops.transpose(f32([2, 3]), 0, 2), RangeError, "'dim1'", 'got 2');
  });
});

describe('tensor argument errors', () => {
  it('shapes', () => {
    expectThrow(() => zeros([2, -1]), RangeError, "'shape'", 'entry 1');
    expectThrow(() => zeros([2, 1.5]), RangeError, "'shape'");
    expectThrow(() => zeros(['2'] as unknown as number[]), TypeError, "'shape'");
    expectThrow(() => zeros([2 ** 16, 2 ** 16]), RangeError, "'shape'", '2147483647');
    expectThrow(() => tensor([1, 2, 3], [2, 2]), RangeError, "'shape'", '3 elements', '[2, 2]');
    expectThrow(() => tensor([[1, 2], [3]]), RangeError, "'data'", '[1]');
    expectThrow(() => tensor([1, 'x'] as unknown as number[]), TypeError, "'data'", 'element 1');
    expectThrow(() => tensor(new Float32Array(4), null, 'int32'), TypeError, "'data'", 'Int32Array', 'Float32Array(4)');
    expectThrow(() => arange(5).reshape(2, -1), RangeError, "'shape'", '[2, -1]', '[5]');
    expectThrow(() => arange(6).reshape(2, 2), RangeError, "'shape'", '[2, 2]', '[6]');
    expectThrow(() => arange(6).get(6), RangeError, "'index[0]'", 'got 6');
    expectThrow(() => randn([2], { seed: NaN }), RangeError, "'seed'");
  });

  it('helpers', () => {
    expect(checkShape('f', 's', [2, 0, 3])).toBe(0);
    expect(checkInt('f', 'n', 3, 0, 5)).toBe(3);
    expectThrow(() => checkInt('f', 'n', 6, 0, 5), RangeError, "f: argument 'n' must be an integer in [0, 5], got 6");
    expectThrow(() => checkInt('f', 'n', '1'), TypeError, "'n'");
    expect(normalizeDim('f', 'dim', -1, 3)).toBe(2);
  });
});

describe('backend registry', () => {
  afterEach(() => {
    vi.restoreAllMocks();
    vi.unstubAllEnvs();
  });

  // A fresh copy of the registry per test, so native registration elsewhere does not leak in.
  async function freshRegistry(): Promise<typeof import('../lib/backend/registry')> {
    vi.resetModules();
    return import('../lib/backend/registry');
  }

  it('without native: js is the default and asking for native says why', async () => {
    const reg = await freshRegistry();
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    reg.setNativeLoadError(new Error('no addon for linux-riscv'));
    expect(reg.availableBackends()).toEqual(['js']);
    expectThrow(() => reg.getBackend('native'), Error, "backend 'native' is not available", 'linux-riscv');
    expect(reg.getBackend().name).toBe('js');
    expect(reg.getBackend().name).toBe('js');
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0]![0])).toContain('linux-riscv');
    expectThrow(() => reg.setBackend('native'), Error, 'linux-riscv');
  });

  it('native becomes the default once registered; setBackend and ATTNODE_BACKEND override', async () => {
    const reg = await freshRegistry();
    const fake = { ...reg.getBackend('js'), name: 'native' as const };
    reg.registerBackend(fake);
    expect(reg.getBackend()).toBe(fake);
    expect(reg.availableBackends()).toEqual(['native', 'js']);
    reg.setBackend('js');
    expect(reg.getBackend().name).toBe('js');
    reg.setBackend(null);
    expect(reg.getBackend()).toBe(fake);
    vi.stubEnv('ATTNODE_BACKEND', 'js');
    expect(reg.getBackend().name).toBe('js');
    vi.stubEnv('ATTNODE_BACKEND', 'cuda');
    expectThrow(() => reg.getBackend(), RangeError, 'ATTNODE_BACKEND', 'cuda');
    expectThrow(() => reg.registerBackend({} as never), TypeError, "'backend'");
  });

  it('ops accept a Backend object and route every call to it', async () => {
    const { getBackend } = await import('../lib/backend/registry');
    const js = getBackend('js');
    const calls: string[] = [];
    const spy = { ...js, gemm: (a: Parameters<typeof js.gemm>[0]) => (calls.push('gemm'), js.gemm(a)) };
    ops.matmul(f32([2, 2]), f32([2, 2]), { backend: spy });
    expect(calls).toEqual(['gemm']);
  });
});
