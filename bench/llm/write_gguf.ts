/**
 * Writes the Hugging Face folder of make_model.ts as a GGUF v3 file for
 * llama.cpp (architecture `llama`), F32 or BF16 matrices (norms stay F32, as
 * convert_hf_to_gguf.py does), alignment 32; or Q8_0 (every matrix, the
 * token embedding included, in llama.cpp's blocks of 32 weights: an fp16 scale
 * d = max|w| / 127, then 32 int8 q = round(w / d), 34 bytes, ggml type 8, as
 * ggml's quantize_row_q8_0_ref writes them; norms stay F32). q_proj / k_proj rows are permuted
 * to Meta's interleaved rotary layout exactly as convert_hf_to_gguf.py's
 * `LlamaModel.permute` does (k with the kv head count). The tied LM head is
 * left out (llama.cpp then uses token_embd.weight as output). The vocabulary
 * is a synthetic SentencePiece-style ('llama') one: <unk> <s> </s>, the 256
 * byte tokens <0x00>..<0xFF>, then placeholder pieces up to vocab_size.
 *
 *   npx tsx bench/llm/write_gguf.ts [--dir bench/models/smollm-135m-random] [--type f32|bf16|q8_0|both|all]
 *
 * Writes <dir>/model-<type>.gguf: f32 and bf16 for 'both' (the default), the three for 'all'.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { loadFolderWeights } from '../../lib/models/auto';
import type { Tensor } from '../../lib';
import { DEFAULT_DIR } from './make_model';

const enum VT { UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10 }
const GGML_F32 = 0;
const GGML_BF16 = 30;
const GGML_Q8_0 = 8;
/** llama.cpp's LLAMA_FTYPE values for general.file_type. */
const FILE_TYPE = { f32: 0, bf16: 32, q8_0: 7 } as const;
export type GgufType = keyof typeof FILE_TYPE;
/** Weights per Q8_0 block (QK8_0) and bytes per block (fp16 scale + 32 int8). */
export const QK8_0 = 32;
export const Q8_0_BLOCK_BYTES = 34;
const ALIGN = 32;

type KV = [string, 'u32' | 'f32' | 'str' | 'bool', number | string | boolean] | [string, 'arr', 'str' | 'f32' | 'i32', (string | number)[]];

class Buf {
  chunks: Buffer[] = [];
  len = 0;
  push(b: Buffer): void { this.chunks.push(b); this.len += b.length; }
  u32(v: number): void { const b = Buffer.alloc(4); b.writeUInt32LE(v); this.push(b); }
  i32(v: number): void { const b = Buffer.alloc(4); b.writeInt32LE(v); this.push(b); }
  u64(v: number | bigint): void { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); this.push(b); }
  f32(v: number): void { const b = Buffer.alloc(4); b.writeFloatLE(v); this.push(b); }
  str(s: string): void { const d = Buffer.from(s, 'utf8'); this.u64(d.length); this.push(d); }
  out(): Buffer { return Buffer.concat(this.chunks, this.len); }
}

function writeKV(b: Buf, kv: KV): void {
  b.str(kv[0]);
  switch (kv[1]) {
    case 'u32': b.u32(VT.UINT32); b.u32(kv[2] as number); break;
    case 'f32': b.u32(VT.FLOAT32); b.f32(kv[2] as number); break;
    case 'str': b.u32(VT.STRING); b.str(kv[2] as string); break;
    case 'bool': b.u32(VT.BOOL); b.push(Buffer.from([kv[2] ? 1 : 0])); break;
    case 'arr': {
      const [, , et, items] = kv as [string, 'arr', 'str' | 'f32' | 'i32', (string | number)[]];
      b.u32(VT.ARRAY);
      b.u32(et === 'str' ? VT.STRING : et === 'f32' ? VT.FLOAT32 : VT.INT32);
      b.u64(items.length);
      for (const it of items) {
        if (et === 'str') b.str(it as string);
        else if (et === 'f32') b.f32(it as number);
        else b.i32(it as number);
      }
      break;
    }
  }
}

/** convert_hf_to_gguf.py's permute: rows [H, 2, hd/2] → [H, hd/2, 2]. */
export function permuteRows(w: Float32Array, rows: number, cols: number, heads: number): Float32Array {
  const hd = rows / heads;
  const half = hd / 2;
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const dst = h * hd + i * 2 + j;
        const src = h * hd + j * half + i;
        out.set(w.subarray(src * cols, (src + 1) * cols), dst * cols);
      }
    }
  }
  return out;
}

