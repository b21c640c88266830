/**
 * Stable sub-views of weight arrays. The native backend caches packed GEMM
 * weights by array identity (GemmArgs.cacheB), and `subarray` makes a new
 * object every time, so a module that multiplies by a slice of a parameter
 * (the q / k / v rows of MultiheadAttention's in_proj_weight) gets the same
 * view object on every call from here.
 */
const views = new WeakMap<Float32Array, Map<string, Float32Array>>();

/** `src.subarray(begin, end)`, the same object for the same arguments while `src` lives. */
export function weightView(src: Float32Array, begin: number, end = src.length): Float32Array {
  let byRange = views.get(src);
  if (!byRange) views.set(src, (byRange = new Map()));
  const key = `${begin}:${end}`;
  let view = byRange.get(key);
  if (!view) byRange.set(key, (view = src.subarray(begin, end)));
  return view;
}
