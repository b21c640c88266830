/**
 * The pieces of `npm run train:lm` (bench/train/lm.ts), shared with its test: a byte-level causal language model
 * (`nn.CausalLM`: token embedding + sinusoidal positions → pre-norm `TransformerEncoderLayer`s run causally → final
 * LayerNorm → lm head) trained with AdamW, a warm-up `LambdaLR` and `clipGradNorm` on real English text; held-out
 * loss; resumable checkpoints (one safetensors file, written atomically); sampling; per-head attention maps.
 *
 * The text: Jane Austen's six novels as Debian's `r-cran-janeaustenr` ships them (the Project Gutenberg texts,
 * public domain; the package is MIT), read through `Rscript`, or any UTF-8 file given with `--text`.
 *
 * Everything a step depends on lives in the run and goes into a checkpoint: the weights, the optimizer's state
 * (moments and step counts), the schedule's position, the process-wide generator (dropout masks) and the data
 * generator (which windows the next batches take). A run resumed from a checkpoint therefore takes the same steps,
 * bit for bit, as one that was never interrupted (the test checks the losses).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { open, readFile, rename, rm } from 'node:fs/promises';
import {
  getRngState, loadSafetensors, manualSeed, nn, noGrad, optim, reuseBuffers, Rng, samplingParams, serializeSafetensors,
  setRngState, Tensor, TokenPicker, type RngState,
} from '../../lib/index';

/** The model, data and optimisation settings of a run (stored in every checkpoint; a resume takes them from there). */
export interface LmConfig {
  /** 256: the tokens are the bytes of the UTF-8 text. */
  vocabSize: number;
  dModel: number;
  nhead: number;
  numLayers: number;
  dimFeedforward: number;
  /** Tokens per training window (the context the model learns to use; also the position table's length). */
  seqLen: number;
  /** Windows per step. */
  batch: number;
  /** Dropout in training mode (positions, attention probabilities, residual branches). */
  dropout: number;
  /** Peak learning rate of AdamW. */
  lr: number;
  /** Steps of linear warm-up to `lr`; after it the lr decays as 1/√step (no total step count needed, so a run can be extended). */
  warmupSteps: number;
  /** AdamW's decoupled weight decay, on the matrices only (biases, LayerNorm weights and the embedding get none). */
  weightDecay: number;
  /** `clipGradNorm`'s max norm. */
  clipNorm: number;
  /** The share of the text held out (its end) for the held-out loss. */
  heldOutFraction: number;
  /** Held-out windows evaluated (evenly spaced over the held-out text, the same every time). */
  heldOutWindows: number;
  /** Seeds the initial weights, dropout and the data generator. */
  seed: number;
}

/** `npm run train:lm`'s default: d_model 128, 4 heads, 4 layers, feed-forward 512, 128-byte windows, batch 16 (858,880 parameters). */
export const DEFAULT_LM_CONFIG: LmConfig = {
  vocabSize: 256, dModel: 128, nhead: 4, numLayers: 4, dimFeedforward: 512, seqLen: 128, batch: 16, dropout: 0,
  lr: 2e-3, warmupSteps: 200, weightDecay: 0.1, clipNorm: 1, heldOutFraction: 0.05, heldOutWindows: 64, seed: 0,
};

/** What {@link loadCorpus} returns: the text as bytes and where it came from. */
export interface Corpus {
  bytes: Uint8Array;
  /** One line: what the text is and which package or file it came from. */
  source: string;
  licence: string;
  /** sha256 of `bytes` (a checkpoint records it; resuming on other text is refused). */
  sha256: string;
}

/** The novels in `janeaustenr`, in order of publication. */
export const AUSTEN_BOOKS = ['sensesensibility', 'prideprejudice', 'mansfieldpark', 'emma', 'northangerabbey', 'persuasion'] as const;
/** Where Debian's package puts the R package. */
export const AUSTEN_DIR = '/usr/lib/R/site-library/janeaustenr';
/** The one line telling what to install when the novels are missing. */
export const AUSTEN_INSTALL_HINT =
  "train:lm: Jane Austen's novels come from Debian's r-cran-janeaustenr: apt-get install --no-install-recommends r-cran-janeaustenr (or pass --text FILE)";

