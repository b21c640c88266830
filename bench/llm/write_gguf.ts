/**
 * Writes the Hugging Face folder of make_model.ts as a GGUF v3 file for
 * llama.cpp (architecture `llama`), F32 or BF16 matrices (norms stay F32, as
 * convert_hf_to_gguf.py does), alignment 32. q_proj / k_proj rows are permuted
 * to Meta's interleaved rotary layout exactly as convert_hf_to_gguf.py's
 * `LlamaModel.permute` does (k with the kv head count). The tied LM head is
 * left out (llama.cpp then uses token_embd.weight as output). The vocabulary
 * is a synthetic SentencePiece-style ('llama') one: <unk> <s> </s>, the 256
 * byte tokens <0x00>..<0xFF>, then placeholder pieces up to vocab_size.
 *
 *   npx tsx bench/llm/write_gguf.ts [--dir bench/models/smollm-135m-random] [--type f32|bf16|both]
 *
 * Writes <dir>/model-f32.gguf and/or <dir>/model-bf16.gguf.
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

export function writeGguf(dir: string, type: 'f32' | 'bf16', weights: Record<string, Tensor>): string {
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
    ['general.file_type', 'u32', type === 'f32' ? 0 : 32],
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
    const ggType = type === 'bf16' && isMatrix ? GGML_BF16 : GGML_F32;
    const data = ggType === GGML_BF16 ? toBf16(f) : Buffer.from(f.buffer, f.byteOffset, f.byteLength);
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
  const kinds = values.type === 'both' ? (['f32', 'bf16'] as const) : [values.type as 'f32' | 'bf16'];
  for (const k of kinds) {
    const f = writeGguf(dir, k, weights);
    console.log(`wrote ${f} (${(fs.statSync(f).size / 1e6).toFixed(1)} MB)`);
  }
}

if (require.main === module) void main();
