#!/usr/bin/env node
/**
 * The `attnode` command.
 *   attnode info              CPU features, kernel path, threads, build
 *   attnode demo [--quick] [--batch N --src-len N --tgt-len N --d-model N --nhead N
 *                 --num-layers N --num-decoder-layers N --dim-feedforward N --vocab N --threads N]
 */
import { info, setNumThreads } from '../index';
import { demoDefaults, runDemo, type DemoOptions } from './demo';

function usage(): never {
  console.error('usage: attnode info | attnode demo [--quick] [--batch N] [--src-len N] [--tgt-len N] [--d-model N] [--nhead N] [--num-layers N] [--num-decoder-layers N] [--dim-feedforward N] [--vocab N] [--threads N]');
  process.exit(2);
}

function parseFlags(args: string[]): { opts: DemoOptions; threads: number | null } {
  const opts: DemoOptions = { ...demoDefaults };
  let threads: number | null = null;
  const numeric: Record<string, keyof DemoOptions> = {
    '--batch': 'batch', '--src-len': 'srcLen', '--tgt-len': 'tgtLen', '--d-model': 'dModel', '--nhead': 'nhead',
    '--num-layers': 'numLayers', '--num-decoder-layers': 'numDecoderLayers', '--dim-feedforward': 'dimFeedforward',
    '--vocab': 'vocab',
  };
  const set = new Set<string>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--quick') opts.quick = true;
    else if (a === '--threads' || a in numeric) {
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
  }
  return { opts, threads };
}

const [command, ...rest] = process.argv.slice(2);
switch (command) {
  case 'info':
    console.log(JSON.stringify(info(), null, 2));
    break;
  case 'demo':
  case undefined: {
    const { opts, threads } = parseFlags(rest);
    if (threads !== null) setNumThreads(threads);
    runDemo(opts);
    break;
  }
  default:
    usage();
}