/**
 * Gutenberg's hard-wrapped lines → one line per paragraph: lines of a paragraph are joined with a space, the two
 * spaces after a full stop become one, blank lines between paragraphs go, and the text ends with a newline.
 */
export function unwrapParagraphs(text: string): string {
  return text
    .replace(/\r\n?/g, '\n')
    .split(/\n[ \t]*\n+/)
    .map((p) => p.replace(/\s*\n\s*/g, ' ').replace(/ {2,}/g, ' ').trim())
    .filter((p) => p.length > 0)
    .join('\n') + '\n';
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * The training text: `textFile` (any UTF-8 text, used as it is) or, without one, Jane Austen's six novels from
 * Debian's `r-cran-janeaustenr` (read with Rscript, paragraphs unwrapped).
 * @throws Error whose message is {@link AUSTEN_INSTALL_HINT} when the package (or Rscript) is missing.
 */
export async function loadCorpus(textFile?: string): Promise<Corpus> {
  if (textFile !== undefined) {
    const bytes = new Uint8Array(await readFile(textFile));
    if (bytes.length === 0) throw new RangeError(`train:lm: --text ${textFile} is empty`);
    return { bytes, source: `${textFile} (${bytes.length} bytes)`, licence: 'as the file says', sha256: sha256(bytes) };
  }
  if (!existsSync(AUSTEN_DIR)) throw new Error(AUSTEN_INSTALL_HINT);
  const script = `e <- new.env(); b <- c(${AUSTEN_BOOKS.map((b) => `"${b}"`).join(', ')}); ` +
    'utils::data(list = b, package = "janeaustenr", envir = e); for (n in b) { writeLines(e[[n]]); writeLines(c("", "")) }';
  const r = spawnSync('Rscript', ['-e', script], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.error || r.status !== 0) {
    throw new Error(`${AUSTEN_INSTALL_HINT}\n(Rscript: ${r.error?.message ?? r.stderr.trim()})`);
  }
  const bytes = new TextEncoder().encode(unwrapParagraphs(r.stdout));
  return {
    bytes,
    source: `Jane Austen's six novels (${AUSTEN_BOOKS.join(', ')}) from Debian's r-cran-janeaustenr, ${bytes.length} bytes`,
    licence: "the novels are in the public domain (Project Gutenberg's texts); the R package is MIT",
    sha256: sha256(bytes),
  };
}

/** The text split at its end: the last `fraction` is held out (never trained on). */
export function splitCorpus(bytes: Uint8Array, c: Pick<LmConfig, 'heldOutFraction' | 'seqLen'>): { train: Uint8Array; heldOut: Uint8Array } {
  const cut = Math.floor(bytes.length * (1 - c.heldOutFraction));
  const train = bytes.subarray(0, cut);
  const heldOut = bytes.subarray(cut);
  for (const [name, part] of [['training', train], ['held-out', heldOut]] as const) {
    if (part.length < c.seqLen + 2) {
      throw new RangeError(`train:lm: the ${name} text has ${part.length} bytes, fewer than a window of seqLen ${c.seqLen} + 1 needs`);
    }
  }
  return { train, heldOut };
}

/** Input ids [N, T] and the next bytes [N·T] (int32) of windows of `text` starting at `starts`. */
export function windows(text: Uint8Array, starts: readonly number[], seqLen: number): { ids: Tensor<'int32'>; targets: Tensor<'int32'> } {
  const n = starts.length;
  const ids = new Int32Array(n * seqLen);
  const targets = new Int32Array(n * seqLen);
  starts.forEach((s, b) => {
    if (!Number.isInteger(s) || s < 0 || s + seqLen + 1 > text.length) {
      throw new RangeError(`windows: start ${s} of window ${b} does not leave seqLen ${seqLen} + 1 bytes in a text of ${text.length}`);
    }
    for (let t = 0; t < seqLen; t++) {
      ids[b * seqLen + t] = text[s + t]!;
      targets[b * seqLen + t] = text[s + t + 1]!;
    }
  });
  return { ids: new Tensor(ids, [n, seqLen], 'int32'), targets: new Tensor(targets, [n * seqLen], 'int32') };
}

/** The warm-up schedule as a `LambdaLR` factor: linear to 1 over `warmup` steps, then √(warmup / step). */
export function warmupFactor(warmup: number): (step: number) => number {
  return (step) => {
    const s = step + 1;
    return s <= warmup ? s / warmup : Math.sqrt(warmup / s);
  };
}

/** The model of a config: a batch-first `nn.CausalLM` whose position table is the training window. */
export function buildLm(c: LmConfig): nn.CausalLM {
  return new nn.CausalLM({
    vocabSize: c.vocabSize, dModel: c.dModel, nhead: c.nhead, numLayers: c.numLayers, dimFeedforward: c.dimFeedforward,
    maxLen: c.seqLen, batchFirst: true, dropout: c.dropout, normFirst: true,
  });
}

/** One step's figures. */
export interface StepResult {
  step: number;
  loss: number;
  /** Total gradient norm before clipping. */
  gradNorm: number;
  /** The lr the step used. */
  lr: number;
}

/** A checkpoint's JSON part (the tensors are the model's `model.*` and the optimizer's `optimizer.<i>.<key>`). */
export interface LmCheckpointMeta {
  format: 'attnode-train-lm/1';
  config: LmConfig;
  step: number;
  tokensSeen: number;
  /** Seconds of training (all invocations so far). */
  trainSeconds: number;
  corpus: { source: string; sha256: string; bytes: number };
  optimizer: { param_groups: Record<string, unknown>[]; state: Record<string, Record<string, number | null>> };
  scheduler: optim.lrScheduler.LRSchedulerStateDict;
  /** The process-wide generator (dropout) and the data generator. */
  rng: { global: RngState; data: RngState };
  /** [step, mean training loss of the steps since the last point] and [step, held-out loss]. */
  curves: { train: [number, number][]; heldOut: [number, number][] };
}

const META_KEY = 'attnode.train-lm';

/**
 * A training run: the model, AdamW (decay on matrices only), the warm-up `LambdaLR`, the data generator and the
 * held-out windows. `LmRun.create` starts one; `LmRun.resume` continues one from a checkpoint.
 */
export class LmRun {
  readonly config: LmConfig;
  readonly model: nn.CausalLM;
  readonly optimizer: optim.AdamW;
  readonly scheduler: optim.lrScheduler.LambdaLR;
  readonly train: Uint8Array;
  readonly heldOut: Uint8Array;
  readonly corpus: Corpus;
  readonly criterion = new nn.CrossEntropyLoss();
  step = 0;
  tokensSeen = 0;
  trainSeconds = 0;
  readonly curves: LmCheckpointMeta['curves'] = { train: [], heldOut: [] };
  #dataRng: Rng;
  #heldOutStarts: number[];

  private constructor(config: LmConfig, corpus: Corpus, model: nn.CausalLM, prepare?: (opt: optim.AdamW) => void) {
    this.config = config;
    this.corpus = corpus;
    ({ train: this.train, heldOut: this.heldOut } = splitCorpus(corpus.bytes, config));
    this.model = model.train();
    const decay: Tensor[] = [];
    const noDecay: Tensor[] = [];
    for (const [name, p] of model.namedParameters()) (p.ndim >= 2 && name !== 'embedding.weight' ? decay : noDecay).push(p);
    this.optimizer = new optim.AdamW(
      [{ params: decay, weightDecay: config.weightDecay }, { params: noDecay, weightDecay: 0 }],
      { lr: config.lr, betas: [0.9, 0.95] },
    );
    prepare?.(this.optimizer);
    this.scheduler = new optim.lrScheduler.LambdaLR(this.optimizer, warmupFactor(config.warmupSteps));
    this.#dataRng = new Rng(config.seed * 2 + 1);
    const span = this.heldOut.length - config.seqLen - 1;
    this.#heldOutStarts = Array.from({ length: config.heldOutWindows }, (_, i) =>
      Math.floor((span * i) / Math.max(1, config.heldOutWindows - 1)));
  }

  /** A fresh run: `manualSeed(config.seed)`, then the model's initial weights. */
  static create(config: LmConfig, corpus: Corpus): LmRun {
    checkConfig(config);
    manualSeed(config.seed);
    return new LmRun(config, corpus, buildLm(config));
  }

  /**
   * Continues the run saved at `path` on `corpus` (which must be the text it was trained on).
   * @throws TypeError/RangeError naming the file and what does not fit.
   */
  static async resume(path: string, corpus: Corpus): Promise<LmRun> {
    const file = await loadSafetensors(path);
    const raw = file.metadata?.[META_KEY];
    if (raw === undefined) throw new TypeError(`train:lm: ${path} is not a train:lm checkpoint (no '${META_KEY}' metadata)`);
    const meta = JSON.parse(raw) as LmCheckpointMeta;
    if (meta.format !== 'attnode-train-lm/1') throw new TypeError(`train:lm: ${path}: unknown checkpoint format '${String(meta.format)}', expected 'attnode-train-lm/1'`);
    checkConfig(meta.config);
    if (meta.corpus.sha256 !== corpus.sha256) {
      throw new RangeError(`train:lm: ${path} was trained on other text (${meta.corpus.source}, sha256 ${meta.corpus.sha256.slice(0, 12)}…), not on ${corpus.source} (sha256 ${corpus.sha256.slice(0, 12)}…)`);
    }
    const modelDict: Record<string, Tensor> = {};
    const optState: Record<number, Record<string, Tensor<'float32'> | number | null>> = {};
    for (const [name, t] of Object.entries(file.tensors)) {
      if (name.startsWith('model.')) modelDict[name.slice(6)] = t;
      else {
        const m = /^optimizer\.(\d+)\.(.+)$/.exec(name);
        if (!m) throw new RangeError(`train:lm: ${path}: unexpected tensor '${name}'`);
        (optState[Number(m[1])] ??= {})[m[2]!] = t as Tensor<'float32'>;
      }
    }
    for (const [i, s] of Object.entries(meta.optimizer.state)) Object.assign((optState[Number(i)] ??= {}), s);
    const model = buildLm(meta.config);
    model.loadStateDict(modelDict);
    const run = new LmRun(meta.config, corpus, model, (opt) =>
      opt.loadStateDict({ param_groups: meta.optimizer.param_groups as optim.OptimizerStateDict['param_groups'], state: optState }));
    run.scheduler.loadStateDict(meta.scheduler);
    // The lr the next step uses is the schedule's, as it was when the checkpoint was written.
    run.optimizer.paramGroups.forEach((g, i) => (g.lr = meta.scheduler._last_lr[i]!));
    run.#dataRng.setState(meta.rng.data);
    setRngState(meta.rng.global);
    run.step = meta.step;
    run.tokensSeen = meta.tokensSeen;
    run.trainSeconds = meta.trainSeconds;
    run.curves.train.push(...meta.curves.train);
    run.curves.heldOut.push(...meta.curves.heldOut);
    return run;
  }

  /** The next batch's window starts (uniform over the training text, from the data generator). */
  #nextStarts(): number[] {
    const span = this.train.length - this.config.seqLen - 1;
    return Array.from({ length: this.config.batch }, () => this.#dataRng.nextUint32() % (span + 1));
  }

  /** One step: zero_grad, forward, CrossEntropyLoss, backward, clipGradNorm, AdamW, the schedule. */
  trainStep(): StepResult {
    const c = this.config;
    const t0 = performance.now();
    const { ids, targets } = windows(this.train, this.#nextStarts(), c.seqLen);
    const lr = this.optimizer.paramGroups[0]!.lr;
    // In reuseBuffers: the logits and the loss go back to the pool when the step returns, not at the next GC.
    const { loss, gradNorm } = reuseBuffers(() => {
      this.optimizer.zeroGrad();
      const logits = this.model.forward(ids);
      const l = this.criterion.forward(logits.reshape(-1, c.vocabSize), targets);
      l.backward();
      const norm = nn.utils.clipGradNorm(this.model.parameters(), c.clipNorm).item();
      this.optimizer.step();
      return { loss: l.item(), gradNorm: norm };
    });
    this.scheduler.step();
    this.step++;
    this.tokensSeen += c.batch * c.seqLen;
    this.trainSeconds += (performance.now() - t0) / 1000;
    return { step: this.step, loss, gradNorm, lr };
  }

  /** The mean loss over the held-out windows (eval mode, no grad; the same windows every time). */
  heldOutLoss(): number {
    const model = this.model;
    const c = this.config;
    model.eval();
    try {
      return noGrad(() => {
        let sum = 0;
        for (let i = 0; i < this.#heldOutStarts.length; i += c.batch) {
          const starts = this.#heldOutStarts.slice(i, i + c.batch);
          const { ids, targets } = windows(this.heldOut, starts, c.seqLen);
          const loss = this.criterion.forward(model.forward(ids).reshape(-1, c.vocabSize), targets).item();
          sum += loss * starts.length;
        }
        return sum / this.#heldOutStarts.length;
      });
    } finally {
      model.train();
    }
  }

  /** The checkpoint's tensors and JSON. */
  #checkpointContents(): { tensors: Record<string, Tensor>; meta: LmCheckpointMeta } {
    const tensors: Record<string, Tensor> = {};
    for (const [k, t] of Object.entries(this.model.stateDict())) tensors[`model.${k}`] = t;
    const sd = this.optimizer.stateDict();
    const numbers: LmCheckpointMeta['optimizer']['state'] = {};
    for (const [i, s] of Object.entries(sd.state)) {
      for (const [key, v] of Object.entries(s)) {
        if (v instanceof Tensor) tensors[`optimizer.${i}.${key}`] = v;
        else (numbers[i] ??= {})[key] = v;
      }
    }
    return {
      tensors,
      meta: {
        format: 'attnode-train-lm/1', config: this.config, step: this.step, tokensSeen: this.tokensSeen, trainSeconds: this.trainSeconds,
        corpus: { source: this.corpus.source, sha256: this.corpus.sha256, bytes: this.corpus.bytes.length },
        optimizer: { param_groups: sd.param_groups, state: numbers },
        scheduler: this.scheduler.stateDict(),
        rng: { global: getRngState(), data: this.#dataRng.getState() },
        curves: this.curves,
      },
    };
  }

  /**
   * Writes the checkpoint atomically: into `path`.tmp, flushed to disk, then renamed over `path`, so a run killed
   * at any moment leaves the previous checkpoint or the new one, never a torn file.
   */
  async saveCheckpoint(path: string): Promise<void> {
    const { tensors, meta } = this.#checkpointContents();
    const bytes = serializeSafetensors(tensors, { [META_KEY]: JSON.stringify(meta) });
    const tmp = `${path}.tmp`;
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(bytes);
      await fh.sync();
    } catch (e) {
      await fh.close();
      await rm(tmp, { force: true });
      throw e;
    }
    await fh.close();
    await rename(tmp, path);
  }
}

