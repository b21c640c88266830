/**
 * A module's compute precision, applied where its kernels are issued: a
 * module with `useWeightPrecision('bfloat16')` and/or
 * `useAttentionPrecision('bfloat16')` computes on a view of its backend whose
 * `gemm` marks every constant-weight call (`cacheB`) as bfloat16 and whose
 * `attention` asks for bfloat16 products. Ops and layers need no precision
 * argument of their own; GEMMs whose B is an activation (ad-hoc matmuls) stay
 * float32.
 */
import type { AttentionArgs, AttentionPrecision, Backend, GemmArgs, WeightPrecision } from './backend';

/** Views of one backend, keyed by `${weights}/${attention}`. */
const views = new WeakMap<Backend, Map<string, Backend>>();

/** `backend` itself when both are 'float32'; otherwise a (cached) view of it that applies them. */
export function withPrecision(backend: Backend, weights: WeightPrecision, attention: AttentionPrecision): Backend {
  if (weights === 'float32' && attention === 'float32') return backend;
  let byKey = views.get(backend);
  if (!byKey) views.set(backend, (byKey = new Map()));
  const key = `${weights}/${attention}`;
  let view = byKey.get(key);
  if (!view) {
    const gemm =
      weights === 'bfloat16'
        ? (g: GemmArgs): void => backend.gemm(g.cacheB ? { ...g, bPrecision: 'bfloat16' } : g)
        : backend.gemm;
    const attend =
      attention === 'bfloat16' ? (a: AttentionArgs): void => backend.attention({ ...a, precision: 'bfloat16' }) : backend.attention;
    view = Object.freeze({ ...backend, gemm, attention: attend });
    byKey.set(key, view);
  }
  return view;
}
