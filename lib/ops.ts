/**
 * The functional API on tensors: validate, allocate, call a backend.
 *
 * Every op checks dtypes and shapes up front and throws TypeError (wrong kind
 * of argument) or RangeError (wrong shape / value) with a message naming the
 * argument, see errors.ts. Backends then only see flat arrays with consistent
 * sizes. Every op takes a trailing options object with
 * - `backend`: 'native' | 'js' | a Backend (default: the current backend, see registry.ts);
 * - `out` (where noted): a float32 tensor of exactly the result shape to write
 *   into instead of allocating. Element-wise ops allow `out` to be one of the
 *   inputs (in place); matmul/linear/transpose/head ops do not.
 */
export type { OpOptions, OutOptions } from './op-options';
export { broadcastShapes } from './ops/checks';
export * from './ops/matmul';
export * from './ops/norms';
export * from './ops/elementwise';
export * from './ops/layout';
export * from './ops/rotary';
export * from './ops/indexing';
export { sum, mean, type ReduceOptions } from './ops/reduce';
export { dropout, type DropoutOptions } from './ops/dropout';
export { crossEntropy, mseLoss, type CrossEntropyOptions, type MseLossOptions, type LossReduction } from './ops/loss';
// Attention lives in its own file; it is part of the functional API.
export { scaledDotProductAttention, pooledAttention, type ScaledDotProductAttentionOptions, type PooledAttentionOptions } from './attention';
export {
  multiHeadAttentionForward,
  inProjection,
  projectQuery,
  attendHeads,
  type MultiHeadAttentionParams,
  type MultiHeadAttentionForwardOptions,
  type MultiHeadAttentionResult,
  type AttentionMaskTensor,
  type AttendHeadsOptions,
  type InProjection,
  type InProjectionOptions,
} from './ops/multi-head-attention';
