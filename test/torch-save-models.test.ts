/**
 * Model folders whose weights are pytorch_model.bin (scripts/gen_torch_save_fixtures.py wrote them with torch 1.13
 * from the safetensors folders of the BERT, GPT-2 and Llama generators) through every Auto loader and a pipeline:
 * the outputs must match the reference.json of the safetensors folder they came from, and equal the safetensors
 * folder's model bit for bit. Also: a single file with a tied decoder stored once, shards with their index, bfloat16
 * storages with non-contiguous (transposed) weights, Hugging Face's preference for safetensors, sharded
 * safetensors, and the errors of folders with a bad or missing weight file.
 */
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadSafetensors, serializeSafetensors } from '../lib/io/safetensors';
import { loadTorchCheckpoint } from '../lib/io/torch/checkpoint';
import { AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, loadFolderWeights } from '../lib/models/auto';
import { pipeline } from '../lib/pipelines';
import { Tensor } from '../lib/tensor';
import { backends } from './helpers/backends';
import { maxAbsDiff as maxDiff } from './helpers/reference';

const HF = path.join(__dirname, 'fixtures', 'hf');
const dir = (name: string): string => path.join(HF, name);
const ref = <T>(name: string): T => JSON.parse(readFileSync(path.join(HF, name, 'reference.json'), 'utf8')) as T;
const ids = (rows: number[][]): Tensor<'int32'> => new Tensor(Int32Array.from(rows.flat()), [rows.length, rows[0]!.length], 'int32');

const bytesOf = (t: Tensor<'float32'>): Buffer => {
  const d = t.contiguous().data;
  return Buffer.from(d.buffer, d.byteOffset, d.byteLength);
};
const sameBits = (a: Tensor<'float32'>, b: Tensor<'float32'>): boolean => bytesOf(a).equals(bytesOf(b));

interface BertRef { input_ids: number[][]; attention_mask: number[][]; token_type_ids: number[][]; last_hidden_state: number[]; logits: number[] }
interface LogitsRef { input_ids: number[]; logits: number[][]; greedy?: number[] }

describe.each(backends)('pytorch_model.bin folders on the %s backend', (backend) => {
  it('bert-mlm-bin: AutoModelForMaskedLM and AutoModel match bert-mlm reference.json, and its safetensors model exactly', async () => {
    const r = ref<BertRef>('bert-mlm');
    const opts = { attentionMask: ids(r.attention_mask), tokenTypeIds: ids(r.token_type_ids) };
    const mlm = (await AutoModelForMaskedLM.fromPretrained(dir('bert-mlm-bin'))).useBackend(backend);
    const out = mlm.forward(ids(r.input_ids), opts);
    expect(maxDiff(out.logits, r.logits)).toBeLessThan(1e-4);
    const fromSt = (await AutoModelForMaskedLM.fromPretrained(dir('bert-mlm'))).useBackend(backend).forward(ids(r.input_ids), opts);
    expect(sameBits(out.logits, fromSt.logits)).toBe(true);
    const bare = (await AutoModel.fromPretrained(dir('bert-mlm-bin'))).useBackend(backend);
    expect(maxDiff(bare.forward(ids(r.input_ids), opts).lastHiddenState, r.last_hidden_state)).toBeLessThan(1e-4);
  });

  it('gpt2-tiny-bin-sharded: logits and greedy tokens of gpt2-tiny from two shards', async () => {
    const r = ref<LogitsRef>('gpt2-tiny');
    const model = (await AutoModelForCausalLM.fromPretrained(dir('gpt2-tiny-bin-sharded'))).useBackend(backend);
    const logits = model.forward(ids([r.input_ids])).contiguous();
    expect(maxDiff(logits, r.logits.flat())).toBeLessThan(1e-4);
    const out = model.generate(ids([r.input_ids]), { maxNewTokens: 10 });
    expect(Array.from(out.data).slice(r.input_ids.length)).toEqual(r.greedy);
  });

  it('llama3-bf16-tied-bin: bfloat16 storages and transposed weights give llama3-bf16-tied logits', async () => {
    const r = ref<LogitsRef>('llama3-bf16-tied');
    const model = (await AutoModelForCausalLM.fromPretrained(dir('llama3-bf16-tied-bin'))).useBackend(backend);
    const logits = model.forward(ids([r.input_ids])).contiguous();
    expect(maxDiff(logits, r.logits.flat())).toBeLessThan(1e-4);
    const fromSt = (await AutoModelForCausalLM.fromPretrained(dir('llama3-bf16-tied'))).useBackend(backend).forward(ids([r.input_ids]));
    expect(sameBits(logits, fromSt.contiguous())).toBe(true);
  });
});

describe('pytorch_model.bin weights', () => {
  it('the tied decoder is stored once: its tensor shares the word embeddings memory', async () => {
    const { tensors } = await loadTorchCheckpoint(path.join(dir('bert-mlm-bin'), 'pytorch_model.bin'));
    const dec = tensors['cls.predictions.decoder.weight']!;
    const emb = tensors['bert.embeddings.word_embeddings.weight']!;
    expect(dec.data.buffer).toBe(emb.data.buffer);
    expect(dec.data.byteOffset).toBe(emb.data.byteOffset);
  });

  it('transposed weights are views in the checkpoint and contiguous copies with the same values from loadFolderWeights', async () => {
    const { tensors: raw } = await loadTorchCheckpoint(path.join(dir('llama3-bf16-tied-bin'), 'pytorch_model.bin'));
    const key = 'model.layers.0.self_attn.q_proj.weight';
    expect(raw[key]!.isContiguous()).toBe(false);
    const folder = await loadFolderWeights(dir('llama3-bf16-tied-bin'));
    expect(Object.values(folder).every((t) => t.isContiguous())).toBe(true);
    const st = (await loadSafetensors(path.join(dir('llama3-bf16-tied'), 'model.safetensors'))).tensors;
    expect(Object.keys(folder).sort()).toEqual(Object.keys(st).sort());
    for (const [k, t] of Object.entries(st)) expect(sameBits(folder[k] as Tensor<'float32'>, t as Tensor<'float32'>), k).toBe(true);
  });

  it('the fill-mask pipeline runs from a pytorch_model.bin folder as from the safetensors one', async () => {
    const r = ref<{ fill_mask: { text: string; top_ids: number[] } }>('bert-mlm').fill_mask;
    const p = await pipeline('fill-mask', dir('bert-mlm-bin'));
    const got = await p(r.text);
    const want = await (await pipeline('fill-mask', dir('bert-mlm')))(r.text);
    expect(got).toEqual(want);
    expect((got as { token: number }[]).map((c) => c.token)).toEqual(r.top_ids);
  });
});

