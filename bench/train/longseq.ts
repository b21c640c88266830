/**
 * Training at a long sequence: one training step (forward + backward + Adam) of a 2-layer nn.TransformerEncoder
 * (d_model 512, 8 heads, feed-forward 2048, batch 1) at seq 2048, attnode against PyTorch 1.13 on this machine, each
 * step in its own process (bench/train/longseq-step.mjs on the compiled package, bench/train/longseq_torch.py), at 1
 * and 2 threads: peak RSS and step time, the load average beside every figure. Writes
 * bench/results/train-longseq-<cpu>.md. Rebuilds dist/ first (`npm run build:ts`) when a lib/ file is newer.
 *
 *   npx tsx bench/train/longseq.ts [--seq 2048] [--steps 2] [--threads 1,2] [--dropout 0] [--python /usr/bin/python3]
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const ROOT = join(__dirname, '..', '..');
const { values: a } = parseArgs({
  options: {
    seq: { type: 'string', default: '2048' },
    steps: { type: 'string', default: '2' },
    threads: { type: 'string', default: '1,2' },
    dropout: { type: 'string', default: '0' },
    python: { type: 'string', default: '/usr/bin/python3' },
    out: { type: 'string' },
  },
  strict: true,
});

interface StepResult {
  impl: string;
  threads: number;
  seq: number;
  stepMs: number[];
  medianMs: number;
  peakRssMiB: number;
  loss: number;
  torch?: string;
}

function cpuModel(): string {
  try {
    return /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? 'unknown CPU';
  } catch {
    return 'unknown CPU';
  }
}

const load = (): string => loadavg().map((x) => x.toFixed(1)).join(' ');

function run(cmd: string, args: string[]): { result: StepResult; loadBefore: string; loadAfter: string } {
  const loadBefore = load();
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8', maxBuffer: 1 << 24 });
  const loadAfter = load();
  const line = (r.stdout ?? '').trim().split('\n').filter((l) => l.startsWith('{')).pop();
  if (r.status !== 0 || !line) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return { result: JSON.parse(line) as StepResult, loadBefore, loadAfter };
}

/** The newest modification time of the .ts files under `dir`. */
function newestTs(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) t = Math.max(t, newestTs(p));
    else if (e.name.endsWith('.ts')) t = Math.max(t, statSync(p).mtimeMs);
  }
  return t;
}

// The attnode child runs the compiled package, as a user's program does (not tsx, whose loader alone is ~40 MiB
// of the resident set): rebuild it when the sources moved on.
const distEntry = join(ROOT, 'dist', 'index.mjs');
let distTime = 0;
try {
  distTime = Math.min(statSync(distEntry).mtimeMs, statSync(join(ROOT, 'dist', 'index.js')).mtimeMs);
} catch {
  distTime = 0;
}
if (distTime < newestTs(join(ROOT, 'lib'))) {
  process.stderr.write('dist/ is older than lib/: npm run build:ts\n');
  const b = spawnSync('npm', ['run', 'build:ts'], { cwd: ROOT, stdio: 'inherit' });
  if (b.status !== 0) throw new Error(`npm run build:ts failed (${b.status})`);
}

const common = ['--seq', a.seq!, '--steps', a.steps!, '--dropout', a.dropout!];
const rows: string[] = [];
const ratios: string[] = [];
for (const t of a.threads!.split(',').map(Number)) {
  const ours = run(process.execPath, [join('bench', 'train', 'longseq-step.mjs'), ...common, '--threads', String(t)]);
  process.stderr.write(`attnode ${t}t: ${JSON.stringify(ours.result)}\n`);
  const torch = run(a.python!, [join('bench', 'train', 'longseq_torch.py'), ...common, '--threads', String(t)]);
  process.stderr.write(`pytorch ${t}t: ${JSON.stringify(torch.result)}\n`);
  for (const [name, x] of [['attnode', ours], [`PyTorch ${torch.result.torch ?? ''}`.trim(), torch]] as const) {
    rows.push(`| ${name} | ${t} | ${x.result.peakRssMiB} | ${(x.result.medianMs / 1000).toFixed(2)} | ${x.result.stepMs.map((s) => (s / 1000).toFixed(2)).join(', ')} | ${x.result.loss.toFixed(6)} | ${x.loadBefore} → ${x.loadAfter} |`);
  }
  ratios.push(`- ${t} thread${t > 1 ? 's' : ''}: peak RSS ${(ours.result.peakRssMiB / torch.result.peakRssMiB).toFixed(2)}× PyTorch's, step time ${(ours.result.medianMs / torch.result.medianMs).toFixed(2)}× PyTorch's`);
}

const cpu = cpuModel();
const slug = /epyc/i.test(cpu) ? 'amd-epyc' : cpu.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
const out = a.out ?? join(ROOT, 'bench', 'results', `train-longseq-${slug}.md`);
writeFileSync(out, `# One training step at seq ${a.seq}: attnode vs PyTorch

${new Date().toISOString().slice(0, 10)}, ${cpu}. Command: \`npx tsx bench/train/longseq.ts --seq ${a.seq} --steps ${a.steps} --threads ${a.threads} --dropout ${a.dropout}\`.

A 2-layer \`nn.TransformerEncoder\` (d_model 512, 8 heads, feed-forward 2048, post-norm, ReLU, dropout ${a.dropout}),
batch 1 × ${a.seq} tokens ([seq, batch, feature]), MSE loss against a random target, \`optim.Adam(lr 1e-4)\`: each
step is zeroGrad, forward, backward, step. Each implementation and thread count runs in its own process
(\`bench/train/longseq-step.mjs\` on the compiled package \`dist/\`, as a user's program runs it — not tsx, whose
loader adds ~40 MiB —, and \`bench/train/longseq_torch.py\`), ${a.steps} steps, the first a warm-up; peak RSS is the
process's maximum resident set (\`process.resourceUsage().maxRSS\`, \`getrusage(RUSAGE_SELF).ru_maxrss\`), so it
includes the runtime itself (Node + the library, Python + torch). Load average (1, 5, 15 min)
before → after each run: the machine's 2 vCPUs are shared with other jobs, so times are same-run ratios at best.

| impl | threads | peak RSS (MiB) | step (s, median after warm-up) | steps (s) | loss | load |
|---|---|---|---|---|---|---|
${rows.join('\n')}

${ratios.join('\n')}
`);
process.stderr.write(`wrote ${out}\n`);
