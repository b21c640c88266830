/**
 * One child of `bench/train/longseq.ts`: training steps (forward + backward + Adam) of a 2-layer
 * nn.TransformerEncoder (d_model 512, 8 heads, feed-forward 2048, batch 1) at a long sequence, in its own process,
 * printing one JSON line: step times and the process's peak RSS (process.resourceUsage().maxRSS). The PyTorch twin
 * is bench/train/longseq_torch.py (same model, loss and optimizer).
 *
 * Plain JavaScript on the compiled package (dist/, as a user's program runs it; `npm run build:ts` first, which
 * longseq.ts does when lib/ is newer): under tsx the TypeScript loader alone adds ~40 MiB to the resident set.
 *
 *   node bench/train/longseq-step.mjs [--seq 2048] [--steps 3] [--threads n] [--dropout 0] [--memory] [--gc] [--plain]
 *
 * --memory prints, to stderr, where the memory is after each phase of every step (zeroGrad, forward, backward,
 * step): the resident set and its peak within the phase (/proc/self/clear_refs resets the peak), live
 * ArrayBuffers, the buffer pool's idle share, the JS heap and the C allocator's arenas (attnode.memoryStats()).
 * --gc (needs node --expose-gc) collects after every step.
 * Each step runs in reuseBuffers (its output and loss go back to the pool when it returns); --plain runs it bare, as
 * before reuseBuffers existed: the output of every step is then left to V8's collector, and with no collection
 * between steps the peak grows by it (4 MiB a step at seq 2048).
 */
import { parseArgs } from 'node:util';
import { writeFileSync } from 'node:fs';
import { nn, optim, manualSeed, randn, setNumThreads, getNumThreads, ops, memoryStats, reuseBuffers } from '../../dist/index.mjs';

const { values: a } = parseArgs({
  options: {
    seq: { type: 'string', default: '2048' },
    steps: { type: 'string', default: '3' },
    threads: { type: 'string' },
    dropout: { type: 'string', default: '0' },
    memory: { type: 'boolean', default: false },
    gc: { type: 'boolean', default: false },
    plain: { type: 'boolean', default: false },
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

const MiB = (b) => (b === null || b === undefined ? '-' : (b / 1048576).toFixed(0));
/** Starts a phase: the kernel's peak-RSS counter restarts from the current resident set. */
function phaseStart() {
  if (!a.memory) return;
  try {
    writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    // Not Linux, or not allowed: the peak column is then the process's peak so far.
  }
}
/** With --memory, the highest phase peak (clear_refs also restarts the counter getrusage's maxRSS reads). */
let phasePeak = 0;
function phaseEnd(step, phase) {
  if (!a.memory) return;
  const m = memoryStats();
  phasePeak = Math.max(phasePeak, m.peakRss ?? m.rss);
  const al = m.allocator;
  process.stderr.write(`step ${step} ${phase.padEnd(8)} rss ${MiB(m.rss)} peak ${MiB(m.peakRss)} | arrayBuffers ${MiB(m.arrayBuffers)} ` +
    `(pool idle ${MiB(m.pooledBuffers)}) | js heap ${MiB(m.jsHeapUsed)}` +
    (al ? ` | malloc in use ${MiB(al.inUseBytes)} (not ArrayBuffers ${MiB(al.inUseBytes - m.arrayBuffers)}) free ${MiB(al.freeBytes)}` : '') + ' MiB\n');
}

phaseStart();
manualSeed(0);
const [dModel, nhead, ff, layers] = [512, 8, 2048, 2];
const model = new nn.TransformerEncoder({ layer: { dModel, nhead, dimFeedforward: ff, dropout }, numLayers: layers });
model.train();
const opt = new optim.Adam(model.parameters(), { lr: 1e-4 });
const x = randn([seq, 1, dModel], { seed: 1 });
const target = randn([seq, 1, dModel], { seed: 2 });
phaseEnd('-', 'setup');

const times = [];
let loss = 0;
for (let s = 0; s < steps; s++) {
  const t0 = performance.now();
  const step = () => {
    phaseStart();
    opt.zeroGrad();
    phaseEnd(s, 'zeroGrad');
    phaseStart();
    const y = model.forward(x);
    phaseEnd(s, 'forward');
    phaseStart();
    const l = ops.mseLoss(y, target);
    l.backward();
    phaseEnd(s, 'backward');
    phaseStart();
    opt.step();
    phaseEnd(s, 'step');
    return l.item();
  };
  loss = a.plain ? step() : reuseBuffers(step);
  times.push(performance.now() - t0);
  // With --gc (node --expose-gc): collect the step's dead buffers before the next, as PyTorch's refcounting frees
  // them at once; without it they wait for V8's next collection.
  if (a.gc) globalThis.gc?.();
}
const measured = times.slice(1).sort((p, q) => p - q);
console.log(JSON.stringify({
  impl: 'attnode', threads: getNumThreads(), seq, dropout, reuseBuffers: !a.plain, stepMs: times.map((t) => Math.round(t)),
  medianMs: Math.round(measured[Math.floor(measured.length / 2)]), peakRssMiB: Math.round(Math.max(process.resourceUsage().maxRSS * 1024, phasePeak) / 1048576),
  loss,
}));