describe('which weight file a folder loads', () => {
  const tmp = (): string => mkdtempSync(path.join(tmpdir(), 'attnode-bin-'));
  const copy = (from: string, to: string, files: string[]): void => {
    for (const f of files) copyFileSync(path.join(dir(from), f), path.join(to, f));
  };

  it('safetensors is preferred when both exist, as Hugging Face does (the .bin beside it is never read)', async () => {
    const d = tmp();
    copy('gpt2-tiny', d, ['config.json', 'model.safetensors']);
    writeFileSync(path.join(d, 'pytorch_model.bin'), 'not a checkpoint');
    const model = await AutoModelForCausalLM.fromPretrained(d);
    const r = ref<LogitsRef>('gpt2-tiny');
    expect(maxDiff(model.forward(ids([r.input_ids])).contiguous(), r.logits.flat())).toBeLessThan(1e-4);
  });

  it('sharded safetensors load through their index too', async () => {
    const d = tmp();
    copy('gpt2-tiny', d, ['config.json']);
    const all = (await loadSafetensors(path.join(dir('gpt2-tiny'), 'model.safetensors'))).tensors;
    const names = Object.keys(all);
    const half = Math.ceil(names.length / 2);
    const shards = [names.slice(0, half), names.slice(half)];
    const weightMap: Record<string, string> = {};
    shards.forEach((keys, i) => {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      writeFileSync(path.join(d, file), serializeSafetensors(Object.fromEntries(keys.map((k) => [k, all[k]!]))));
      for (const k of keys) weightMap[k] = file;
    });
    writeFileSync(path.join(d, 'model.safetensors.index.json'), JSON.stringify({ weight_map: weightMap }));
    const model = await AutoModelForCausalLM.fromPretrained(d);
    const r = ref<LogitsRef>('gpt2-tiny');
    expect(maxDiff(model.forward(ids([r.input_ids])).contiguous(), r.logits.flat())).toBeLessThan(1e-4);
  });

  it('bad weight files are errors naming the file and the field', async () => {
    let d = tmp();
    copy('bert-mlm-bin', d, ['config.json']);
    await expect(AutoModel.fromPretrained(d)).rejects.toThrow(
      /no weights found \(expected model\.safetensors, model\.safetensors\.index\.json, pytorch_model\.bin, pytorch_model\.bin\.index\.json\)/,
    );
    writeFileSync(path.join(d, 'pytorch_model.bin'), readFileSync(path.join(dir('bert-mlm-bin'), 'pytorch_model.bin')).subarray(0, 50_000));
    await expect(AutoModel.fromPretrained(d)).rejects.toThrow(/pytorch_model\.bin: torch checkpoint: zip: no end-of-central-directory record/);

    d = tmp();
    copy('gpt2-tiny-bin-sharded', d, ['config.json', 'pytorch_model.bin.index.json', 'pytorch_model-00001-of-00002.bin']);
    await expect(AutoModelForCausalLM.fromPretrained(d)).rejects.toThrow(/pytorch_model-00002-of-00002\.bin/);
    const index = JSON.parse(readFileSync(path.join(d, 'pytorch_model.bin.index.json'), 'utf8')) as { weight_map: Record<string, string> };
    index.weight_map['transformer.wte.weight'] = '../elsewhere.bin';
    writeFileSync(path.join(d, 'pytorch_model.bin.index.json'), JSON.stringify(index));
    await expect(AutoModelForCausalLM.fromPretrained(d)).rejects.toThrow(
      /pytorch_model\.bin\.index\.json: field 'weight_map' names a shard "\.\.\/elsewhere\.bin", expected a file name in the folder/,
    );
    writeFileSync(path.join(d, 'pytorch_model.bin.index.json'), JSON.stringify({ weight_map: [] }));
    await expect(AutoModelForCausalLM.fromPretrained(d)).rejects.toThrow(/field 'weight_map' must be an object of shard names/);
    writeFileSync(path.join(d, 'pytorch_model.bin.index.json'), '{');
    await expect(AutoModelForCausalLM.fromPretrained(d)).rejects.toThrow(/pytorch_model\.bin\.index\.json: is not valid JSON/);

    // A pickle that is not a state dict of tensors is refused with the file named.
    d = tmp();
    copy('bert-mlm-bin', d, ['config.json']);
    copyFileSync(path.join(__dirname, 'fixtures', 'torch_save', 'os_system.pt'), path.join(d, 'pytorch_model.bin'));
    await expect(AutoModel.fromPretrained(d)).rejects.toThrow(/pytorch_model\.bin: torch checkpoint: .*global 'posix\.system' is refused/);
    await expect(loadFolderWeights(3 as never)).rejects.toThrow(/argument 'dir' must be a string/);
  });
});
