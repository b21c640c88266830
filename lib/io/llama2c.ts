/**
 * karpathy/llama2.c's files: the checkpoint (`model.bin`, version 0) and the
 * tokenizer (`tokenizer.bin`).
 *
 * Checkpoint: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
 * vocab_size, seq_len; a negative vocab_size means the classifier is stored
 * separately), then float32 tensors in run.c's order: token embedding, per
 * layer blocks of attention norms, wq, wk, wv, wo, ffn norms, w1, w2, w3,
 * the final norm, two RoPE tables (not used: attnode computes them), and the
 * classifier when unshared. Each matrix is [out, in], PyTorch's Linear layout.
 * llama2.c rotates adjacent pairs of dimensions and uses RMSNorm eps 1e-5.
 *
 * Tokenizer: int32 max_token_length, then per token a float32 score, an
 * int32 byte length and the bytes. Encoding is run.c's: a dummy-prefix space,
 * one token per UTF-8 character (unknown ones as bytes, ids 3 + byte), then
 * repeated merges of the adjacent pair whose merged string has the highest
 * score.
 */
import { readFile } from 'node:fs/promises';
import { Tensor } from '../tensor';
import { LlamaForCausalLM, type LlamaConfig } from '../models/llama';

/** The header of a llama2.c checkpoint. */
export interface Llama2cHeader {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  seqLen: number;
  /** The classifier is the token embedding (vocab_size was positive). */
  sharedClassifier: boolean;
}

const HEADER_BYTES = 7 * 4;
const utf8 = new TextEncoder();

/** Reads and checks the header; every size must be positive and consistent. */
export function parseLlama2cHeader(buf: Uint8Array, file = 'checkpoint'): Llama2cHeader {
  if (buf.byteLength < HEADER_BYTES) {
    throw new RangeError(`${file}: a llama2.c checkpoint starts with 7 int32 header fields (28 bytes), got ${buf.byteLength} bytes`);
  }
  const dv = new DataView(buf.buffer, buf.byteOffset, HEADER_BYTES);
  const f = Array.from({ length: 7 }, (_, i) => dv.getInt32(i * 4, true));
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, vocab, seqLen] = f as [number, number, number, number, number, number, number];
  const names = ['dim', 'hidden_dim', 'n_layers', 'n_heads', 'n_kv_heads', 'vocab_size', 'seq_len'];
  f.forEach((v, i) => {
    if (i !== 5 ? v <= 0 : v === 0) throw new RangeError(`${file}: header field ${names[i]} must be positive, got ${v}`);
  });
  if (dim % nHeads !== 0) throw new RangeError(`${file}: dim (${dim}) must be divisible by n_heads (${nHeads})`);
  if (nHeads % nKvHeads !== 0) throw new RangeError(`${file}: n_heads (${nHeads}) must be divisible by n_kv_heads (${nKvHeads})`);
  if ((dim / nHeads) % 2 !== 0) throw new RangeError(`${file}: the head size (${dim / nHeads}) must be even for rotary embeddings`);
  return { dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize: Math.abs(vocab), seqLen, sharedClassifier: vocab > 0 };
}

/** The Llama configuration a llama2.c checkpoint describes. */
export function llama2cConfig(h: Llama2cHeader): LlamaConfig {
  return {
    vocabSize: h.vocabSize, hiddenSize: h.dim, intermediateSize: h.hiddenDim, numHiddenLayers: h.nLayers,
    numAttentionHeads: h.nHeads, numKeyValueHeads: h.nKvHeads, maxPositionEmbeddings: h.seqLen, rmsNormEps: 1e-5,
    ropeTheta: 10000, tieWordEmbeddings: h.sharedClassifier, ropeInterleaved: true,
  };
}

/**
 * The checkpoint's tensors under Hugging Face's LlamaForCausalLM keys, as
 * views of one float32 copy of the weights (no per-tensor copies).
 */
