import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { manualSeed, randn, saveSafetensors } from '../lib/index';
import {
  AUSTEN_DIR, LmRun, attentionMaps, loadCorpus, sampleText, splitCorpus, unwrapParagraphs, warmupFactor, windows,
  type Corpus, type LmConfig,
} from '../bench/train/lm-task';

// The opening of Pride and Prejudice (1813, public domain), repeated: enough bytes for tiny windows.
const PARAGRAPH = 'It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in ' +
  'want of a wife. However little known the feelings or views of such a man may be on his first entering a ' +
  'neighbourhood, this truth is so well fixed in the minds of the surrounding families, that he is considered the ' +
  'rightful property of some one or other of their daughters.\n';

async function textCorpus(dir: string, text: string): Promise<Corpus> {
  const file = join(dir, `text-${text.length}.txt`);
  await writeFile(file, text);
  return loadCorpus(file);
}

const tiny: LmConfig = {
  vocabSize: 256, dModel: 16, nhead: 2, numLayers: 2, dimFeedforward: 32, seqLen: 16, batch: 4, dropout: 0.1,
  lr: 3e-3, warmupSteps: 3, weightDecay: 0.1, clipNorm: 0.5, heldOutFraction: 0.1, heldOutWindows: 5, seed: 7,
};

const dirs: string[] = [];
afterAll(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }); });
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'attnode-train-lm-'));
  dirs.push(d);
  return d;
}

