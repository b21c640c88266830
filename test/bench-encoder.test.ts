import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  CPU_MARGIN, compareOutputs, forwardFlops, parseCpuinfo, procCpuMs, ratio, stats, summarise, type Block,
} from '../bench/honest';
import { caseRatios, renderEncoderMarkdown, TARGETS, type EncoderCaseResult, type EncoderRun } from '../bench/encoder-report';

const block = (round: number, ms: number[], cpuPerWall: number): Block => {
  const wallMs = ms.reduce((s, x) => s + x, 0);
  return { round, ms, cpuMs: wallMs * cpuPerWall, wallMs, idleCpuMs: 0, spinMs: 0, load1: 1 };
};

describe('bench/honest: which runs count', () => {
  it('nearest-rank statistics', () => {
    expect(stats([5, 1, 3, 2, 4])).toEqual({ n: 5, median: 3, p10: 1, p90: 5, min: 1 });
    expect(stats([4, 2]).median).toBe(3);
    expect(() => stats([])).toThrow(RangeError);
  });

  it('flags a run whose CPU/wall exceeds its thread count by more than the margin', () => {
    const ok = summarise('ort', 2, [block(0, [10, 10], 2 + CPU_MARGIN - 0.01)], null, null);
    expect(ok.flags).toEqual([]);
    expect(ok.cpuPerWall).toBeCloseTo(2.29, 6);
    const over = summarise('torch', 1, [block(0, [10, 10], 1.9), block(1, [10], 1.9)], null, null);
    expect(over.flags).toHaveLength(1);
    expect(over.flags[0]).toMatch(/CPU\/wall 1\.90 > 1 threads/);
    expect(over.cpuMsPerRun).toBeCloseTo(19, 6);
  });

  it('flags float32 work faster than the measured FMA peak times its threads (with 10% slack), not int8', () => {
    // 2 GFLOP in 10 ms = 200 GFLOP/s; peak 117 per core.
    const one = summarise('torch', 1, [block(0, [10], 1)], 2e9, 117);
    expect(one.gflops).toBeCloseTo(200, 6);
    expect(one.peakFraction).toBeCloseTo(200 / 117, 6);
    expect(one.flags.join()).toMatch(/171% of 1 × the measured FMA peak/);
    const two = summarise('torch', 2, [block(0, [10], 1)], 2e9, 117);
    expect(two.flags).toEqual([]); // 85% of 2 × 117
    const int8 = summarise('ort-int8', 1, [block(0, [10], 1)], 2e9, null);
    expect(int8.flags).toEqual([]);
    expect(int8.peakFraction).toBeNull();
  });

  it('a ratio leaves out flagged peers and keeps per-round ratios', () => {
    const a = summarise('attnode', 1, [block(0, [8, 8, 8], 1), block(1, [9, 9, 9], 1)], null, null);
    const b = summarise('ort', 1, [block(0, [10, 10, 10], 1), block(1, [10, 10, 10], 1)], null, null);
    const r = ratio(a, b, 'attnode', 'ort', 0.85);
    expect(r.value).toBeCloseTo(8.5 / 10, 9);
    expect(r.perRound!.median).toBeCloseTo(0.85, 9);
    expect(r.perRound!.min).toBeCloseTo(0.8, 9);
    expect(r.perRound!.max).toBeCloseTo(0.9, 9);
    const flagged = summarise('ort', 1, [block(0, [10], 1.5)], null, null);
    const rf = ratio(a, flagged, 'attnode', 'ort', 0.85);
    expect(rf.value).toBeNull();
    expect(rf.excluded).toBe('left out: ort flagged');
    expect(ratio(a, undefined, 'attnode', 'ort', 0.85).excluded).toBe('ort not measured');
  });

  it('targets follow issue 18 by case group', () => {
    const a = summarise('attnode', 1, [block(0, [7], 1)], null, null);
    const o = summarise('ort', 1, [block(0, [10], 1)], null, null);
    const i8 = summarise('attnode-int8', 1, [block(0, [4], 1)], null, null);
    const oi8 = summarise('ort-int8', 1, [block(0, [5], 1)], null, null);
    const enc = caseRatios('encoder-layer', { attnode: a, ort: o, 'attnode-int8': i8, 'ort-int8': oi8 });
    expect(enc.find((r) => r.num === 'attnode' && r.den === 'ort')!.target).toBe(TARGETS.encoder);
    expect(enc.find((r) => r.num === 'attnode-int8' && r.den === 'ort')!.target).toBe(0.45);
    expect(enc.find((r) => r.num === 'attnode-int8' && r.den === 'ort')!.value).toBeCloseTo(0.4, 9);
    expect(enc.find((r) => r.num === 'attnode-int8' && r.den === 'ort-int8')!.target).toBe(0.8);
    expect(enc.find((r) => r.num === 'attnode-int8' && r.den === 'ort-int8')!.value).toBeCloseTo(0.8, 9);
    expect(enc.some((r) => r.den === 'ort-int8pc')).toBe(false); // not measured: no row
    const mha = caseRatios('long-attention', { attnode: a, ort: o });
    expect(mha.find((r) => r.num === 'attnode' && r.den === 'ort')!.target).toBe(0.7);
    expect(mha.some((r) => r.num === 'attnode-int8')).toBe(false);
  });
});

