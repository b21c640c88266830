#!/usr/bin/env node
/**
 * The `attnode` command.
 *   attnode info              CPU features, kernel path, threads, build
 *   attnode demo [--quick] [--batch N --src-len N --tgt-len N --d-model N --nhead N
 *                 --num-layers N --num-decoder-layers N --dim-feedforward N --vocab N --threads N]
 *                [--model <hf folder> | --model model.bin --tokenizer tokenizer.bin] [--prompt TEXT] [--max-new-tokens N]
 *   attnode bench [args...]   the benchmark suite (bench/run.ts via tsx; args are passed on)
 *   attnode run --input in.jsonl [--output out.jsonl] [--model m.safetensors] [--config c.json] [--batch-size N]
 *   attnode serve [--model m.safetensors] [--config c.json] [--port N] ...
 * Exit codes: 0 success, 1 failure, 2 bad command line (with usage on stderr).
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { info, setGradEnabled, setNumThreads } from '../index';
import { demoDefaults, runDemo, type DemoOptions } from './demo';
import { runStoryDemo, type StoryOptions } from './demo-story';
import { RUN_USAGE, runMain } from './run';
import { SERVE_USAGE, UsageError, serveMain } from './serve';

const USAGE = `usage: attnode info
       attnode demo [--quick] [--batch N] [--src-len N] [--tgt-len N] [--d-model N] [--nhead N] [--num-layers N] [--num-decoder-layers N] [--dim-feedforward N] [--vocab N] [--threads N]
                    [--model <hf folder> | --model model.bin --tokenizer tokenizer.bin] [--prompt TEXT] [--max-new-tokens N]
       attnode bench [bench/run.ts options, e.g. --full]
${RUN_USAGE.replace(/^usage: /, '       ')}
${SERVE_USAGE.replace(/^usage: /, '       ')}`;

function usage(message?: string): never {
  if (message) console.error(`attnode: ${message}`);
  console.error(USAGE);
  process.exit(2);
}

/** `attnode bench`: spawns the suite with tsx from the package root (a source checkout: bench/ is not published). */
function bench(args: string[]): void {
  const root = path.resolve(__dirname, '..', '..');
  const script = path.join(root, 'bench', 'run.ts');
  if (!fs.existsSync(script)) {
    console.error(`attnode bench: ${script} not found; the benchmarks live in a source checkout of attnode`);
    process.exit(1);
  }
  const tsx = path.join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs');
  const [cmd, cmdArgs] = fs.existsSync(tsx) ? [process.execPath, [tsx, script, ...args]] : ['npx', ['tsx', script, ...args]];
  const child = spawn(cmd, cmdArgs, { cwd: root, stdio: 'inherit' });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
}

function fail(e: unknown): never {
  if (e instanceof UsageError) usage(e.message);
  console.error(`attnode: ${(e as Error)?.message ?? String(e)}`);
  process.exit(1);
}

function parseFlags(args: string[]): { opts: DemoOptions; story: StoryOptions; threads: number | null } {
  const opts: DemoOptions = { ...demoDefaults };
  const story: StoryOptions = { model: null, tokenizer: null, prompt: 'Once upon a time', maxNewTokens: 200, quick: false };
  let threads: number | null = null;
  let maxNewSet = false;
  const numeric: Record<string, keyof DemoOptions> = {
    '--batch': 'batch', '--src-len': 'srcLen', '--tgt-len': 'tgtLen', '--d-model': 'dModel', '--nhead': 'nhead',
    '--num-layers': 'numLayers', '--num-decoder-layers': 'numDecoderLayers', '--dim-feedforward': 'dimFeedforward',
    '--vocab': 'vocab',
  };
  const set = new Set<string>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--quick') opts.quick = true;
    else if (a === '--model' || a === '--tokenizer' || a === '--prompt') {
      const v = args[++i];
      if (v === undefined || v === '') usage(`${a} needs a value`);
      if (a === '--model') story.model = v;
      else if (a === '--tokenizer') story.tokenizer = v;
      else story.prompt = v;
    } else if (a === '--max-new-tokens') {
      const v = Number(args[++i]);
      if (!Number.isInteger(v) || v < 1) usage(`--max-new-tokens needs a positive integer, got ${args[i]}`);
      story.maxNewTokens = v;
      maxNewSet = true;
    } else if (a === '--threads' || a in numeric) {
      const v = Number(args[++i]);
      if (!Number.isInteger(v) || v < 1) {
        console.error(`attnode: ${a} needs a positive integer, got ${args[i]}`);
        process.exit(2);
      }
      if (a === '--threads') threads = v;
      else {
        (opts as unknown as Record<string, number>)[numeric[a]!] = v;
        set.add(numeric[a]!);
      }
    } else usage();
  }
  if (opts.quick) {
    // Small enough for CI; explicit flags still win.
    const quick: Partial<DemoOptions> = { dModel: 128, nhead: 4, numLayers: 2, numDecoderLayers: 2, dimFeedforward: 512, batch: 2, srcLen: 16, tgtLen: 16 };
    for (const [k, v] of Object.entries(quick)) if (!set.has(k)) (opts as unknown as Record<string, number>)[k] = v as number;
    story.quick = true;
    if (!maxNewSet) story.maxNewTokens = 40;
  }
  if (story.tokenizer !== null && story.model === null) usage('--tokenizer goes with --model model.bin (a llama2.c checkpoint)');
  return { opts, story, threads };
}

const [command, ...rest] = process.argv.slice(2);
// Every command runs inference: no autograd graph is ever needed.
setGradEnabled(false);
switch (command) {
  case 'info':
    console.log(JSON.stringify(info(), null, 2));
    break;
  case 'demo':
  case undefined: {
    const { opts, story, threads } = parseFlags(rest);
    if (threads !== null) setNumThreads(threads);
    runDemo(opts);
    runStoryDemo(story).catch(fail);
    break;
  }
  case 'bench':
    bench(rest);
    break;
  case 'run':
    runMain(rest).then((code) => (process.exitCode = code), fail);
    break;
  case 'serve':
    serveMain(rest).catch(fail);
    break;
  case '--help':
  case '-h':
  case 'help':
    console.log(USAGE);
    break;
  default:
    usage(`unknown command '${command}'`);
}