describe('train:lm data', () => {
  it('unwraps hard-wrapped paragraphs into one line each', () => {
    expect(unwrapParagraphs('CHAPTER 1\n\n\nThe family of Dashwood had long\nbeen settled in Sussex.  Their estate\r\nwas large.\n\n  Next.\n'))
      .toBe('CHAPTER 1\nThe family of Dashwood had long been settled in Sussex. Their estate was large.\nNext.\n');
  });

  it('windows are the bytes and the next bytes; a window past the end is a RangeError', () => {
    const text = new TextEncoder().encode('abcdefgh');
    const { ids, targets } = windows(text, [0, 3], 4);
    expect(ids.shape).toEqual([2, 4]);
    expect(String.fromCharCode(...ids.data)).toBe('abcddefg');
    expect(String.fromCharCode(...targets.data)).toBe('bcdeefgh');
    expect(() => windows(text, [4], 4)).toThrow(/start 4 of window 0 does not leave seqLen 4 \+ 1 bytes in a text of 8/);
  });

  it('holds out the end of the text; too little text names the part', () => {
    const bytes = new Uint8Array(1000);
    const { train, heldOut } = splitCorpus(bytes, { heldOutFraction: 0.1, seqLen: 16 });
    expect([train.length, heldOut.length]).toEqual([900, 100]);
    expect(() => splitCorpus(bytes, { heldOutFraction: 0.01, seqLen: 16 })).toThrow(/the held-out text has 10 bytes/);
  });

  it('the warm-up rises linearly to 1, then decays as 1/sqrt(step)', () => {
    const f = warmupFactor(4);
    expect([0, 1, 2, 3].map(f)).toEqual([0.25, 0.5, 0.75, 1]);
    expect(f(15)).toBeCloseTo(0.5, 12);
  });

  it.skipIf(!existsSync(AUSTEN_DIR))(`reads Jane Austen's six novels (skipped without Debian's r-cran-janeaustenr in ${AUSTEN_DIR})`, async () => {
    const c = await loadCorpus();
    expect(c.bytes.length).toBeGreaterThan(3_500_000);
    const text = new TextDecoder().decode(c.bytes);
    expect(text.slice(0, 22)).toBe('SENSE AND SENSIBILITY\n');
    // Paragraphs are unwrapped: Pride and Prejudice's first sentence is on one line.
    expect(text.includes('\nIt is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.')).toBe(true);
    expect(text.slice(-7)).toBe('\nFinis\n'); // the end of Persuasion
    expect(c.sha256).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe('train:lm run', () => {
  it('a run resumed from a checkpoint takes the same steps as one never interrupted (dropout on)', async () => {
    const dir = await tempDir();
    const corpus = await textCorpus(dir, PARAGRAPH.repeat(4));
    const straight = LmRun.create(tiny, corpus);
    const want = Array.from({ length: 8 }, () => straight.trainStep());
    const wantHeld = straight.heldOutLoss();

    const first = LmRun.create(tiny, corpus);
    const got = Array.from({ length: 4 }, () => first.trainStep());
    const path = join(dir, 'checkpoint.safetensors');
    await first.saveCheckpoint(path);
    expect(await readdir(dir)).not.toContain('checkpoint.safetensors.tmp');
    // Another model and other draws in between: the resumed run must not depend on what the process did meanwhile.
    manualSeed(12345);
    LmRun.create({ ...tiny, seed: 99 }, corpus).trainStep();
    const resumed = await LmRun.resume(path, corpus);
    expect(resumed.step).toBe(4);
    expect(resumed.optimizer.paramGroups.map((g) => g.lr)).toEqual(first.optimizer.paramGroups.map((g) => g.lr));
    for (let i = 0; i < 4; i++) got.push(resumed.trainStep());

    expect(got.map((r) => r.loss)).toEqual(want.map((r) => r.loss));
    expect(got.map((r) => r.gradNorm)).toEqual(want.map((r) => r.gradNorm));
    expect(got.map((r) => r.lr)).toEqual(want.map((r) => r.lr));
    expect(resumed.heldOutLoss()).toBe(wantHeld);
    const a = straight.model.stateDict();
    const b = resumed.model.stateDict();
    for (const k of Object.keys(a)) expect(b[k]!.data, k).toEqual(a[k]!.data);
    // The loss went down and the schedule warmed up and started decaying.
    expect(want.at(-1)!.loss).toBeLessThan(want[0]!.loss);
    want.forEach((r, i) => expect(r.lr).toBeCloseTo(tiny.lr * warmupFactor(tiny.warmupSteps)(i), 12));
  });

  it('resuming checks the checkpoint and the text', async () => {
    const dir = await tempDir();
    const corpus = await textCorpus(dir, PARAGRAPH.repeat(4));
    const run = LmRun.create(tiny, corpus);
    run.trainStep();
    const path = join(dir, 'checkpoint.safetensors');
    await run.saveCheckpoint(path);
    const other = await textCorpus(dir, PARAGRAPH.repeat(5));
    await expect(LmRun.resume(path, other)).rejects.toThrow(/was trained on other text/);
    const plain = join(dir, 'plain.safetensors');
    await saveSafetensors(plain, { w: randn([2, 2], { seed: 1 }) });
    await expect(LmRun.resume(plain, corpus)).rejects.toThrow(TypeError);
    await expect(LmRun.resume(plain, corpus)).rejects.toThrow(/is not a train:lm checkpoint/);
    expect(() => LmRun.create({ ...tiny, vocabSize: 300 }, corpus)).toThrow(/config 'vocabSize' must be 256/);
    expect(() => LmRun.create({ ...tiny, batch: 0 }, corpus)).toThrow(/config 'batch' must be a positive integer, got 0/);
  });

  it('samples text reproducibly from a seed, past the position table (the cache is refilled)', async () => {
    const dir = await tempDir();
    const run = LmRun.create(tiny, await textCorpus(dir, PARAGRAPH.repeat(4)));
    for (let i = 0; i < 3; i++) run.trainStep();
    const s1 = sampleText(run.model, 'It is', { maxNewTokens: 40, seed: 3 });
    const s2 = sampleText(run.model, 'It is', { maxNewTokens: 40, seed: 3 });
    expect(s1).toBe(s2);
    expect(new TextEncoder().encode(s1).length).toBeGreaterThan(0);
    expect(run.model.training).toBe(true);
    expect(() => sampleText(run.model, '', { maxNewTokens: 4, seed: 0 })).toThrow(/'prompt' must not be empty/);
  });

  it('attention maps: one T×T matrix per layer and head, rows summing to 1, nothing above the diagonal', async () => {
    const dir = await tempDir();
    const run = LmRun.create(tiny, await textCorpus(dir, PARAGRAPH.repeat(4)));
    const ids = [...new TextEncoder().encode('a truth')];
    const maps = attentionMaps(run.model, ids);
    expect(maps).toHaveLength(tiny.numLayers);
    for (const layer of maps) {
      expect(layer).toHaveLength(tiny.nhead);
      for (const m of layer) {
        expect(m).toHaveLength(ids.length);
        m.forEach((row, i) => {
          expect(row.reduce((s, v) => s + v, 0)).toBeCloseTo(1, 5);
          for (let j = i + 1; j < row.length; j++) expect(row[j]).toBe(0);
        });
      }
    }
    expect(() => attentionMaps(run.model, [])).toThrow(/'ids' must hold 1 to 16 tokens, got 0/);
  });
});