function checkConfig(c: LmConfig): void {
  const ints: (keyof LmConfig)[] = ['vocabSize', 'dModel', 'nhead', 'numLayers', 'dimFeedforward', 'seqLen', 'batch', 'warmupSteps', 'heldOutWindows'];
  for (const k of ints) {
    const v = c[k];
    if (!Number.isInteger(v) || (v as number) < 1) throw new RangeError(`train:lm: config '${k}' must be a positive integer, got ${String(v)}`);
  }
  if (c.vocabSize !== 256) throw new RangeError(`train:lm: config 'vocabSize' must be 256 (the tokens are bytes), got ${c.vocabSize}`);
  for (const k of ['lr', 'clipNorm'] as const) if (!(c[k] > 0)) throw new RangeError(`train:lm: config '${k}' must be > 0, got ${c[k]}`);
  if (!(c.weightDecay >= 0)) throw new RangeError(`train:lm: config 'weightDecay' must be >= 0, got ${c.weightDecay}`);
  if (!(c.dropout >= 0 && c.dropout < 1)) throw new RangeError(`train:lm: config 'dropout' must be in [0, 1), got ${c.dropout}`);
  if (!(c.heldOutFraction > 0 && c.heldOutFraction < 1)) throw new RangeError(`train:lm: config 'heldOutFraction' must be in (0, 1), got ${c.heldOutFraction}`);
  if (!Number.isInteger(c.seed) || c.seed < 0) throw new RangeError(`train:lm: config 'seed' must be a non-negative integer, got ${c.seed}`);
}

