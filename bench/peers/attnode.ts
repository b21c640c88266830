/**
 * attnode as a peer: the case's module built with attnode's nn classes, the
 * exported PyTorch weights loaded with loadSafetensors + loadStateDict, run on
 * the native backend, the native backend with bfloat16 weights and attention
 * products (peer 'bf16')
 * or (peer 'ts') the TypeScript backend.
 *
 * The library is imported lazily (by the runner, after the addon build step),
 * so the bench can report why the native backend is missing instead of dying
 * on import.
 */
import type { Case } from '../cases/cases';
import type { WeightPrecision } from '../../lib/backend/backend';
import type { Peer } from './types';

type Attnode = typeof import('../../lib/index');
type F32 = import('../../lib/index').Tensor<'float32'>;
type I32 = import('../../lib/index').Tensor<'int32'>;

let lib: Attnode | null = null;

export async function loadAttnode(): Promise<Attnode> {
  if (!lib) {
    lib = await import('../../lib/index');
    // Inference benchmarks: no autograd graph (parameters require grad by default, as in PyTorch).
    lib.setGradEnabled(false);
  }
  return lib;
}

/** Why the native backend is unavailable, or null when it is there. */
export async function nativeUnavailableReason(): Promise<string | null> {
  const a = await loadAttnode();
  if (a.availableBackends().includes('native')) return null;
  return a.info().nativeError ?? 'native backend not registered';
}

/** Whether the bf16 peer can run (AVX512-BF16 on the active kernel path). */
export async function bf16UnavailableReason(): Promise<string | null> {
  const a = await loadAttnode();
  if (!a.availableBackends().includes('native')) return 'native backend not loaded';
  return a.info().native?.bf16 ? null : 'no AVX512-BF16 on this CPU or kernel path';
}

/**
 * `precision`: 'float32', 'bfloat16' (weights and attention products) or 'int8' (weights only, attention stays
 * float32). 'int8' is passed to `useWeightPrecision` as it is: where the library has no int8 weights the call
 * throws, and so does this function (the encoder bench shows that as a "not available" cell).
 */
export async function createAttnodePeer(c: Case, backend: 'native' | 'js', precision: 'float32' | 'bfloat16' | 'int8' = 'float32'): Promise<Peer> {
  const a = await loadAttnode();
  // Cast: WeightPrecision names only the precisions this checkout has; the call itself decides.
  const weightPrecision = precision as WeightPrecision;
  const attentionPrecision = precision === 'bfloat16' ? 'bfloat16' : 'float32';
  const { nn } = a;
  const spec = c.spec;
  const io = (await a.loadSafetensors(c.ioPath)).tensors;
  const weights = (await a.loadSafetensors(c.weightsPath)).tensors;
  let run: () => F32;

  switch (spec.kind) {
    case 'encoder_layer':
    case 'encoder': {
      const layerOpts = {
        dModel: spec.dModel, nhead: spec.nhead, dimFeedforward: spec.dimFeedforward, activation: spec.activation,
        batchFirst: true,
      };
      const m = spec.kind === 'encoder'
        ? new nn.TransformerEncoder({ layer: layerOpts, numLayers: spec.numLayers }).eval()
        : new nn.TransformerEncoderLayer(layerOpts).eval();
      m.loadStateDict(weights);
      m.useBackend(backend).useWeightPrecision(weightPrecision).useAttentionPrecision(attentionPrecision);
      const x = io.x as F32;
      run = () => m.forward(x);
      break;
    }
    case 'mha': {
      const m = new nn.MultiheadAttention({ embedDim: spec.embedDim, numHeads: spec.numHeads, batchFirst: true });
      m.loadStateDict(weights);
      m.useBackend(backend).useWeightPrecision(weightPrecision).useAttentionPrecision(attentionPrecision);
      const x = io.x as F32;
      run = () => m.forward(x, x, x, { needWeights: false }).output;
      break;
    }
    case 'seed': {
      const { TransformerModel } = await import('../../lib/cli/seed-model');
      const m = new TransformerModel(spec.vocab, spec.dModel, spec.nhead, spec.numEncoderLayers, spec.numDecoderLayers,
        spec.dimFeedforward).eval();
      m.loadStateDict(weights);
      m.useBackend(backend).useWeightPrecision(weightPrecision).useAttentionPrecision(attentionPrecision);
      const src = io.src as I32;
      const tgt = io.tgt as I32;
      run = () => m.forward(src, tgt);
      break;
    }
  }

  let last: F32 | null = null;
  const isNative = backend === 'native';
  return {
    name: !isNative ? 'ts' : precision === 'bfloat16' ? 'bf16' : precision === 'int8' ? 'int8' : 'attnode',
    maxThreads: isNative ? 256 : 1,
    async setThreads(n: number): Promise<void> {
      if (isNative) a.setNumThreads(n);
      else if (n !== 1) throw new Error('the TypeScript backend is single-threaded');
    },
    async runOnce(): Promise<number> {
      // The modules allocate their outputs: attnode has no out= at module level, so that cost is part of the time.
      const t0 = performance.now();
      last = run();
      return performance.now() - t0;
    },
    async output(): Promise<Float32Array> {
      if (!last) last = run();
      return last.data;
    },
    async close(): Promise<void> {
      last = null;
    },
  };
}
