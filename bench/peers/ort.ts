/**
 * onnxruntime-node as a peer: the case's ONNX file (exported from the same
 * PyTorch module and weights attnode loads), one InferenceSession per thread
 * count (intraOpNumThreads is fixed at session creation), CPU provider, all
 * graph optimisations, sequential execution.
 */
import type { Case } from '../cases/cases';
import type { Peer } from './types';

type Ort = typeof import('onnxruntime-node');
type OrtSession = import('onnxruntime-node').InferenceSession;
type OrtTensor = import('onnxruntime-node').Tensor;

export const ORT_INSTALL_HINT = 'npm run bench:install (installs bench/package.json\'s peers into bench/node_modules)';

let ortMod: Ort | null = null;
let ortError: string | null = null;

/** onnxruntime-node, or null (with {@link ortUnavailableReason}) when it is not installed. */
export async function loadOrt(): Promise<Ort | null> {
  if (ortMod || ortError) return ortMod;
  try {
    const m = (await import('onnxruntime-node')) as Ort & { default?: Ort };
    // Through tsx/CommonJS interop the namespace may arrive as `default`.
    ortMod = m.InferenceSession ? m : (m.default ?? null);
    if (!ortMod) ortError = 'onnxruntime-node loaded but exports no InferenceSession';
  } catch (e) {
    ortError = (e as Error).message.split('\n')[0];
  }
  return ortMod;
}

export function ortUnavailableReason(): string | null {
  return ortError;
}

export function ortVersion(): string | null {
  return ortMod ? ortMod.env.versions.node ?? null : null;
}

export async function createOrtPeer(c: Case, threadCounts: readonly number[], inputs: Record<string, { data: Float32Array | Int32Array; shape: readonly number[] }>): Promise<Peer> {
  const ort = await loadOrt();
  if (!ort) throw new Error(`onnxruntime-node is not available: ${ortError}`);
  const sessions = new Map<number, OrtSession>();
  for (const n of threadCounts) {
    sessions.set(n, await ort.InferenceSession.create(c.onnxPath, {
      executionProviders: ['cpu'],
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
      intraOpNumThreads: n,
      interOpNumThreads: 1,
    }));
  }
  const any = sessions.values().next().value as OrtSession;
  // Inputs converted once (ids to int64, as torch.onnx exported them) and reused for every run.
  const feeds: Record<string, OrtTensor> = {};
  for (const name of any.inputNames) {
    const t = inputs[name];
    if (!t) throw new Error(`${c.onnxPath}: input '${name}' is not in ${c.ioPath}`);
    feeds[name] = t.data instanceof Int32Array
      ? new ort.Tensor('int64', BigInt64Array.from(t.data, (v) => BigInt(v)), t.shape)
      : new ort.Tensor('float32', t.data, t.shape);
  }
  const outName = any.outputNames[0];
  let session = any;
  let last: OrtTensor | null = null;
  return {
    name: 'ort',
    maxThreads: Math.max(...threadCounts),
    async setThreads(n: number): Promise<void> {
      const s = sessions.get(n);
      if (!s) throw new Error(`no onnxruntime session for ${n} threads`);
      session = s;
    },
    async runOnce(): Promise<number> {
      // onnxruntime-node allocates its outputs (preallocated fetches are not used: not all versions honour them).
      const t0 = performance.now();
      const r = await session.run(feeds);
      const ms = performance.now() - t0;
      last = r[outName];
      return ms;
    },
    async output(): Promise<Float32Array> {
      if (!last) last = (await session.run(feeds))[outName];
      return last.data as Float32Array;
    },
    async close(): Promise<void> {
      for (const s of sessions.values()) await s.release();
      sessions.clear();
    },
  };
}
