/**
 * Checks shared by the Hugging Face loaders: weights whose shapes contradict
 * `config.json`, and layer counts that differ from the config. Each error
 * names the file, the field (with its value), the tensor, and the expected
 * and actual shapes, so a folder that does not fit says which side is wrong
 * instead of failing somewhere in a state-dict comparison.
 */
import type { Tensor } from '../tensor';
import { formatShape } from '../errors';

/** One dimension a config field (or product of fields) fixes: its size and how to name it. */
export interface ConfigDim {
  size: number;
  /** e.g. `'hidden_size' (32)` or `'num_attention_heads' × 'head_dim' (4 × 8)`. */
  field: string;
}

/** A dimension fixed by one field. */
export const dimOf = (field: string, size: number): ConfigDim => ({ size, field: `'${field}' (${size})` });

/** A dimension that is a product of fields: `'a' × 'b' (2 × 3)`. */
export const dimProduct = (parts: [string, number][]): ConfigDim => ({
  size: parts.reduce((p, [, v]) => p * v, 1),
  field: `${parts.map(([f]) => `'${f}'`).join(' × ')} (${parts.map(([, v]) => v).join(' × ')})`,
});

/** The expected shape of every tensor whose key matches the pattern. */
export type ShapeRule = [RegExp, ConfigDim[]];

/**
 * Throws when a tensor named by a rule has another shape than the config
 * gives: `file: field 'intermediate_size' (56) does not fit tensor
 * model.layers.0.mlp.gate_proj.weight: expected shape [56, 32] from the
 * config, the weights have [64, 32]`. The first rule whose pattern matches a
 * key applies; keys no rule matches are left to the state-dict load.
 */
export function checkWeightShapes(file: string, weights: Record<string, Tensor>, rules: readonly ShapeRule[]): void {
  for (const key of Object.keys(weights).sort()) {
    const rule = rules.find(([re]) => re.test(key));
    if (!rule) continue;
    const dims = rule[1];
    const got = weights[key]!.shape;
    const want = dims.map((d) => d.size);
    if (got.length === want.length && got.every((s, i) => s === want[i])) continue;
    const bad = got.length === want.length ? dims.filter((d, i) => got[i] !== d.size) : dims;
    const fields = [...new Set(bad.map((d) => d.field))];
    const plural = fields.length > 1 || fields[0]!.includes(' × ');
    throw new Error(
      `${file}: field${plural ? 's' : ''} ${fields.join(' and ')} do${plural ? '' : 'es'} not fit tensor ${key}: ` +
      `expected shape ${formatShape(want)} from the config, the weights have ${formatShape(got)}`,
    );
  }
}

/**
 * Throws when the weights hold another number of layers than the config's
 * `field` says (layers counted by the index `pattern`'s first group captures).
 */
export function checkLayerCount(file: string, weights: Record<string, Tensor>, pattern: RegExp, field: string, layers: number): void {
  const found = new Set<number>();
  for (const k of Object.keys(weights)) {
    const m = pattern.exec(k);
    if (m) found.add(Number(m[1]));
  }
  const count = found.size ? Math.max(...found) + 1 : 0;
  if (count !== layers) {
    throw new Error(`${file}: field '${field}' is ${layers} but the weights have ${count} layer${count === 1 ? '' : 's'}${count ? ` (indices 0–${count - 1})` : ''}`);
  }
}
