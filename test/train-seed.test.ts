import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadSafetensors, manualSeed, nn, noGrad, optim, Rng } from '../lib/index';
import { withContext } from '../lib/context';
import { getBackend } from '../lib/backend/registry';
import {
  buildModel, causalMask, drawSequences, evaluate, makeBatch, saveRun, trainStep,
  RUN_FILE, WEIGHTS_FILE, type SeedTaskConfig,
} from '../bench/train/seed-task';

const tiny: SeedTaskConfig = { vocabSize: 11, dModel: 16, nhead: 2, numEncoderLayers: 1, numDecoderLayers: 1, dimFeedforward: 32, seqLen: 4, bosId: 10 };
const backends = ['native', 'js'] as const;


describe('train:seed task', () => {
  it('a batch is sequence-first: the sorted digits, fed after <bos> (teacher forcing)', () => {
    const b = makeBatch([[3, 1, 2, 1], [9, 0, 0, 5]], tiny);
    expect(b.src.shape).toEqual([4, 2]);
    expect([...b.src.data]).toEqual([3, 9, 1, 0, 2, 0, 1, 5]);
    expect([...b.tgtOut.data]).toEqual([1, 0, 1, 0, 2, 5, 3, 9]);
    expect([...b.tgtIn.data]).toEqual([10, 10, 1, 0, 1, 0, 2, 5]);
    expect(() => makeBatch([[1, 2, 3]], tiny)).toThrow(/sequence 0 has 3 digits, expected seqLen 4/);
  });

  it('training draws never return a held-out string', () => {
    const held = drawSequences(new Rng(1), 200, 2);
    const exclude = new Set(held.map((s) => s.join('')));
    const drawn = drawSequences(new Rng(2), 500, 2, exclude);
    expect(drawn).toHaveLength(500);
    expect(drawn.some((s) => exclude.has(s.join('')))).toBe(false);
  });

  const losses: Record<string, number[]> = {};
  for (const backend of backends) {
    it(`a few Adam steps on the ${backend} backend lower the loss (CrossEntropyLoss, causal target mask, dropout on)`, () => {
      manualSeed(3);
      const model = buildModel(tiny).useBackend(backend).train();
      const optimizer = new optim.Adam(model.parameters(), { lr: 1e-2 });
      const criterion = new nn.CrossEntropyLoss();
      const batch = makeBatch(drawSequences(new Rng(4), 16, tiny.seqLen), tiny);
      const mask = causalMask(tiny.seqLen);
      const ls: number[] = [];
      // The optimizer runs on the context's backend, the model on its own.
      withContext({ backend: getBackend(backend) }, () => {
        for (let i = 0; i < 25; i++) ls.push(trainStep(model, optimizer, criterion, batch, mask));
      });
      expect(ls.every(Number.isFinite)).toBe(true);
      expect(ls.at(-1)!).toBeLessThan(0.7 * ls[0]!);
      expect(model.training).toBe(true);
      losses[backend] = ls;
    });
  }

  it('both backends start from the same weights and dropout masks: the same first loss', () => {
    expect(losses.native && losses.js, 'needs the two training tests above').toBeTruthy();
    expect(losses.native![0]!).toBeCloseTo(losses.js![0]!, 4);
  });

  const dirs: string[] = [];
  afterAll(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }); });

  it('the saved safetensors carry PyTorch state_dict names and reload into the same outputs', async () => {
    manualSeed(5);
    const model = buildModel(tiny).train();
    const optimizer = new optim.Adam(model.parameters(), { lr: 1e-3 });
    const criterion = new nn.CrossEntropyLoss();
    const mask = causalMask(tiny.seqLen);
    const rng = new Rng(6);
    for (let i = 0; i < 3; i++) trainStep(model, optimizer, criterion, makeBatch(drawSequences(rng, 8, tiny.seqLen), tiny), mask);
    const heldOutSeqs = drawSequences(new Rng(7), 12, tiny.seqLen);
    const heldOut = makeBatch(heldOutSeqs, tiny);
    const ev = evaluate(model, heldOut, tiny);
    expect(model.training).toBe(true); // evaluate puts the mode back
    expect(ev.tokenAccuracy).toBeGreaterThanOrEqual(0);
    expect(ev.tokenAccuracy).toBeLessThanOrEqual(1);

    const dir = await mkdtemp(join(tmpdir(), 'attnode-train-seed-'));
    dirs.push(dir);
    await saveRun(dir, model, { config: tiny, heldOut: heldOutSeqs, heldOutLoss: ev.loss, heldOutTokenAccuracy: ev.tokenAccuracy });

    const file = await loadSafetensors(join(dir, WEIGHTS_FILE));
    const names = Object.keys(file.tensors).sort();
    expect(names).toEqual(Object.keys(model.stateDict()).sort());
    for (const key of ['embedding.weight', 'transformer.encoder.layers.0.self_attn.in_proj_weight', 'transformer.encoder.norm.weight',
      'transformer.decoder.layers.0.multihead_attn.out_proj.bias', 'transformer.decoder.layers.0.linear2.weight', 'transformer.decoder.norm.bias',
      'fc.weight', 'fc.bias']) expect(names).toContain(key);

    const reloaded = buildModel(tiny);
    reloaded.loadStateDict(file.tensors);
    const run = JSON.parse(await readFile(join(dir, RUN_FILE), 'utf8'));
    expect(run.config).toEqual(tiny);
    expect(run.heldOut).toEqual(heldOutSeqs);
    expect(evaluate(reloaded, heldOut, tiny)).toEqual(ev);
    noGrad(() => {
      model.eval();
      reloaded.eval();
      const a = model.forward(heldOut.src, heldOut.tgtIn, { tgtMask: mask });
      const b = reloaded.forward(heldOut.src, heldOut.tgtIn, { tgtMask: mask });
      expect([...b.contiguous().data]).toEqual([...a.contiguous().data]);
    });
  });
});
