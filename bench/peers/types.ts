/** What every benchmark peer looks like to the runner. */

/** 'bf16': attnode's native backend with bfloat16 weights and attention (Module.useWeightPrecision, useAttentionPrecision). */
export type PeerName = 'attnode' | 'bf16' | 'int8' | 'ort' | 'torch' | 'ts';

/**
 * The peers bench/encoder.ts runs, each in a process of its own (bench/peers/child.ts; torch in torch_bench.py).
 * attnode-int8: `useWeightPrecision('int8')`; ort-int8 / ort-int8pc: onnxruntime-node on the graph
 * scripts/quantize_onnx_dynamic.py writes (quantize_dynamic's int8 weights per tensor / per channel).
 */
export const CHILD_PEERS = ['attnode', 'bf16', 'attnode-int8', 'ts', 'ort', 'ort-int8', 'ort-int8pc'] as const;
export type ChildPeer = (typeof CHILD_PEERS)[number];

export interface Peer {
  readonly name: PeerName;
  /** Most threads this peer can use (the TS backend is single-threaded). */
  readonly maxThreads: number;
  setThreads(n: number): Promise<void>;
  /** One timed forward pass, in ms (torch times itself in its own process). */
  runOnce(): Promise<number>;
  /** The output of the last run, flattened. */
  output(): Promise<Float32Array>;
  close(): Promise<void>;
}

/** Largest |a - b| and the largest |b| (the scale for a relative error). */
export function maxAbsDiff(a: Float32Array, b: Float32Array): { abs: number; rel: number } {
  if (a.length !== b.length) throw new Error(`output length mismatch: ${a.length} vs ${b.length}`);
  let d = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    const e = Math.abs(a[i] - b[i]);
    // NaN must not hide as "no difference": Math.max propagates it, a comparison would not.
    d = Math.max(d, e);
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return { abs: d, rel: scale > 0 ? d / scale : d };
}
