/**
 * The seed article's §5.4 as a task that can be learned: the article's
 * `TransformerModel` (nn.Embedding → nn.Transformer → nn.Linear, no positional
 * encoding) learns to sort digit strings with teacher forcing under a causal
 * target mask, `nn.CrossEntropyLoss` and an optimizer.
 *
 * Why sorting and not reversing: the article's model adds no positional
 * encoding, so its encoder sees the source as a multiset of tokens (attention is
 * permutation-equivariant). Reversal needs the source order and cannot be
 * learned by it; sorting needs only the multiset, and the causal decoder can
 * tell how far it is from what it has already written.
 *
 * The pieces (data, one training step, evaluation, saving) are shared by
 * `bench/train/seed.ts` (`npm run train:seed`) and its test.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { nn, noGrad, reuseBuffers, Rng, saveSafetensors, tensor, type Tensor } from '../../lib/index';
import { TransformerModel } from '../../lib/cli/seed-model';

/** The model and task sizes; everything `scripts/check_seed_training.py` needs to rebuild the model. */
export interface SeedTaskConfig {
  /** Digits 0–9 plus the start token. */
  vocabSize: number;
  dModel: number;
  nhead: number;
  numEncoderLayers: number;
  numDecoderLayers: number;
  dimFeedforward: number;
  /** Digits per sequence (source and target have this many tokens). */
  seqLen: number;
  /** The decoder's first input (`<bos>`). */
  bosId: number;
}

/** The default of `npm run train:seed`: d_model 64, 4 heads, 2 + 2 layers, feed-forward 256, 8 digits. */
export const DEFAULT_CONFIG: SeedTaskConfig = {
  vocabSize: 11, dModel: 64, nhead: 4, numEncoderLayers: 2, numDecoderLayers: 2, dimFeedforward: 256, seqLen: 8, bosId: 10,
};

/** A batch in the article's sequence-first layout. */
export interface Seq2SeqBatch {
  /** [S, N] digits. */
  src: Tensor<'int32'>;
  /** [T, N] decoder input: `<bos>` then the sorted digits but the last (teacher forcing). */
  tgtIn: Tensor<'int32'>;
  /** [T·N] what each decoder position must predict: the sorted digits, flattened as `tgtIn`. */
  tgtOut: Tensor<'int32'>;
  /** The sequences, one digit array each (N of them). */
  sequences: number[][];
}

/** The seed model of a config (the article's `TransformerModel(vocab_size, d_model, nhead, num_layers)`). */
export function buildModel(c: SeedTaskConfig): TransformerModel {
  return new TransformerModel(c.vocabSize, c.dModel, c.nhead, c.numEncoderLayers, c.numDecoderLayers, c.dimFeedforward);
}

/** `n` random digit strings of `seqLen` digits from `rng`, skipping any string in `exclude` (the held-out set). */
export function drawSequences(rng: Rng, n: number, seqLen: number, exclude?: ReadonlySet<string>): number[][] {
  const out: number[][] = [];
  while (out.length < n) {
    const s = Array.from({ length: seqLen }, () => rng.nextUint32() % 10);
    if (!exclude?.has(s.join(''))) out.push(s);
  }
  return out;
}

/** The sequence-first tensors of `sequences` (each sorted ascending for the target). */
export function makeBatch(sequences: number[][], c: SeedTaskConfig): Seq2SeqBatch {
  const n = sequences.length;
  const L = c.seqLen;
  const src = new Int32Array(L * n);
  const tgtIn = new Int32Array(L * n);
  const tgtOut = new Int32Array(L * n);
  sequences.forEach((s, b) => {
    if (s.length !== L) throw new RangeError(`makeBatch: sequence ${b} has ${s.length} digits, expected seqLen ${L}`);
    const sorted = [...s].sort((x, y) => x - y);
    for (let t = 0; t < L; t++) {
      src[t * n + b] = s[t]!;
      tgtOut[t * n + b] = sorted[t]!;
      tgtIn[t * n + b] = t === 0 ? c.bosId : sorted[t - 1]!;
    }
  });
  return {
    src: tensor(src, [L, n], 'int32'),
    tgtIn: tensor(tgtIn, [L, n], 'int32'),
    tgtOut: tensor(tgtOut, [L * n], 'int32'),
    sequences,
  };
}