/** Options of {@link sampleText}. */
export interface SampleOptions {
  /** Bytes to generate. */
  maxNewTokens: number;
  temperature?: number;
  topK?: number;
  /** Seeds the draws (the same seed and weights give the same text). */
  seed: number;
}

/**
 * Continues `prompt` by sampling byte by byte (temperature, top-k; `TokenPicker` as `generate` uses), with a key/value
 * cache; when the position table is full, the cache is refilled with the last half of the window and decoding goes on.
 * Returns the generated text (without the prompt; invalid UTF-8 sequences become U+FFFD).
 */
export function sampleText(model: nn.CausalLM, prompt: string, o: SampleOptions): string {
  const fn = 'sampleText';
  const p = samplingParams(fn, { doSample: true, temperature: o.temperature ?? 0.8, topK: o.topK ?? 0 });
  const promptBytes = [...new TextEncoder().encode(prompt)];
  if (promptBytes.length === 0) throw new RangeError(`${fn}: argument 'prompt' must not be empty`);
  const maxLen = model.posEncoding.maxLen;
  const rng = new Rng(o.seed);
  const picker = new TokenPicker();
  const all = promptBytes.slice(-maxLen);
  const out: number[] = [];
  const wasTraining = model.training;
  model.eval();
  try {
    noGrad(() => {
      let cache = model.createCache({ batch: 1, capacity: maxLen });
      let logits = model.forwardStep(new Tensor(Int32Array.from(all), [1, all.length], 'int32'), cache);
      while (out.length < o.maxNewTokens) {
        const v = model.vocabSize;
        const last = logits.contiguous().data;
        const tok = picker.pick(last, last.length - v, v, p, rng, null);
        out.push(tok);
        all.push(tok);
        if (out.length === o.maxNewTokens) break;
        if (cache.length + 1 > maxLen) {
          const keep = all.slice(-Math.ceil(maxLen / 2));
          cache = model.createCache({ batch: 1, capacity: maxLen });
          logits = model.forwardStep(new Tensor(Int32Array.from(keep), [1, keep.length], 'int32'), cache);
        } else {
          logits = model.forwardStep(new Tensor(Int32Array.of(tok), [1, 1], 'int32'), cache);
        }
      }
    });
  } finally {
    model.train(wasTraining);
  }
  return new TextDecoder().decode(Uint8Array.from(out));
}

