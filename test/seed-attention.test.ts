import { describe, expect, it } from 'vitest';
import { manualSeed, noGrad } from '../lib/index';
import { seedAttention, seedAttentionSvgs } from '../bench/train/seed-attention';
import { buildModel, causalMask, makeBatch, type SeedTaskConfig } from '../bench/train/seed-task';

const tiny: SeedTaskConfig = { vocabSize: 11, dModel: 16, nhead: 2, numEncoderLayers: 2, numDecoderLayers: 2, dimFeedforward: 32, seqLen: 5, bosId: 10 };

describe('seed model attention maps', () => {
  it('are the heads of the forward itself: the pieces give model.forward\'s logits; every row a distribution', () => {
    manualSeed(11);
    const model = buildModel(tiny).train();
    const digits = [7, 3, 9, 0, 3];
    const batch = makeBatch([digits], tiny);
    const a = seedAttention(model, batch.src, batch.tgtIn);
    expect(model.training).toBe(true);
    const want = noGrad(() => {
      model.eval();
      const out = model.forward(batch.src, batch.tgtIn, { tgtMask: causalMask(tiny.seqLen) });
      model.train();
      return out;
    });
    expect(a.logits.shape).toEqual(want.shape);
    const got = a.logits.contiguous().data;
    want.contiguous().data.forEach((v, i) => expect(got[i]).toBeCloseTo(v, 5));
    for (const maps of [a.encoderSelf, a.decoderSelf, a.decoderCross]) {
      expect(maps).toHaveLength(2);
      for (const layer of maps) {
        expect(layer).toHaveLength(tiny.nhead);
        for (const m of layer) {
          expect(m).toHaveLength(tiny.seqLen);
          for (const row of m) {
            expect(row).toHaveLength(tiny.seqLen);
            expect(row.reduce((s, v) => s + v, 0)).toBeCloseTo(1, 5);
          }
        }
      }
    }
    // The decoder's self-attention is causal.
    for (const layer of a.decoderSelf) for (const m of layer) m.forEach((row, i) => row.forEach((v, j) => { if (j > i) expect(v).toBe(0); }));

    const svgs = seedAttentionSvgs(a, digits, 'test');
    const squares = (svg: string): number => (svg.match(/M\d+ \d+h1v1h-1z/g) ?? []).length;
    expect(squares(svgs.cross)).toBe(2 * tiny.nhead * tiny.seqLen * tiny.seqLen);
    expect(squares(svgs.encoder)).toBe(2 * tiny.nhead * tiny.seqLen * tiny.seqLen);
    expect(svgs.cross).toContain('decoder layer 1 · head 1');
    expect(svgs.cross).toContain('sorted digits of 73903');
  });
});
