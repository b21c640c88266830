/**
 * The attnode CLI (run through tsx from the sources): `run` on a small
 * generated model file and JSONL input, bad flags → exit code 2 with usage,
 * and `serve` answering and shutting down cleanly on SIGTERM (a token-id
 * model from --config, and a Hugging Face chat folder and a llama2.c checkpoint
 * behind the OpenAI routes on the continuous-batching engine and its flags).
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { saveSafetensors } from '../lib/io/safetensors';
import { manualSeed } from '../lib/nn/init';
import { EncoderModel } from '../lib/serving/encoder-model';
import { tensor } from '../lib/tensor';
import { addon } from '../lib/backend/native';

const ROOT = path.resolve(__dirname, '..');
const TSX = path.join(ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs');
const CLI = path.join(ROOT, 'lib', 'cli', 'attnode.ts');

function cli(args: string[], input?: string): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [TSX, CLI, ...args], { cwd: ROOT, encoding: 'utf8', input, timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('attnode CLI', () => {
  let dir: string;
  let modelPath: string;
  let configPath: string;
  let model: EncoderModel;
  const options = { vocabSize: 40, dModel: 16, nhead: 2, numLayers: 2, dimFeedforward: 32, maxLen: 24 };

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'attnode-cli-'));
    manualSeed(123);
    model = new EncoderModel(options).eval();
    modelPath = path.join(dir, 'm.safetensors');
    configPath = path.join(dir, 'c.json');
    await saveSafetensors(modelPath, model.stateDict());
    fs.writeFileSync(configPath, JSON.stringify({ kind: 'encoder', options }));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('run: streams JSONL rows through the model, in order, with per-row errors', () => {
    const rows = ['[1, 2, 3]', '{"tokens": [4, 5, 6, 7, 8], "id": "b"}', '', '[39]', '[1, 40]', 'not json', '[]'];
    const extra = Array.from({ length: 20 }, (_, i) => JSON.stringify(Array.from({ length: 1 + (i % 9) }, (_, j) => (i + j) % 40)));
    const input = path.join(dir, 'in.jsonl');
    const output = path.join(dir, 'out.jsonl');
    fs.writeFileSync(input, [...rows, ...extra].join('\n') + '\n');
    const r = cli(['run', '--model', modelPath, '--config', configPath, '--input', input, '--output', output, '--batch-size', '4', '--output-kind', 'both']);
    expect(r.code, r.stderr).toBe(1); // rows with errors make the exit code 1
    expect(r.stderr).toMatch(/26 rows \(3 with errors\)/);
    const out = fs.readFileSync(output, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(out).toHaveLength(26);
    expect(out.map((o) => o.line).slice(0, 6)).toEqual([1, 2, 4, 5, 6, 7]);
    expect(out[1].id).toBe('b');
    expect(out[3].error).toMatch(/outside \[0, 40\)/);
    expect(out[4].error).toMatch(/JSON/);
    expect(out[5].error).toMatch(/empty/);
    // Each row equals the model run on it alone (padding in the batch changes nothing).
    const check = (tokens: number[], rec: { embeddings: number[][]; pooled: number[]; length: number }): void => {
      const want = model.forward(tensor(Int32Array.from(tokens), [1, tokens.length], 'int32'), null).data;
      expect(rec.length).toBe(tokens.length);
      rec.embeddings.flat().forEach((v, i) => expect(Math.abs(v - want[i]!)).toBeLessThan(1e-5));
    };
    check([1, 2, 3], out[0]);
    check([4, 5, 6, 7, 8], out[1]);
    check(JSON.parse(extra[7]!), out[6 + 7]);
  });

  it('run: reads stdin and writes stdout (pooled vectors by default)', () => {
    const r = cli(['run', '--model', modelPath, '--config', configPath, '--input', '-'], '[1,2]\n[3]\n');
    expect(r.code, r.stderr).toBe(0);
    const out = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(out.map((o) => o.pooled.length)).toEqual([16, 16]);
    expect(out[0].embeddings).toBeUndefined();
  });

  it.runIf(addon?.info().bf16 === true)('run --precision bfloat16: the same rows within bfloat16 error', () => {
    const input = '[1,2,3]\n[4,5]\n';
    const f32 = cli(['run', '--model', modelPath, '--config', configPath, '--input', '-'], input);
    const bf = cli(['run', '--model', modelPath, '--config', configPath, '--input', '-', '--precision', 'bfloat16'], input);
    expect(bf.code, bf.stderr).toBe(0);
    const a = f32.stdout.trim().split('\n').map((l) => JSON.parse(l).pooled as number[]);
    const b = bf.stdout.trim().split('\n').map((l) => JSON.parse(l).pooled as number[]);
    let diff = 0;
    a.flat().forEach((v, i) => (diff = Math.max(diff, Math.abs(v - b.flat()[i]!))));
    expect(diff).toBeGreaterThan(0);
    expect(diff).toBeLessThan(5e-2);
  });

  it('run --precision int8: the same rows within int8 error; an unknown precision is a usage error', () => {
    const input = '[1,2,3]\n[4,5]\n';
    const f32 = cli(['run', '--model', modelPath, '--config', configPath, '--input', '-'], input);
    const q = cli(['run', '--model', modelPath, '--config', configPath, '--input', '-', '--precision', 'int8'], input);
    expect(q.code, q.stderr).toBe(0);
    const a = f32.stdout.trim().split('\n').map((l) => JSON.parse(l).pooled as number[]);
    const b = q.stdout.trim().split('\n').map((l) => JSON.parse(l).pooled as number[]);
    let diff = 0;
    a.flat().forEach((v, i) => (diff = Math.max(diff, Math.abs(v - b.flat()[i]!))));
    expect(diff).toBeGreaterThan(0);
    expect(diff).toBeLessThan(5e-2);
    const bad = cli(['run', '--model', modelPath, '--config', configPath, '--input', '-', '--precision', 'int4'], input);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--precision must be float32, bfloat16 or int8, got 'int4'/);
  });

  it('demo: a real model streams text from a prompt, with tokens/s on the native and the TS backend', () => {
    const folder = cli(['demo', '--quick', '--model', 'test/fixtures/hf/gpt2-tiny', '--prompt', 'Hello', '--max-new-tokens', '12']);
    expect(folder.code, folder.stderr).toBe(0);
    expect(folder.stdout).toMatch(/Real model: gpt2-tiny \([\d.]+M parameters\), greedy, prompt "Hello"/);
    expect(folder.stdout).toMatch(/^native: Hello/m);
    expect(folder.stdout).toMatch(/^native +12 new tokens in \d+ ms: [\d.]+ tokens\/s/m);
    expect(folder.stdout).toMatch(/^ts +8 new tokens in \d+ ms: [\d.]+ tokens\/s/m);
    expect(folder.stdout).toMatch(/the first 8 tokens are the same on both backends/);
    const c = cli(['demo', '--quick', '--model', 'test/fixtures/llama2c/model.bin', '--tokenizer', 'test/fixtures/llama2c/tokenizer.bin', '--max-new-tokens', '10']);
    expect(c.code, c.stderr).toBe(0);
    expect(c.stdout).toMatch(/Real model: model\.bin .*prompt "Once upon a time"/);
    expect(c.stdout).toMatch(/the first 8 tokens are the same on both backends/);
    // Without --model: the embedded stories260K, or a skip that names what is missing.
    const d = cli(['demo', '--quick']);
    expect(d.code, d.stderr).toBe(0);
    expect(d.stdout).toMatch(/Real model: (skipped: the embedded model \(.*stories260K\.bin and tok512\.bin\) is not in this checkout|stories260K\.bin)/);
  }, 120_000);

  it('bad flags exit with code 2 and one line naming the problem and the command\'s --help', () => {
    for (const args of [
      ['run', '--bogus'],
      ['run', '--model', modelPath], // no --input
      ['run', '--input', 'x', '--batch-size', 'zero'],
      ['serve', '--port', 'abc'],
      ['serve', '--buckets', 'weird'],
      ['serve', '--precision', 'fp16'],
      ['serve', '--tokenizer', 'tok.bin'],
      ['serve', '--model', 'test/fixtures/llama2c/model.bin'],
      ['serve', '--model', 'test/fixtures/hf/gpt2-tiny', '--config', configPath],
      ['serve', '--max-running', '0'],
      ['serve', '--kv-cache-mb', 'lots'],
      ['serve', '--kv-cache-mb', '0'],
      ['serve', '--prefill-chunk', '-3'],
      ['run', '--input', '-', '--precision', 'int4'],
      ['demo', '--tokenizer', 'tok.bin'], // a tokenizer without its llama2.c model
      ['demo', '--max-new-tokens', '0'],
      ['demo', '--model'],
      ['frobnicate'],
    ]) {
      const r = cli(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr.trimEnd().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr, args.join(' ')).toMatch(/^attnode( \w+)?: .*; see attnode( \w+)? --help\n$/);
    }
  }, 240_000);

  it('serve: the generation flags name themselves when wrong or misplaced (exit 2, one line)', () => {
    const cases: [string[], RegExp][] = [
      [['serve', '--model', 'test/fixtures/hf/llama-chat', '--max-running', '1.5'], /--max-running needs an integer >= 1, got '1\.5'/],
      [['serve', '--model', 'test/fixtures/hf/llama-chat', '--prefill-chunk', '0'], /--prefill-chunk needs an integer >= 1, got '0'/],
      [['serve', '--model', 'test/fixtures/hf/llama-chat', '--kv-cache-mb', '99999999'], /--kv-cache-mb 99999999: .*option 'kvCacheBytes' must be at most/],
      [['serve', '--config', configPath, '--max-running', '2'], /--max-running: for generation models/],
      [['serve', '--model', 'test/fixtures/hf/bert-st', '--kv-cache-mb', '8'], /--kv-cache-mb: for generation models; 'bert-st' is an embeddings model/],
    ];
    for (const [args, msg] of cases) {
      const r = cli(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(msg);
      expect(r.stderr.trimEnd().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr).toMatch(/see attnode serve --help\n$/);
    }
  }, 120_000);

  it('a bad config file is a clear error (exit 1)', () => {
    const bad = path.join(dir, 'bad.json');
    fs.writeFileSync(bad, JSON.stringify({ kind: 'encoder', options: { vocabSize: 10, dModel: 8, nhead: 2, numLayer: 1 } }));
    const r = cli(['run', '--config', bad, '--input', '-'], '[1]\n');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/field "options.numLayer": not an encoder option \(did you mean .numLayers.\?\)\n  field "options.numLayers": expected an integer >= 1, got nothing/);
  });

  it('weights that do not fit the config: the file, the counts, the first keys and the hint (exit 1)', async () => {
    // The same weights saved from inside a wrapper (every key under 'model.'), and with a smaller vocabulary.
    const prefixed = path.join(dir, 'prefixed.safetensors');
    await saveSafetensors(prefixed, Object.fromEntries(Object.entries(model.stateDict()).map(([k, t]) => [`model.${k}`, t])));
    const n = Object.keys(model.stateDict()).length;
    const r = cli(['run', '--config', configPath, '--model', prefixed, '--input', '-'], '[1]\n');
    expect(r.code).toBe(1);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines[0]).toBe(`attnode run: ${prefixed}: the weights do not fit the "encoder" model of ${configPath}: loadStateDict: the state dict does not match EncoderModel: ${n} missing keys, ${n} unexpected keys`);
    expect(lines[1]).toMatch(new RegExp(`^  missing keys \\(${n}\\): embedding\\.weight, .*, … and ${n - 5} more$`));
    expect(lines[2]).toMatch(/^  unexpected keys \(\d+\): model\.embedding\.weight, /);
    expect(lines[3]).toBe("  hint: every unexpected key is a missing key under the prefix 'model.'; strip it first: nn.utils.consumePrefixInStateDictIfPresent(dict, 'model.')");
    const smaller = new EncoderModel({ ...options, vocabSize: 30 });
    const small = path.join(dir, 'small.safetensors');
    await saveSafetensors(small, smaller.stateDict());
    const s = cli(['run', '--config', configPath, '--model', small, '--input', '-'], '[1]\n');
    expect(s.code).toBe(1);
    expect(s.stderr).toMatch(/loadStateDict: size mismatch for 'embedding\.weight': expected shape \[40, 16\], got \[30, 16\]\n$/);
  });

  it('serve --model <hf folder>: the OpenAI routes answer; SIGTERM exits 0', async () => {
    const folder = path.join(ROOT, 'test', 'fixtures', 'hf', 'llama-chat');
    const { port, stop } = await startServe(['--model', folder, '--served-model-name', 'tiny-chat']);
    const health = await (await fetch(`http://127.0.0.1:${port}/healthz`)).json();
    expect(health).toMatchObject({ status: 'ok', model: { id: 'tiny-chat', family: 'llama', task: 'generation' } });
    const models = (await (await fetch(`http://127.0.0.1:${port}/v1/models`)).json()) as { data: { id: string }[] };
    expect(models.data.map((m) => m.id)).toEqual(['tiny-chat']);
    const r = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny-chat', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, temperature: 0 }),
    });
    expect(r.status).toBe(200);
    const body = (await r.json()) as { choices: { message: { role: string } }[]; usage: { completion_tokens: number } };
    expect(body.choices[0]!.message.role).toBe('assistant');
    expect(body.usage.completion_tokens).toBeGreaterThan(0);
    // The token-id route runs on the same engine (greedy).
    const gen = await fetch(`http://127.0.0.1:${port}/v1/generate`, { method: 'POST', body: JSON.stringify({ tokens: [316, 262], maxNewTokens: 3 }) });
    expect(gen.status).toBe(200);
    const ids = ((await gen.json()) as { tokens: number[] }).tokens;
    expect(ids.length).toBeGreaterThan(0);
    expect(ids.length).toBeLessThanOrEqual(3);
    const { code, stderr } = await stop();
    expect(code).toBe(0);
    expect(stderr).toMatch(/llama generation model 'tiny-chat'/);
    // The default engine: continuous batching with its defaults, said once in the log.
    expect(stderr).toMatch(/continuous batching \(GenerationEngine\): up to 8 sequences per step, KV cache [\d.]+ MiB = 1024 positions, prompts read 64 tokens per step, 64 requests may wait/);
  });

  it('serve a llama2.c checkpoint with --max-running, --kv-cache-mb, --prefill-chunk: concurrent requests on one engine', async () => {
    const { port, stop } = await startServe([
      '--model', 'test/fixtures/llama2c/model.bin', '--tokenizer', 'test/fixtures/llama2c/tokenizer.bin',
      '--max-running', '2', '--kv-cache-mb', '1', '--prefill-chunk', '16', '--max-queued', '8',
    ]);
    const health = (await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()) as { engine: Record<string, unknown> };
    expect(health.engine).toMatchObject({ kind: 'continuous', maxRunning: 2, prefillChunk: 16, maxQueued: 8 });
    expect(health.engine.kvCacheBytes).toBeLessThanOrEqual(1024 * 1024);
    expect(health.engine.kvCacheBytes).toBeGreaterThan(1024 * 1024 - 4096);
    const complete = async (prompt: string): Promise<string> => {
      const r = await fetch(`http://127.0.0.1:${port}/v1/completions`, {
        method: 'POST', body: JSON.stringify({ model: 'model.bin', prompt, max_tokens: 8, temperature: 0 }),
      });
      expect(r.status).toBe(200);
      return ((await r.json()) as { choices: { text: string }[] }).choices[0]!.text;
    };
    const prompts = ['Once upon a time', 'The dog', 'Lily', 'A big'];
    const alone: string[] = [];
    for (const p of prompts) alone.push(await complete(p));
    expect(await Promise.all(prompts.map(complete))).toEqual(alone);
    const m = (await (await fetch(`http://127.0.0.1:${port}/metrics`)).json()) as { generation: Record<string, number> };
    expect(m.generation).toMatchObject({ running: 0, queued: 0, kvBytesUsed: 0, kvBytesCap: health.engine.kvCacheBytes });
    expect(m.generation.steps).toBeGreaterThan(0);
    const { code, stderr } = await stop();
    expect(code).toBe(0);
    expect(stderr).toMatch(/continuous batching \(GenerationEngine\): up to 2 sequences per step, KV cache 1\.00 MiB = \d+ positions, prompts read 16 tokens per step, 8 requests may wait/);
  });

  it('serve: answers on the printed port and exits 0 after SIGTERM', async () => {
    const child = spawn(process.execPath, [TSX, CLI, 'serve', '--model', modelPath, '--config', configPath, '--port', '0'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString();
        const m = /"port":(\d+)/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      child.once('exit', () => reject(new Error(`serve exited early: ${err}`)));
    });
    const health = await (await fetch(`http://127.0.0.1:${port}/healthz`)).json();
    expect(health).toMatchObject({ status: 'ok', model: { kind: 'encoder', weights: 'file', vocabSize: 40 } });
    const enc = await fetch(`http://127.0.0.1:${port}/v1/encode`, { method: 'POST', body: JSON.stringify({ tokens: [1, 2, 3] }) });
    expect(enc.status).toBe(200);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(err).toMatch(/shut down cleanly/);
  });
});

/** Starts `attnode serve <args> --port 0`; resolves with its port and a stop() that sends SIGTERM. */
async function startServe(args: string[]): Promise<{ port: number; stop(): Promise<{ code: number | null; stderr: string }> }> {
  const child = spawn(process.execPath, [TSX, CLI, 'serve', ...args, '--port', '0'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /"port":(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    void exited.then(() => reject(new Error(`serve exited early: ${err}`)));
  });
  return {
    port,
    stop: async () => {
      child.kill('SIGTERM');
      return { code: await exited, stderr: err };
    },
  };
}