/**
 * Every head's attention probabilities over `ids` (one sequence, causal, eval mode): `maps[layer][head]` is the
 * T×T matrix, row i the query at position i, column j the key at position j (zero above the diagonal). The layers run
 * as `forward` runs them; each layer's self-attention is called once more on its normed input for the weights.
 */
export function attentionMaps(model: nn.CausalLM, ids: readonly number[]): number[][][][] {
  const T = ids.length;
  if (T < 1 || T > model.posEncoding.maxLen) {
    throw new RangeError(`attentionMaps: argument 'ids' must hold 1 to ${model.posEncoding.maxLen} tokens, got ${T}`);
  }
  const wasTraining = model.training;
  model.eval();
  try {
    return noGrad(() => {
      let x = model.posEncoding.forward(model.embedding.forward(new Tensor(Int32Array.from(ids), [1, T], 'int32')));
      const maps: number[][][][] = [];
      for (const layer of model.transformer.layers as Iterable<nn.TransformerEncoderLayer>) {
        const normed = layer.normFirst ? layer.norm1.forward(x) : x;
        const { weights } = layer.selfAttn.forward(normed, normed, normed, { needWeights: true, averageAttnWeights: false, isCausal: true });
        const w = weights!.contiguous().data; // [1, H, T, T]
        const H = weights!.shape[1]!;
        maps.push(Array.from({ length: H }, (_, h) =>
          Array.from({ length: T }, (_, i) => Array.from(w.subarray((h * T + i) * T, (h * T + i + 1) * T)))));
        x = layer.forward(x, { isCausal: true });
      }
      return maps;
    });
  } finally {
    model.train(wasTraining);
  }
}
