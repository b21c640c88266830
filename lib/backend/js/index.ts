/**
 * The pure-TypeScript backend: the correctness reference for the native
 * addon and the baseline of native-vs-JS benchmarks. Always available.
 */
import type { Backend } from '../backend';
import { attention } from './attention';
import { attentionBackward } from './attention-backward';
import { binary } from './binary';
import { gemm, gemmGroup } from './gemm';
import { rope } from './rotary';
import { adamStep, clipGradNorm, sgdStep } from './optim';
import { dropoutMask } from './random';
import { addLayerNorm, addRmsNorm, copy, embedding, gelu, indexCopy, layerNorm, permute0213, relu, rmsNorm, siluMul, softmax, unary } from './layer';
import {
  activationBackward, crossEntropy, crossEntropyBackward, embeddingBackward, layerNormBackward, rmsNormBackward, softmaxBackward,
} from './backward';

export { erf, erfc, geluExact, geluTanh } from './math';

/** The JS implementation of {@link Backend}. Stateless apart from reused scratch buffers. */
export const jsBackend: Backend = Object.freeze({
  name: 'js',
  gemm,
  gemmGroup,
  softmax,
  layerNorm,
  addLayerNorm,
  rmsNorm,
  addRmsNorm,
  relu,
  gelu,
  unary,
  siluMul,
  binary,
  embedding,
  indexCopy,
  copy,
  permute0213,
  attention,
  attentionBackward,
  rope,
  softmaxBackward,
  layerNormBackward,
  rmsNormBackward,
  activationBackward,
  dropoutMask,
  embeddingBackward,
  crossEntropy,
  crossEntropyBackward,
  sgdStep,
  adamStep,
  clipGradNorm,
} as const);