function toBf16(f: Float32Array): Buffer {
  const u = new Uint32Array(f.buffer, f.byteOffset, f.length);
  const out = new Uint16Array(f.length);
  for (let i = 0; i < u.length; i++) {
    const x = u[i]!;
    out[i] = ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff; // round to nearest even (no NaNs here)
  }
  return Buffer.from(out.buffer);
}

/** float32 → IEEE half bits, round to nearest even (ggml's GGML_FP32_TO_FP16 on x86 with F16C). */
export function toFp16Bits(v: number): number {
  const f = new Float32Array([v]);
  const x = new Uint32Array(f.buffer)[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // Inf / NaN
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow → Inf
  if (e <= 0) {
    // Subnormal half (or zero): shift the implicit-1 mantissa right, rounding to nearest even.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let m = mant >>> shift;
    if (rest > half || (rest === half && (m & 1))) m++;
    return sign | m;
  }
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h++; // a carry into the exponent is still right
  return sign | h;
}

/**
 * Rows of `cols` weights (a multiple of 32) as ggml Q8_0 blocks, as quantize_row_q8_0_ref does: per block of 32,
 * amax = max |w|, d = amax / 127 and id = 1 / d (0 when d is 0) in float32, q = roundf(w * id) (half away from
 * zero), the block stored as fp16(d) then the 32 q.
 */
export function quantizeQ8_0(w: Float32Array, cols: number): Buffer {
  if (cols % QK8_0 !== 0) throw new RangeError(`quantizeQ8_0: argument 'cols' must be a multiple of ${QK8_0}, got ${cols}`);
  const blocks = w.length / QK8_0;
  const out = Buffer.alloc(blocks * Q8_0_BLOCK_BYTES);
  const f = Math.fround;
  for (let b = 0; b < blocks; b++) {
    let amax = 0;
    for (let j = 0; j < QK8_0; j++) amax = Math.max(amax, Math.abs(w[b * QK8_0 + j]!));
    const d = f(amax / 127);
    const id = d ? f(1 / d) : 0;
    const o = b * Q8_0_BLOCK_BYTES;
    out.writeUInt16LE(toFp16Bits(d), o);
    for (let j = 0; j < QK8_0; j++) {
      const x = f(w[b * QK8_0 + j]! * id);
      out.writeInt8(Math.sign(x) * Math.floor(Math.abs(x) + 0.5), o + 2 + j); // roundf: half away from zero
    }
  }
  return out;
}

export function writeGguf(dir: string, type: GgufType, weights: Record<string, Tensor>): string {
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  const E = cfg.hidden_size, H = cfg.num_attention_heads, HKV = cfg.num_key_value_heads, V = cfg.vocab_size;
  // Tensors: [gguf name, HF name, permute heads or 0]
  const list: [string, string, number][] = [['token_embd.weight', 'model.embed_tokens.weight', 0]];
  for (let l = 0; l < cfg.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    list.push(
      [`blk.${l}.attn_norm.weight`, `${p}input_layernorm.weight`, 0],
      [`blk.${l}.attn_q.weight`, `${p}self_attn.q_proj.weight`, H],
      [`blk.${l}.attn_k.weight`, `${p}self_attn.k_proj.weight`, HKV],
      [`blk.${l}.attn_v.weight`, `${p}self_attn.v_proj.weight`, 0],
      [`blk.${l}.attn_output.weight`, `${p}self_attn.o_proj.weight`, 0],
      [`blk.${l}.ffn_norm.weight`, `${p}post_attention_layernorm.weight`, 0],
      [`blk.${l}.ffn_gate.weight`, `${p}mlp.gate_proj.weight`, 0],
      [`blk.${l}.ffn_up.weight`, `${p}mlp.up_proj.weight`, 0],
      [`blk.${l}.ffn_down.weight`, `${p}mlp.down_proj.weight`, 0],
    );
  }
  list.push(['output_norm.weight', 'model.norm.weight', 0]);

  // Vocabulary: <unk> <s> </s>, 256 byte tokens, placeholders.
  const tokens: string[] = ['<unk>', '<s>', '</s>'];
  const types: number[] = [2, 3, 3]; // UNKNOWN, CONTROL, CONTROL
  for (let i = 0; i < 256; i++) { tokens.push(`<0x${i.toString(16).toUpperCase().padStart(2, '0')}>`); types.push(6); } // BYTE
  while (tokens.length < V) { tokens.push(`\u2581t${tokens.length}`); types.push(1); } // NORMAL
  const scores = tokens.map((_, i) => -i);

  const kvs: KV[] = [
    ['general.architecture', 'str', 'llama'],
    ['general.name', 'str', 'smollm-135m-random'],
    ['general.file_type', 'u32', FILE_TYPE[type]],
    ['general.alignment', 'u32', ALIGN],
    ['llama.vocab_size', 'u32', V],
    ['llama.context_length', 'u32', cfg.max_position_embeddings],
    ['llama.embedding_length', 'u32', E],
    ['llama.block_count', 'u32', cfg.num_hidden_layers],
    ['llama.feed_forward_length', 'u32', cfg.intermediate_size],
    ['llama.attention.head_count', 'u32', H],
    ['llama.attention.head_count_kv', 'u32', HKV],
    ['llama.rope.dimension_count', 'u32', E / H],
    ['llama.rope.freq_base', 'f32', cfg.rope_theta],
    ['llama.attention.layer_norm_rms_epsilon', 'f32', cfg.rms_norm_eps],
    ['tokenizer.ggml.model', 'str', 'llama'],
    ['tokenizer.ggml.tokens', 'arr', 'str', tokens],
    ['tokenizer.ggml.scores', 'arr', 'f32', scores],
    ['tokenizer.ggml.token_type', 'arr', 'i32', types],
    ['tokenizer.ggml.unknown_token_id', 'u32', 0],
    ['tokenizer.ggml.bos_token_id', 'u32', 1],
    ['tokenizer.ggml.eos_token_id', 'u32', 2],
    ['tokenizer.ggml.add_bos_token', 'bool', false],
  ];

  // Tensor data (each aligned to 32 bytes from the data section's start).
  const datas: Buffer[] = [];
  const infos = new Buf();
  let offset = 0;
  for (const [gname, hname, heads] of list) {
    const t = weights[hname];
    if (!t) throw new Error(`missing ${hname}`);
    const shape = t.shape as number[];
    let f = (t.contiguous().data as Float32Array);
    if (heads) f = permuteRows(f, shape[0]!, shape[1]!, heads);
    const isMatrix = shape.length === 2;
    const ggType = !isMatrix || type === 'f32' ? GGML_F32 : type === 'bf16' ? GGML_BF16 : GGML_Q8_0;
    const data = ggType === GGML_BF16 ? toBf16(f) : ggType === GGML_Q8_0 ? quantizeQ8_0(f, shape[1]!)
      : Buffer.from(f.buffer, f.byteOffset, f.byteLength);
    infos.str(gname);
    infos.u32(shape.length);
    for (const d of [...shape].reverse()) infos.u64(d); // ne[0] is the innermost (contiguous) dimension
    infos.u32(ggType);
    infos.u64(offset);
    datas.push(data);
    const pad = (ALIGN - (data.length % ALIGN)) % ALIGN;
    if (pad) datas.push(Buffer.alloc(pad));
    offset += data.length + pad;
  }
  const head = new Buf();
  head.push(Buffer.from('GGUF', 'ascii'));
  head.u32(3);
  head.u64(list.length);
  head.u64(kvs.length);
  for (const kv of kvs) writeKV(head, kv);
  const hdr = Buffer.concat([head.out(), infos.out()]);
  const hpad = (ALIGN - (hdr.length % ALIGN)) % ALIGN;
  const file = path.join(dir, `model-${type}.gguf`);
  const fd = fs.openSync(file, 'w');
  fs.writeSync(fd, hdr);
  fs.writeSync(fd, Buffer.alloc(hpad));
  for (const d of datas) fs.writeSync(fd, d);
  fs.closeSync(fd);
  return file;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { dir: { type: 'string' }, type: { type: 'string', default: 'both' } } });
  const dir = path.resolve(values.dir ?? DEFAULT_DIR);
  const weights = await loadFolderWeights(dir);
  const kinds: readonly GgufType[] = values.type === 'both' ? ['f32', 'bf16'] : values.type === 'all' ? ['f32', 'bf16', 'q8_0']
    : [values.type as GgufType];
  for (const k of kinds) if (!(k in FILE_TYPE)) throw new RangeError(`write_gguf: --type must be f32, bf16, q8_0, both or all, got ${k}`);
  for (const k of kinds) {
    const f = writeGguf(dir, k, weights);
    console.log(`wrote ${f} (${(fs.statSync(f).size / 1e6).toFixed(1)} MB)`);
  }
}

if (require.main === module) void main();
