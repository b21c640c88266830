/**
 * One child of `bench/train/longseq.ts`: training steps (forward + backward + Adam) of a 2-layer
 * nn.TransformerEncoder (d_model 512, 8 heads, feed-forward 2048, batch 1) at a long sequence, in its own process,
 * printing one JSON line: step times and the process's peak RSS (process.resourceUsage().maxRSS). The PyTorch twin
 * is bench/train/longseq_torch.py (same model, loss and optimizer).
 *
 *   npx tsx bench/train/longseq-step.ts [--seq 2048] [--steps 3] [--threads n] [--dropout 0] [--gc]
 *   (--gc needs node --expose-gc: node --expose-gc --import tsx bench/train/longseq-step.ts --gc)
 */
import { parseArgs } from 'node:util';
import { nn, optim, manualSeed, randn, setNumThreads, getNumThreads, ops } from '../../lib/index';

const { values: a } = parseArgs({
  options: {
    seq: { type: 'string', default: '2048' },
    steps: { type: 'string', default: '3' },
    threads: { type: 'string' },
    dropout: { type: 'string', default: '0' },
    gc: { type: 'boolean', default: false },
  },
  strict: true,
});
const seq = Number(a.seq);
const steps = Number(a.steps);
const dropout = Number(a.dropout);
if (!Number.isInteger(seq) || seq < 1) throw new RangeError(`--seq must be a positive integer, got '${a.seq}'`);
if (!Number.isInteger(steps) || steps < 2) throw new RangeError(`--steps must be an integer >= 2 (the first is warm-up), got '${a.steps}'`);
if (!(dropout >= 0 && dropout < 1)) throw new RangeError(`--dropout must be in [0, 1), got '${a.dropout}'`);
if (a.threads !== undefined) setNumThreads(Number(a.threads));

manualSeed(0);
const [dModel, nhead, ff, layers] = [512, 8, 2048, 2];
const model = new nn.TransformerEncoder({ layer: { dModel, nhead, dimFeedforward: ff, dropout }, numLayers: layers });
model.train();
const opt = new optim.Adam(model.parameters(), { lr: 1e-4 });
const x = randn([seq, 1, dModel], { seed: 1 });
const target = randn([seq, 1, dModel], { seed: 2 });

const times: number[] = [];
let loss = 0;
for (let s = 0; s < steps; s++) {
  const t0 = performance.now();
  opt.zeroGrad();
  const l = ops.mseLoss(model.forward(x), target);
  l.backward();
  opt.step();
  loss = l.item();
  times.push(performance.now() - t0);
  // With --gc (node --expose-gc): collect the step's dead buffers before the next, as PyTorch's refcounting frees
  // them at once; without it they wait for V8's next collection.
  if (a.gc) (globalThis as { gc?: () => void }).gc?.();
}
const measured = times.slice(1).sort((p, q) => p - q);
console.log(JSON.stringify({
  impl: 'attnode', threads: getNumThreads(), seq, dropout, stepMs: times.map((t) => Math.round(t)),
  medianMs: Math.round(measured[Math.floor(measured.length / 2)]!), peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
  loss,
}));