describe('bench/honest: work, accuracy, CPU', () => {
  it('counts a BERT-base layer and an MHA call', () => {
    const t = 128;
    const d = 768;
    const layer = 2 * t * d * 3 * d + 2 * t * d * d + 4 * t * t * d + 4 * t * d * 3072;
    expect(forwardFlops({ kind: 'encoder_layer', batch: 1, seq: 128, dModel: 768, dimFeedforward: 3072 })).toBe(layer);
    expect(forwardFlops({ kind: 'encoder', batch: 1, seq: 128, dModel: 768, dimFeedforward: 3072, numLayers: 6 })).toBe(6 * layer);
    const s = 4096;
    expect(forwardFlops({ kind: 'mha', batch: 1, seq: s, dModel: 512 })).toBe(2 * s * 512 * 1536 + 2 * s * 512 * 512 + 4 * s * s * 512);
    expect(() => forwardFlops({ kind: 'encoder_layer', batch: 1, seq: 1, dModel: 8 })).toThrow(RangeError);
  });

  it('cosine and relative difference, NaN kept visible', () => {
    expect(compareOutputs([1, 2, 3], [1, 2, 3])).toEqual({ cosine: 1, rel: 0, maxAbsDiff: 0 });
    const c = compareOutputs([1, 0], [0, 1]);
    expect(c.cosine).toBe(0);
    expect(c.rel).toBe(1);
    expect(compareOutputs([Number.NaN, 1], [1, 1]).maxAbsDiff).toBeNaN();
    expect(() => compareOutputs([1], [1, 2])).toThrow(RangeError);
  });

  it('names the CPU from cpuid family and model', () => {
    const info = (vendor: string, fam: number, model: number, name: string): string =>
      `processor\t: 0\nvendor_id\t: ${vendor}\ncpu family\t: ${fam}\nmodel\t\t: ${model}\nmodel name\t: ${name}\n`;
    expect(parseCpuinfo(info('AuthenticAMD', 25, 17, 'AMD EPYC'))).toMatchObject({ slug: 'zen4', uarch: 'zen4', family: 25, model: 17, modelName: 'AMD EPYC' });
    expect(parseCpuinfo(info('AuthenticAMD', 25, 1, 'AMD EPYC 7763')).slug).toBe('zen3');
    expect(parseCpuinfo(info('AuthenticAMD', 26, 2, 'AMD EPYC 9755')).slug).toBe('zen5');
    expect(parseCpuinfo(info('GenuineIntel', 6, 143, 'Intel Xeon Platinum 8480+'))).toMatchObject({ slug: 'cpu-f6m143', uarch: null });
    expect(parseCpuinfo('').slug).toBe('cpu-unknown');
  });

  it.skipIf(!fs.existsSync('/proc/self/stat'))('reads a process CPU time from /proc (Linux only)', () => {
    const before = procCpuMs(process.pid)!;
    // Spin until this process has used 100 ms of CPU by its own account (on a loaded machine that takes longer
    // than 100 ms of wall time); /proc counts in 10 ms ticks.
    const c0 = process.cpuUsage();
    let x = 0;
    while ((process.cpuUsage(c0).user + process.cpuUsage(c0).system) / 1000 < 100) x += Math.sqrt(x + 1);
    expect(x).toBeGreaterThan(0);
    expect(procCpuMs(process.pid)! - before).toBeGreaterThanOrEqual(80);
    expect(procCpuMs(2 ** 30)).toBeNull();
  });
});

