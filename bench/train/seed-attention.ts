/**
 * The attention maps of the seed model (the article's figure): every head of the encoder's self-attention and of
 * the decoder's self- and cross-attention for one sequence, computed layer by layer as `nn.Transformer` runs them.
 * `npm run train:seed:attention` (bench/train/seed-maps.ts) draws them for a held-out string of a `train:seed` run.
 */
import { noGrad, ops, type Tensor } from '../../lib/index';
import type { TransformerModel } from '../../lib/cli/seed-model';
import { heatmapGridSvg, type HeatmapPanel } from '../heatmap';
import { causalMask } from './seed-task';

/** Attention maps of one sequence: `[layer][head]` matrices, query rows × key columns. */
export interface SeedAttention {
  encoderSelf: number[][][][];
  decoderSelf: number[][][][];
  decoderCross: number[][][][];
  /** The logits the pieces add up to ([T, 1, vocab]), equal to `model.forward`'s (a check that the maps are of the same computation). */
  logits: Tensor<'float32'>;
}

/** [1, H, L, S] weights of one sequence → [H][L][S]. */
function perHead(w: Tensor<'float32'>): number[][][] {
  const [, H, L, S] = w.shape as [number, number, number, number];
  const d = w.contiguous().data;
  return Array.from({ length: H }, (_, h) => Array.from({ length: L }, (_, i) => Array.from(d.subarray((h * L + i) * S, (h * L + i + 1) * S))));
}

/**
 * Runs the seed model (eval mode, no grad) on one source `src` [S, 1] with teacher-forced `tgtIn` [T, 1] under the
 * causal target mask, layer by layer as `nn.Transformer` (post-norm) does, and returns every head's attention.
 */
export function seedAttention(model: TransformerModel, src: Tensor<'int32'>, tgtIn: Tensor<'int32'>): SeedAttention {
  const wasTraining = model.training;
  model.eval();
  try {
    return noGrad(() => {
      const t = model.transformer;
      const weights = { needWeights: true, averageAttnWeights: false } as const;
      const encoderSelf: number[][][][] = [];
      let x = model.embedding.forward(src);
      for (const layer of t.encoder.layers) {
        if (layer.normFirst) throw new RangeError('seedAttention: the seed model is post-norm (nn.Transformer\'s default), got a pre-norm encoder layer');
        encoderSelf.push(perHead(layer.selfAttn.forward(x, x, x, weights).weights!));
        x = layer.forward(x);
      }
      const memory = t.encoder.norm ? t.encoder.norm.forward(x) : x;
      const mask = causalMask(tgtIn.shape[0]!);
      const decoderSelf: number[][][][] = [];
      const decoderCross: number[][][][] = [];
      let y = model.embedding.forward(tgtIn);
      for (const layer of t.decoder.layers) {
        const sa = layer.selfAttn.forward(y, y, y, { ...weights, attnMask: mask });
        decoderSelf.push(perHead(sa.weights!));
        // Post-norm: the cross-attention's queries are norm1(y + sa(y)).
        const q = layer.norm1.forward(ops.add(y, sa.output));
        decoderCross.push(perHead(layer.multiheadAttn.forward(q, memory, memory, weights).weights!));
        y = layer.forward(y, memory, { tgtMask: mask });
      }
      const logits = model.fc.forward(t.decoder.norm ? t.decoder.norm.forward(y) : y);
      return { encoderSelf, decoderSelf, decoderCross, logits };
    });
  } finally {
    model.train(wasTraining);
  }
}

/** The figures: the decoder's cross-attention (a row of panels per layer) and the encoder's self-attention. */
export function seedAttentionSvgs(a: SeedAttention, digits: number[], note: string): { cross: string; encoder: string } {
  const sorted = [...digits].sort((p, q) => p - q).map(String);
  const src = digits.map(String);
  const rows = (maps: number[][][][], what: string): HeatmapPanel[][] =>
    maps.map((layer, l) => layer.map((values, h) => ({ title: `${what} ${l} · head ${h}`, values })));
  const cross = heatmapGridSvg({
    title: `train:seed: where the decoder looks while it writes the sorted digits of ${digits.join('')}`,
    subtitle: `cross-attention of every head · rows: the digit each position writes · columns: the source · ${note}`,
    panels: rows(a.decoderCross, 'decoder layer'), rowTokens: sorted, colTokens: src, cell: 22,
  });
  const encoder = heatmapGridSvg({
    title: `train:seed: the encoder's self-attention on ${digits.join('')}`,
    subtitle: `every head · rows: query digit · columns: key digit · ${note}`,
    panels: rows(a.encoderSelf, 'encoder layer'), rowTokens: src, colTokens: src, cell: 22,
  });
  return { cross, encoder };
}
