/**
 * The benchmark cases, read from cases.json (shared with the Python side: the
 * torch peer and the model export script build the same modules from it).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export const BENCH_DIR = path.resolve(__dirname, '..');
export const ROOT = path.resolve(BENCH_DIR, '..');
export const MODELS_DIR = path.join(BENCH_DIR, 'models');
export const RESULTS_DIR = path.join(BENCH_DIR, 'results');
export const CASES_JSON = path.join(BENCH_DIR, 'cases', 'cases.json');

export interface EncoderLayerSpec {
  kind: 'encoder_layer';
  seed: number;
  dModel: number;
  nhead: number;
  dimFeedforward: number;
  activation: 'relu' | 'gelu';
}

export interface EncoderSpec extends Omit<EncoderLayerSpec, 'kind'> {
  kind: 'encoder';
  numLayers: number;
}

export interface MhaSpec {
  kind: 'mha';
  seed: number;
  embedDim: number;
  numHeads: number;
}

export interface SeedSpec {
  kind: 'seed';
  seed: number;
  vocab: number;
  dModel: number;
  nhead: number;
  numEncoderLayers: number;
  numDecoderLayers: number;
  dimFeedforward: number;
}

export type ModelSpec = EncoderLayerSpec | EncoderSpec | MhaSpec | SeedSpec;

export interface CaseDef {
  id: string;
  group: 'encoder-layer' | 'encoder-6' | 'long-attention' | 'seed-model';
  model: string;
  batch: number;
  seq: number;
  tgtSeq?: number;
  /** Part of the default (quick) run. */
  quick: boolean;
  /** Also time attnode's TypeScript backend (slow: only the smallest case). */
  ts?: boolean;
  /** Also measure each peer's peak RSS in a child process of its own. */
  rss?: boolean;
}

/** A case with its model spec and file paths resolved. */
export interface Case extends CaseDef {
  spec: ModelSpec;
  weightsPath: string;
  ioPath: string;
  onnxPath: string;
}

interface CasesFile {
  models: Record<string, ModelSpec>;
  cases: CaseDef[];
}

export function loadCases(): Case[] {
  const file = JSON.parse(fs.readFileSync(CASES_JSON, 'utf8')) as CasesFile;
  return file.cases.map((c) => {
    const spec = file.models[c.model];
    if (!spec) throw new Error(`${CASES_JSON}: case ${c.id} names unknown model ${c.model}`);
    return {
      ...c,
      spec,
      weightsPath: path.join(MODELS_DIR, `${c.model}.safetensors`),
      ioPath: path.join(MODELS_DIR, `${c.id}.io.safetensors`),
      onnxPath: path.join(MODELS_DIR, `${c.id}.onnx`),
    };
  });
}

export function findCase(id: string): Case {
  const c = loadCases().find((x) => x.id === id);
  if (!c) throw new Error(`unknown bench case '${id}'`);
  return c;
}

/** One-line description of a case's shape, for tables. */
export function describeCase(c: Case): string {
  const s = c.spec;
  switch (s.kind) {
    case 'encoder_layer':
      return `encoder layer d${s.dModel} h${s.nhead} ff${s.dimFeedforward} ${s.activation}, ${c.batch}×${c.seq}`;
    case 'encoder':
      return `${s.numLayers}-layer encoder d${s.dModel} ${s.activation}, ${c.batch}×${c.seq}`;
    case 'mha':
      return `MHA d${s.embedDim} h${s.numHeads}, seq ${c.seq}`;
    case 'seed':
      return `seed model d${s.dModel} ${s.numEncoderLayers}+${s.numDecoderLayers} layers vocab ${s.vocab}, ${c.batch}×${c.seq}`;
  }
}

/** The case's graph rewritten with int8 weights by scripts/quantize_onnx_dynamic.py (per tensor, or per channel). */
export function int8OnnxPath(c: Case, perChannel: boolean): string {
  return c.onnxPath.replace(/\.onnx$/, perChannel ? '.int8pc.onnx' : '.int8.onnx');
}

/** Whether the exported files of a case exist (and are not older than cases.json). */
export function caseFilesReady(c: Case): boolean {
  const min = fs.statSync(CASES_JSON).mtimeMs;
  return [c.weightsPath, c.ioPath, c.onnxPath].every((p) => fs.existsSync(p) && fs.statSync(p).mtimeMs >= min);
}
