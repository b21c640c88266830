/**
 * A module's weight precision, applied where its GEMMs are issued: a module
 * with `useWeightPrecision('bfloat16')` computes on a view of its backend
 * whose `gemm` marks every constant-weight call (`cacheB`) as bfloat16. Ops
 * and layers need no precision argument of their own, and calls whose B is
 * an activation (attention, ad-hoc matmuls) stay float32.
 */
import type { Backend, GemmArgs, WeightPrecision } from './backend';

const views = new WeakMap<Backend, Backend>();

/** `backend` itself for 'float32'; for 'bfloat16' a (cached) view of it whose weight GEMMs run in bfloat16. */
export function withWeightPrecision(backend: Backend, precision: WeightPrecision): Backend {
  if (precision === 'float32') return backend;
  let view = views.get(backend);
  if (!view) {
    const gemm = (g: GemmArgs): void => backend.gemm(g.cacheB ? { ...g, bPrecision: 'bfloat16' } : g);
    view = Object.freeze({ ...backend, gemm });
    views.set(backend, view);
  }
  return view;
}
