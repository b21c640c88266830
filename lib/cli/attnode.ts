#!/usr/bin/env node
/**
 * The `attnode` command. `attnode` alone prints the list of commands; every
 * command takes `--help`. A bad command line is one line on stderr (an unknown
 * command or flag with the nearest known one) and exit code 2; a failure is
 * exit code 1.
 *   attnode info              CPU features, kernel path, threads, build
 *   attnode demo [...]        the seed model and the kernels on both backends, then a real model's story (= npm start)
 *   attnode bench [...]       the benchmark suite (a source checkout: bench/run.ts via tsx; args are passed on)
 *   attnode run --input in.jsonl [...]   batch inference over JSONL token-id rows
 *   attnode serve [...]       the HTTP inference server (OpenAI routes for Hugging Face folders)
 *   attnode submit | worker | status | retry | cancel   distributed batch runs on BullMQ + Redis (lib/cli/jobs.ts)
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { info, setGradEnabled, setNumThreads } from '../index';
import { demoDefaults, runDemo, type DemoOptions } from './demo';
import { runStoryDemo, type StoryOptions } from './demo-story';
import { JOB_COMMANDS, JOB_DESCRIPTIONS, JOB_USAGE } from './jobs';
import { RUN_USAGE, runMain } from './run';
import { SERVE_USAGE, serveMain } from './serve';
import { UsageError, intFlag, parseFlags, unknownMessage, wantsHelp } from './args';

const COMMANDS: Record<string, string> = {
  info: 'CPU features, kernel path, threads and build of the native addon (JSON)',
  demo: 'the seed model and core kernels on the native and TypeScript backends, then a real model telling a story',
  bench: 'the benchmark suite against onnxruntime and PyTorch (from a source checkout of attnode)',
  run: 'batch inference over JSONL/CSV rows (token ids, or text for a Hugging Face folder) on this machine',
  serve: 'the HTTP inference server (OpenAI routes for Hugging Face model folders)',
  ...JOB_DESCRIPTIONS,
};

const USAGE = `usage: attnode <command> [options]

${Object.entries(COMMANDS).map(([c, d]) => `  ${c.padEnd(6)} ${d}`).join('\n')}

attnode <command> --help lists a command's options; attnode --version prints the version.`;

const INFO_USAGE = `usage: attnode info
  Prints the native addon's CPU features, kernel path (avx512, avx2 or portable), thread count and build as JSON
  ("native": null when the addon is not loaded and the TypeScript backend runs).`;

const DEMO_USAGE = `usage: attnode demo [--quick] [--batch N] [--src-len N] [--tgt-len N] [--d-model N] [--nhead N] [--num-layers N]
                   [--num-decoder-layers N] [--dim-feedforward N] [--vocab N] [--threads N]
                   [--model <hf folder> | --model model.bin --tokenizer tokenizer.bin] [--prompt TEXT] [--max-new-tokens N]
  The seed model (nn.Embedding → nn.Transformer → nn.Linear, PyTorch's default sizes) on one batch with the native
  and the TypeScript backend, the core kernels on both, then a causal LM generating from a prompt.
  --quick            a small configuration (d-model 128, 2 + 2 layers, batch 2, 16 tokens; 40 new tokens)
  --batch, --src-len, --tgt-len, --d-model, --nhead, --num-layers, --num-decoder-layers, --dim-feedforward, --vocab
                     the seed model's sizes (defaults: 4, 32, 32, 512, 8, 6, 6, 2048, 1000)
  --threads          native threads (default: the available cores)
  --model            a Hugging Face causal LM folder (Llama, Mistral, Qwen2, GPT-2) or a llama2.c model.bin
  --tokenizer        llama2.c's tokenizer.bin (with --model model.bin)
  --prompt           the story's prompt (default "Once upon a time")
  --max-new-tokens   tokens to generate (default 200)`;

const BENCH_USAGE = `usage: attnode bench [options of bench/run.ts, e.g. --full, --cases a,b, --threads 1,2]
  The benchmark suite (attnode against onnxruntime-node and PyTorch). It lives in attnode's source repository
  (bench/ is not part of the installed package) and runs with tsx; in a checkout, attnode bench --help passes
  --help on to it.`;

const SUBCOMMAND_USAGE: Record<string, string> = {
  info: INFO_USAGE, demo: DEMO_USAGE, bench: BENCH_USAGE, run: RUN_USAGE, serve: SERVE_USAGE, ...JOB_USAGE,
};

/** A bad command line: one line on stderr naming the command and where its flags are listed, exit code 2. */
function usageError(command: string | null, message: string): never {
  const where = command ? `attnode ${command}` : 'attnode';
  console.error(`${where}: ${message}; see ${where} --help`);
  process.exit(2);
}

/** The package's version from its package.json (dist/cli/ → the package root). */
function version(): string {
  const pkg = path.resolve(__dirname, '..', '..', 'package.json');
  try {
    return (JSON.parse(fs.readFileSync(pkg, 'utf8')) as { version: string }).version;
  } catch (e) {
    throw new Error(`cannot read the version from ${pkg}: ${(e as Error).message}`);
  }
}

/**
 * `attnode bench`: spawns the suite with tsx from the package root. An installed package has no bench/ (it is not
 * published) and may have no tsx: both are said in one line, and nothing is downloaded.
 */