/** What a training step needs of an optimizer (`optim.Adam`, `optim.SGD`). */
export interface StepOptimizer {
  zeroGrad(): void;
  step(): void;
}

/** The causal target mask of `T` positions (`nn.Transformer.generate_square_subsequent_mask`). */
export function causalMask(T: number): Tensor<'float32'> {
  return nn.Transformer.generateSquareSubsequentMask(T);
}

/**
 * One step of §5.4: zero_grad, forward with teacher forcing, CrossEntropyLoss, backward, step → the loss. In
 * reuseBuffers, so the step's output and loss go back to the pool when it returns instead of waiting for a GC.
 */
export function trainStep(model: TransformerModel, optimizer: StepOptimizer, criterion: nn.CrossEntropyLoss, batch: Seq2SeqBatch, mask: Tensor<'float32'>): number {
  return reuseBuffers(() => {
    optimizer.zeroGrad();
    const output = model.forward(batch.src, batch.tgtIn, { tgtMask: mask });
    const loss = criterion.forward(output.reshape(-1, output.shape[2]!), batch.tgtOut);
    loss.backward();
    optimizer.step();
    return loss.item();
  });
}

/** Held-out figures: the teacher-forced loss (what PyTorch re-computes) and greedy decoding's token accuracy. */
export interface Evaluation {
  loss: number;
  tokenAccuracy: number;
  /** Sequences decoded entirely right. */
  sequenceAccuracy: number;
}

/** Evaluates in eval mode without grad (the model is put back into the mode it was in). */
export function evaluate(model: TransformerModel, heldOut: Seq2SeqBatch, c: SeedTaskConfig): Evaluation {
  const wasTraining = model.training;
  model.eval();
  try {
    return noGrad(() => {
      const n = heldOut.sequences.length;
      const output = model.forward(heldOut.src, heldOut.tgtIn, { tgtMask: causalMask(c.seqLen) });
      const loss = new nn.CrossEntropyLoss().forward(output.reshape(-1, c.vocabSize), heldOut.tgtOut).item();
      const generated = model.generate(heldOut.src, { maxNewTokens: c.seqLen, bosId: c.bosId });
      const gen = generated.contiguous().data;
      const want = heldOut.tgtOut.data;
      let right = 0;
      let seqRight = 0;
      for (let b = 0; b < n; b++) {
        let all = true;
        for (let t = 0; t < c.seqLen; t++) {
          const ok = t < generated.shape[0]! && gen[t * n + b] === want[t * n + b];
          if (ok) right++;
          else all = false;
        }
        if (all) seqRight++;
      }
      return { loss, tokenAccuracy: right / (n * c.seqLen), sequenceAccuracy: seqRight / n };
    });
  } finally {
    model.train(wasTraining);
  }
}

/** File names {@link saveRun} writes into its folder. */
export const WEIGHTS_FILE = 'model.safetensors';
export const RUN_FILE = 'run.json';

/** What `run.json` holds. */
export interface RunRecord {
  config: SeedTaskConfig;
  /** The held-out source sequences (targets are their sorted digits). */
  heldOut: number[][];
  /** attnode's held-out loss of the saved weights (eval mode, causal target mask, mean CrossEntropyLoss). */
  heldOutLoss: number;
  heldOutTokenAccuracy: number;
  [extra: string]: unknown;
}

/**
 * Writes the weights under the PyTorch `state_dict` names of the article's `TransformerModel`
 * (`embedding.weight`, `transformer.encoder.layers.0.self_attn.in_proj_weight`, …, `fc.bias`) and `run.json`.
 */
export async function saveRun(dir: string, model: TransformerModel, record: RunRecord): Promise<void> {
  await mkdir(dir, { recursive: true });
  await saveSafetensors(join(dir, WEIGHTS_FILE), model.stateDict());
  await writeFile(join(dir, RUN_FILE), JSON.stringify(record, null, 1) + '\n');
}