describe('bench/encoder-report', () => {
  const run: EncoderRun = {
    date: '2026-12-07', mode: 'quick', cpu: parseCpuinfo('vendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\n'),
    logicalCpus: 2, fmaPeak: { start: 117.2, end: 116.8 }, load: { start: [1, 1, 1], end: [1, 1, 1] }, command: 'npm run bench:encoder',
    versions: { node: 'v20' }, env: {}, rounds: 2, blockMs: 300, threads: [1], notes: [],
  };
  const a = summarise('attnode', 1, [block(0, [8], 1), block(1, [8], 1)], 0.5e9, 117);
  const o = summarise('ort', 1, [block(0, [10], 1), block(1, [10], 1)], 0.5e9, 117);
  const t = summarise('torch', 1, [block(0, [9], 1.8), block(1, [9], 1.8)], 0.5e9, 117);
  const oi = summarise('ort-int8', 1, [block(0, [5], 1), block(1, [5], 1)], 0.5e9, null);
  const c: EncoderCaseResult = {
    id: 'layer-gelu-b1s128', group: 'encoder-layer', description: 'encoder layer', byThreads: [{
      threads: 1, peers: { attnode: a, ort: o, torch: t, 'ort-int8': oi },
      unavailable: { 'attnode-int8': "useWeightPrecision('int8'): argument 'precision' must be 'float32' or 'bfloat16', got int8" },
      checks: { 'ort-int8': { cosine: 0.99998, rel: 6.4e-3 } }, info: {},
      ratios: caseRatios('encoder-layer', { attnode: a, ort: o, torch: t, 'ort-int8': oi }),
    }],
  };
  const md = renderEncoderMarkdown(run, [c]);

  it('names the CPU and the measured peak', () => {
    expect(md).toMatch(/AMD EPYC \(AuthenticAMD, family 25 model 17: zen4\)/);
    expect(md).toMatch(/117\.2 GFLOP\/s at the start, 116\.8 at the end/);
  });

  it('marks the ratio against its target and leaves the flagged peer out', () => {
    expect(md).toContain('0.80× ✓');
    expect(md).toContain('8.00 / 10.0 = 0.80×'); // CPU ms per pass
    expect(md).toMatch(/left out \(torch flagged\)/);
    expect(md).toMatch(/layer-gelu-b1s128, 1T, torch: CPU\/wall 1\.80 > 1 threads/);
  });

  it('shows the int8 peer that does not exist yet as not available, with the reason', () => {
    expect(md).toMatch(/## int8 weights/);
    expect(md).toMatch(/\| layer-gelu-b1s128 \| 1 \| not available \| 5\.00/);
    expect(md).toMatch(/- not available: attnode-int8: useWeightPrecision\('int8'\)/);
    expect(md).toContain('0.99998');
    expect(md).toContain('0.50×'); // ort int8 / ort fp32
  });

  it('judges attnode-int8 accuracy against cosine 0.999', () => {
    const withInt8 = (cosine: number): string => {
      const i8 = summarise('attnode-int8', 1, [block(0, [4], 1)], 0.5e9, null);
      const t = { ...c.byThreads[0]!, peers: { ...c.byThreads[0]!.peers, 'attnode-int8': i8 }, unavailable: {},
        checks: { ...c.byThreads[0]!.checks, 'attnode-int8': { cosine, rel: 1e-2 } } };
      t.ratios = caseRatios('encoder-layer', t.peers);
      return renderEncoderMarkdown(run, [{ ...c, byThreads: [t] }]);
    };
    expect(withInt8(0.9995)).toContain('0.99950 ✓');
    expect(withInt8(0.9985)).toContain('0.99850 ✗');
    expect(withInt8(0.9995)).toContain('0.80× ✓'); // 4 ms / ort-int8 5 ms, target 0.8
    expect(withInt8(0.9995)).toContain('0.40× ✓'); // 4 ms / ort fp32 10 ms, target 0.45
  });
});

// ---------------------------------------------------------------------------------------------------------------
// scripts/quantize_onnx_dynamic.py on a tiny graph

const PY = '/usr/bin/python3';
const hasOnnx = fs.existsSync(PY) && spawnSync(PY, ['-c', 'import onnx, numpy'], { encoding: 'utf8' }).status === 0;
const SCRIPT = path.resolve(__dirname, '..', 'scripts', 'quantize_onnx_dynamic.py');

describe('scripts/quantize_onnx_dynamic.py', () => {
  it.skipIf(!hasOnnx)('rewrites weight MatMuls and Gemms as quantize_dynamic does, leaves activation MatMuls float (needs python3-onnx)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'attnode-q8-'));
    try {
      const src = path.join(dir, 'tiny.onnx');
      const make = `
import numpy as np, onnx
from onnx import helper, numpy_helper, TensorProto as T
rng = np.random.default_rng(3)
w1 = rng.standard_normal((8, 6)).astype(np.float32); w1[:, 2] = 0
wg = rng.standard_normal((6, 6)).astype(np.float32)
bg = rng.standard_normal(6).astype(np.float32)
nodes = [helper.make_node('MatMul', ['x', 'w1'], ['h'], 'mm1'),
         helper.make_node('Gemm', ['h', 'wg', 'bg'], ['g'], 'gemm', transB=1),
         helper.make_node('Transpose', ['g'], ['gt'], 'tr'),
         helper.make_node('MatMul', ['g', 'gt'], ['y'], 'mm_act')]
g = helper.make_graph(nodes, 'tiny', [helper.make_tensor_value_info('x', T.FLOAT, [4, 8])],
                      [helper.make_tensor_value_info('y', T.FLOAT, [4, 4])],
                      [numpy_helper.from_array(w1, 'w1'), numpy_helper.from_array(wg, 'wg'), numpy_helper.from_array(bg, 'bg')])
m = helper.make_model(g, opset_imports=[helper.make_opsetid('', 17)])
onnx.save(m, ${JSON.stringify(src)})
`;
      expect(spawnSync(PY, ['-c', make], { encoding: 'utf8' }).status).toBe(0);
      for (const pc of [false, true]) {
        const dst = path.join(dir, pc ? 'tiny.int8pc.onnx' : 'tiny.int8.onnx');
        const r = spawnSync(PY, [SCRIPT, '--input', src, '--output', dst, ...(pc ? ['--per-channel'] : [])], { encoding: 'utf8' });
        expect(r.stderr).toBe('');
        expect(r.status).toBe(0);
        const inspect = `
import json, numpy as np, onnx
from onnx import numpy_helper
m = onnx.load(${JSON.stringify(dst)})
src = onnx.load(${JSON.stringify(src)})
w = {i.name: numpy_helper.to_array(i) for i in src.graph.initializer}
q = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
out = {'ops': [n.op_type for n in m.graph.node], 'inits': sorted(q), 'props': {p.key: p.value for p in m.metadata_props}}
s1 = q['w1_scale']; q1 = q['w1_quantized']
out['w1_dtype'] = str(q1.dtype); out['w1_scale_shape'] = list(s1.shape)
absmax = np.abs(w['w1']).max(axis=0) if ${pc ? 'True' : 'False'} else np.abs(w['w1']).max()
exp_scale = np.where(absmax > 0, absmax / np.float32(127), np.float32(1)).astype(np.float32)
out['scale_ok'] = bool(np.array_equal(s1, exp_scale))
out['q_ok'] = bool(np.array_equal(q1, np.clip(np.rint(w['w1'] / exp_scale), -127, 127).astype(np.int8)))
out['q_max'] = int(np.abs(q1).max())
out['zp_zero'] = bool((q['w1_zero_point'] == 0).all()) and str(q['w1_zero_point'].dtype) == 'int8'
out['gemm_weight_T'] = bool(np.allclose(q['wg_T_scale'] * q['wg_T_quantized'].astype(np.float32), w['wg'].T, atol=float(np.abs(w['wg']).max()) / 127))
onnx.checker.check_model(m)
print(json.dumps(out))
`;
        const j = JSON.parse(spawnSync(PY, ['-c', inspect], { encoding: 'utf8' }).stdout) as {
          ops: string[]; inits: string[]; props: Record<string, string>; w1_dtype: string; w1_scale_shape: number[];
          scale_ok: boolean; q_ok: boolean; q_max: number; zp_zero: boolean; gemm_weight_T: boolean;
        };
        // mm1 and the Gemm's MatMul quantized (x and h each quantized once), the Gemm's bias a float Add, the
        // activation × activation MatMul left float.
        expect(j.ops).toEqual([
          'DynamicQuantizeLinear', 'MatMulInteger', 'Cast', 'Mul', 'Mul',
          'DynamicQuantizeLinear', 'MatMulInteger', 'Cast', 'Mul', 'Mul', 'Add',
          'Transpose', 'MatMul',
        ]);
        expect(j.inits).not.toContain('w1'); // the float weights are gone
        expect(j.w1_dtype).toBe('int8');
        expect(j.w1_scale_shape).toEqual(pc ? [6] : []);
        expect(j.scale_ok).toBe(true);
        expect(j.q_ok).toBe(true);
        expect(j.q_max).toBe(127);
        expect(j.zp_zero).toBe(true);
        expect(j.gemm_weight_T).toBe(true);
        const props = JSON.parse(j.props['attnode.quantization']!) as Record<string, unknown>;
        expect(props).toMatchObject({ per_channel: pc, weight_type: 'QInt8', matmul_quantized: 2, matmul_float: 1, gemm_replaced: 1 });
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it.skipIf(!hasOnnx)('refuses unknown cases and missing inputs with a message (needs python3-onnx)', () => {
    const r = spawnSync(PY, [SCRIPT, '--cases', 'no-such-case'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/unknown: no-such-case/);
    const m = spawnSync(PY, [SCRIPT, '--input', '/nonexistent.onnx', '--output', '/tmp/x.onnx'], { encoding: 'utf8' });
    expect(m.status).toBe(1);
    expect(m.stderr).toMatch(/nonexistent\.onnx: not found/);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// a peer's process (bench/peers/child.ts) on a real case, when its model files are there

const ROOT = path.resolve(__dirname, '..');
const CASE = 'layer-gelu-b1s128';
const caseFiles = ['bench/models/bert-layer-gelu.safetensors', `bench/models/${CASE}.io.safetensors`].map((f) => path.join(ROOT, f));
const haveCase = caseFiles.every((f) => fs.existsSync(f));
const tsxCli = path.join(ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs');

function child(peer: string, threads: string, input: string): { lines: Record<string, unknown>[]; status: number | null } {
  const r = spawnSync(process.execPath, [tsxCli, path.join(ROOT, 'bench', 'peers', 'child.ts'), peer, CASE, threads],
    { cwd: ROOT, input, encoding: 'utf8', timeout: 120_000 });
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  return { lines, status: r.status };
}

describe('bench/peers/child.ts', () => {
  it.skipIf(!haveCase)(`runs attnode in its own process and reports CPU and wall time per block (needs bench/models/${CASE}.*: scripts/export_bench_models.py)`, () => {
    const { lines, status } = child('attnode', '1', '{"cmd":"run","reps":3}\n{"cmd":"quit"}\n');
    expect(status).toBe(0);
    const [ready, run] = lines as [Record<string, unknown>, { ok: boolean; ms: number[]; cpuMs: number; wallMs: number }];
    expect(ready).toMatchObject({ ok: true, ready: true, peer: 'attnode', case: CASE, threads: 1 });
    const check = ready.check as { cosine: number; rel: number };
    expect(check.rel).toBeLessThan(1e-5);
    expect(check.cosine).toBeGreaterThan(0.999999);
    expect(run.ok).toBe(true);
    expect(run.ms).toHaveLength(3);
    expect(run.wallMs).toBeGreaterThanOrEqual(run.ms.reduce((s, x) => s + x, 0) * 0.99);
    expect(run.cpuMs).toBeGreaterThan(0);
  });

  it.skipIf(!haveCase)(`attnode-int8 either runs int8 weights (cosine ≥ 0.99, not float32's output) or says why it cannot (needs bench/models/${CASE}.*)`, () => {
    const { lines, status } = child('attnode-int8', '1', '{"cmd":"quit"}\n');
    expect(status).toBe(0);
    const first = lines[0]!;
    if (first.ok) {
      const check = first.check as { cosine: number; rel: number };
      expect(check.cosine).toBeGreaterThan(0.99);
      expect(check.rel).toBeGreaterThan(1e-5);
    } else {
      expect(String(first.unavailable)).toMatch(/^useWeightPrecision\('int8'\): .*int8/);
    }
  });

  it('refuses a bad peer name or thread count with a message', () => {
    const bad = child('nope', '1', '');
    expect(bad.status).toBe(1);
    expect(String(bad.lines[0]!.error)).toMatch(/PEER must be one of attnode, .*got 'nope'/);
    const t = child('attnode', '0', '');
    expect(String(t.lines[0]!.error)).toMatch(/THREADS must be a positive integer, got '0'/);
  });
});