function bench(args: string[]): void {
  const root = path.resolve(__dirname, '..', '..');
  const script = path.join(root, 'bench', 'run.ts');
  if (!fs.existsSync(script)) {
    if (wantsHelp(args)) {
      console.log(BENCH_USAGE);
      return;
    }
    console.error(`attnode bench: needs a source checkout of attnode (bench/run.ts is not in the installed package at ${root}); there: npm ci && npm run bench`);
    process.exit(1);
  }
  let tsx: string;
  try {
    tsx = require.resolve('tsx/cli', { paths: [root] });
  } catch {
    console.error(`attnode bench: needs tsx to run ${path.relative(process.cwd(), script) || script} (npm ci in ${root} installs it)`);
    process.exit(1);
  }
  const child = spawn(process.execPath, [tsx, script, ...args], { cwd: root, stdio: 'inherit' });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
}

function fail(command: string, e: unknown): never {
  if (e instanceof UsageError) usageError(command, e.message);
  console.error(`attnode ${command}: ${(e as Error)?.message ?? String(e)}`);
  process.exit(1);
}

const DEMO_SIZES: Record<string, keyof DemoOptions> = {
  batch: 'batch', 'src-len': 'srcLen', 'tgt-len': 'tgtLen', 'd-model': 'dModel', nhead: 'nhead', 'num-layers': 'numLayers',
  'num-decoder-layers': 'numDecoderLayers', 'dim-feedforward': 'dimFeedforward', vocab: 'vocab',
};

/** The demo's flags. @throws UsageError */
function parseDemoFlags(args: string[]): { opts: DemoOptions; story: StoryOptions; threads: number | null } {
  const flags = parseFlags(args, [...Object.keys(DEMO_SIZES), 'threads', 'model', 'tokenizer', 'prompt', 'max-new-tokens'], ['quick']);
  const v = flags.values;
  const opts: DemoOptions = { ...demoDefaults, quick: flags.has('quick') };
  const set = new Set<string>();
  for (const [flag, key] of Object.entries(DEMO_SIZES)) {
    if (v[flag] === undefined) continue;
    (opts as unknown as Record<string, number>)[key] = intFlag(flag, v[flag], 0, 1);
    set.add(key);
  }
  const threads = v.threads === undefined ? null : intFlag('threads', v.threads, 1, 1);
  const story: StoryOptions = {
    model: v.model ?? null, tokenizer: v.tokenizer ?? null, prompt: v.prompt ?? 'Once upon a time',
    maxNewTokens: intFlag('max-new-tokens', v['max-new-tokens'], 200, 1), quick: opts.quick,
  };
  if (opts.quick) {
    // Small enough for CI; explicit flags still win.
    const quick: Partial<DemoOptions> = { dModel: 128, nhead: 4, numLayers: 2, numDecoderLayers: 2, dimFeedforward: 512, batch: 2, srcLen: 16, tgtLen: 16 };
    for (const [k, x] of Object.entries(quick)) if (!set.has(k)) (opts as unknown as Record<string, number>)[k] = x as number;
    if (v['max-new-tokens'] === undefined) story.maxNewTokens = 40;
  }
  if (story.tokenizer !== null && story.model === null) throw new UsageError('--tokenizer goes with --model model.bin (a llama2.c checkpoint)');
  return { opts, story, threads };
}

/** Runs one command line; exits the process or leaves it running (servers). */
function main(argv: string[]): void {
  const [command, ...rest] = argv;
  if (command === undefined) {
    // Nothing asked: the list of commands, as git and npm print it (exit 1: no command ran).
    console.error(USAGE);
    process.exit(1);
  }
  if (command === '--help' || command === '-h') {
    console.log(USAGE);
    return;
  }
  if (command === 'help') {
    const topic = rest[0];
    if (topic === undefined) console.log(USAGE);
    else if (topic in SUBCOMMAND_USAGE) console.log(SUBCOMMAND_USAGE[topic]);
    else usageError(null, unknownMessage('command', topic, Object.keys(COMMANDS)));
    return;
  }
  if (command === '--version' || command === '-v' || command === '-V') {
    console.log(version());
    return;
  }
  if (!(command in COMMANDS)) {
    if (command.startsWith('-')) usageError(null, unknownMessage('option', command, ['--help', '--version']));
    usageError(null, unknownMessage('command', command, Object.keys(COMMANDS)));
  }
  if (command === 'bench') {
    bench(rest);
    return;
  }
  if (wantsHelp(rest)) {
    console.log(SUBCOMMAND_USAGE[command]);
    return;
  }
  // Every command runs inference: no autograd graph is ever needed.
  setGradEnabled(false);
  try {
    switch (command) {
      case 'info':
        parseFlags(rest, []);
        console.log(JSON.stringify(info(), null, 2));
        break;
      case 'demo': {
        const { opts, story, threads } = parseDemoFlags(rest);
        if (threads !== null) setNumThreads(threads);
        runDemo(opts);
        runStoryDemo(story).catch((e: unknown) => fail(command, e));
        break;
      }
      case 'run':
        runMain(rest).then((code) => (process.exitCode = code), (e: unknown) => fail(command, e));
        break;
      case 'serve':
        serveMain(rest).catch((e: unknown) => fail(command, e));
        break;
      default:
        // submit, worker, status, retry, cancel (lib/cli/jobs.ts)
        JOB_COMMANDS[command]!(rest).then((code) => (process.exitCode = code), (e: unknown) => fail(command, e));
    }
  } catch (e) {
    fail(command, e);
  }
}

main(process.argv.slice(2));