export function llama2cStateDict(buf: Uint8Array, h: Llama2cHeader, file = 'checkpoint'): Record<string, Tensor<'float32'>> {
  const { dim, hiddenDim: hid, nLayers: L, nHeads, nKvHeads, vocabSize: vocab, seqLen } = h;
  const hd = dim / nHeads;
  const kv = hd * nKvHeads;
  const sizes: [string, number][] = [
    ['token_embedding_table', vocab * dim], ['rms_att_weight', L * dim], ['wq', L * dim * dim], ['wk', L * kv * dim],
    ['wv', L * kv * dim], ['wo', L * dim * dim], ['rms_ffn_weight', L * dim], ['w1', L * hid * dim],
    ['w2', L * dim * hid], ['w3', L * hid * dim], ['rms_final_weight', dim], ['freq_cis', seqLen * hd],
  ];
  if (!h.sharedClassifier) sizes.push(['wcls', vocab * dim]);
  const floats = sizes.reduce((n, [, s]) => n + s, 0);
  const need = HEADER_BYTES + floats * 4;
  if (buf.byteLength < need) {
    throw new RangeError(`${file}: the header (dim ${dim}, hidden ${hid}, ${L} layers, ${nHeads} heads, ${nKvHeads} kv heads, vocab ${vocab}, seq_len ${seqLen}) needs ${need} bytes, the file has ${buf.byteLength} (truncated, or another format)`);
  }
  // One aligned copy; tensors are views into it.
  const all = new Float32Array(floats);
  new Uint8Array(all.buffer).set(buf.subarray(HEADER_BYTES, need));
  const parts: Record<string, Float32Array> = {};
  let off = 0;
  for (const [name, n] of sizes) {
    parts[name] = all.subarray(off, off + n);
    off += n;
  }
  const t = (name: string, layer: number, shape: number[]): Tensor<'float32'> => {
    const n = shape.reduce((p, d) => p * d, 1);
    return new Tensor(parts[name]!.subarray(layer * n, (layer + 1) * n), shape, 'float32');
  };
  const out: Record<string, Tensor<'float32'>> = {
    'model.embed_tokens.weight': t('token_embedding_table', 0, [vocab, dim]),
    'model.norm.weight': t('rms_final_weight', 0, [dim]),
  };
  if (!h.sharedClassifier) out['lm_head.weight'] = t('wcls', 0, [vocab, dim]);
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}.`;
    out[`${p}input_layernorm.weight`] = t('rms_att_weight', l, [dim]);
    out[`${p}self_attn.q_proj.weight`] = t('wq', l, [dim, dim]);
    out[`${p}self_attn.k_proj.weight`] = t('wk', l, [kv, dim]);
    out[`${p}self_attn.v_proj.weight`] = t('wv', l, [kv, dim]);
    out[`${p}self_attn.o_proj.weight`] = t('wo', l, [dim, dim]);
    out[`${p}post_attention_layernorm.weight`] = t('rms_ffn_weight', l, [dim]);
    out[`${p}mlp.gate_proj.weight`] = t('w1', l, [hid, dim]);
    out[`${p}mlp.down_proj.weight`] = t('w2', l, [dim, hid]);
    out[`${p}mlp.up_proj.weight`] = t('w3', l, [hid, dim]);
  }
  return out;
}

/** A tokenizer in llama2.c's `tokenizer.bin` format (SentencePiece-style BPE by scores, byte fallback). */
export class Llama2cTokenizer {
  readonly vocab: readonly string[];
  readonly scores: Float32Array;
  readonly maxTokenLength: number;
  readonly bosId = 1;
  readonly eosId = 2;
  /** BOS / EOS / padding ids under the names the Hugging Face tokenizers use (llama2.c has no padding token). */
  readonly bosTokenId = 1;
  readonly eosTokenId = 2;
  readonly padTokenId: number | null = null;
  readonly #ids: Map<string, number>;
  readonly #bytes: readonly Uint8Array[];

  constructor(vocab: string[], bytes: Uint8Array[], scores: Float32Array, maxTokenLength: number) {
    this.vocab = vocab;
    this.#bytes = bytes;
    this.scores = scores;
    this.maxTokenLength = maxTokenLength;
    this.#ids = new Map();
    // The first id of a string wins, as run.c's sorted lookup finds one of them.
    vocab.forEach((s, i) => {
      if (!this.#ids.has(s)) this.#ids.set(s, i);
    });
  }

  /** Parses `tokenizer.bin` for a vocabulary of `vocabSize` tokens (the model's). */
  static parse(buf: Uint8Array, vocabSize: number, file = 'tokenizer.bin'): Llama2cTokenizer {
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const need = (at: number, n: number, what: string): void => {
      if (at + n > buf.byteLength) {
        throw new RangeError(`${file}: truncated at byte ${at} reading ${what} (the file has ${buf.byteLength} bytes for ${vocabSize} tokens)`);
      }
    };
    need(0, 4, 'max_token_length');
    const maxTokenLength = dv.getInt32(0, true);
    if (maxTokenLength <= 0) throw new RangeError(`${file}: max_token_length must be positive, got ${maxTokenLength}`);
    const vocab: string[] = [];
    const bytes: Uint8Array[] = [];
    const scores = new Float32Array(vocabSize);
    const dec = new TextDecoder('utf-8');
    let at = 4;
    for (let i = 0; i < vocabSize; i++) {
      need(at, 8, `token ${i}'s score and length`);
      scores[i] = dv.getFloat32(at, true);
      const len = dv.getInt32(at + 4, true);
      if (len < 0 || len > maxTokenLength) {
        throw new RangeError(`${file}: token ${i} has length ${len}, expected 0..${maxTokenLength} (max_token_length)`);
      }
      at += 8;
      need(at, len, `token ${i}'s ${len} bytes`);
      const b = buf.slice(at, at + len);
      bytes.push(b);
      vocab.push(dec.decode(b));
      at += len;
    }
    return new Llama2cTokenizer(vocab, bytes, scores, maxTokenLength);
  }

  /**
   * Token ids of `text` (run.c's `encode`), BOS first unless `addSpecialTokens` (Hugging Face's name, as Llama's
   * tokenizer adds BOS only) or `bos` is false; EOS last when `eos` is true.
   */
  encode(text: string, options: { addSpecialTokens?: boolean; bos?: boolean; eos?: boolean } = {}): number[] {
    if (typeof text !== 'string') throw new TypeError(`Llama2cTokenizer.encode: argument 'text' must be a string, got ${typeof text}`);
    for (const k of ['addSpecialTokens', 'bos', 'eos'] as const) {
      if (options[k] !== undefined && typeof options[k] !== 'boolean') {
        throw new TypeError(`Llama2cTokenizer.encode: option '${k}' must be a boolean, got ${typeof options[k]}`);
      }
    }
    const tokens: number[] = [];
    if (options.bos ?? options.addSpecialTokens ?? true) tokens.push(this.bosId);
    if (text.length > 0) {
      const prefix = this.#ids.get(' ');
      if (prefix !== undefined) tokens.push(prefix);
    }
    for (const ch of text) {
      const id = this.#ids.get(ch);
      if (id !== undefined) {
        tokens.push(id);
        continue;
      }
      // Byte fallback: ids 0..2 are <unk>, <s>, </s>; byte b is id 3 + b.
      for (const b of utf8.encode(ch)) tokens.push(b + 3);
    }
    // As run.c, pairs are looked at from the first token on (BOS included: "<s>" never starts a merge in practice).
    for (;;) {
      let best = -Infinity;
      let bestId = -1;
      let bestAt = -1;
      for (let i = 0; i < tokens.length - 1; i++) {
        const id = this.#ids.get(this.vocab[tokens[i]!]! + this.vocab[tokens[i + 1]!]!);
        if (id !== undefined && this.scores[id]! > best) {
          best = this.scores[id]!;
          bestId = id;
          bestAt = i;
        }
      }
      if (bestAt < 0) break;
      tokens.splice(bestAt, 2, bestId);
    }
    if (options.eos) tokens.push(this.eosId);
    return tokens;
  }

  /** The bytes token `id` stands for after token `prev` (run.c's `decode`: no leading space after BOS, `<0xXX>` bytes). */
  pieceBytes(prev: number, id: number): Uint8Array {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocab.length) {
      throw new RangeError(`Llama2cTokenizer.decode: token id must be in [0, ${this.vocab.length}), got ${id}`);
    }
    let b = this.#bytes[id]!;
    if (prev === this.bosId && b[0] === 0x20) b = b.subarray(1);
    const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(this.vocab[id]!);
    return m ? Uint8Array.of(parseInt(m[1]!, 16)) : b;
  }

  /**
   * The text of `ids`, UTF-8 decoded as a whole so byte-fallback characters come out whole. BOS and EOS are dropped
   * as run.c prints them (`skipSpecialTokens` defaults to true here); `skipSpecialTokens: false` writes them as
   * their pieces `<s>` / `</s>`.
   */
  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    if (options.skipSpecialTokens !== undefined && typeof options.skipSpecialTokens !== 'boolean') {
      throw new TypeError(`Llama2cTokenizer.decode: option 'skipSpecialTokens' must be a boolean, got ${typeof options.skipSpecialTokens}`);
    }
    const skip = options.skipSpecialTokens ?? true;
    const parts: Uint8Array[] = [];
    let prev = -1;
    for (const id of ids) {
      if (id !== this.bosId && id !== this.eosId) parts.push(this.pieceBytes(prev, id));
      else if (!skip) parts.push(this.#bytes[id]!);
      prev = id;
    }
    const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) {
      all.set(p, o);
      o += p.length;
    }
    return new TextDecoder('utf-8').decode(all);
  }
}

/** What {@link loadLlama2c} returns. */
export interface Llama2cModel {
  model: LlamaForCausalLM;
  config: LlamaConfig;
  header: Llama2cHeader;
  tokenizer: Llama2cTokenizer | null;
}

/** Loads a llama2.c checkpoint (and, given `tokenizer`, its `tokenizer.bin`) into a {@link LlamaForCausalLM}. */
export async function loadLlama2c(path: string, options: { tokenizer?: string } = {}): Promise<Llama2cModel> {
  if (typeof path !== 'string') throw new TypeError(`loadLlama2c: argument 'path' must be a string, got ${typeof path}`);
  const buf = new Uint8Array(await readFile(path));
  const header = parseLlama2cHeader(buf, path);
  const config = llama2cConfig(header);
  const model = new LlamaForCausalLM(config);
  model.loadStateDict(llama2cStateDict(buf, header, path));
  model.eval();
  const tokenizer = options.tokenizer
    ? Llama2cTokenizer.parse(new Uint8Array(await readFile(options.tokenizer)), header.vocabSize, options.tokenizer)
    : null;
  return { model, config, header, tokenizer };
}
