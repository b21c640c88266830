/**
 * Parameter initialisation with PyTorch's schemes, drawn from the
 * process-wide generator (lib/random.ts) so that `manualSeed(n)` makes model construction
 * reproducible (like `torch.manual_seed`). Initial values only matter for
 * models that are not loaded from a state dict: demos and benchmarks.
 */
import { zeros, type Tensor } from '../tensor';
import { defaultGenerator } from '../random';

export { manualSeed } from '../random';

/** A float32 tensor of `shape` filled from U(-bound, bound). */
export function uniform(shape: readonly number[], bound: number): Tensor<'float32'> {
  const t = zeros(shape, 'float32');
  const d = t.data;
  const rng = defaultGenerator();
  for (let i = 0; i < d.length; i++) d[i] = (rng.uniform() * 2 - 1) * bound;
  return t;
}

/** A float32 tensor of `shape` filled from N(0, std²). */
export function normal(shape: readonly number[], std = 1): Tensor<'float32'> {
  const t = zeros(shape, 'float32');
  const d = t.data;
  const rng = defaultGenerator();
  for (let i = 0; i < d.length; i++) d[i] = rng.normal() * std;
  return t;
}

/** Fan-in and fan-out as PyTorch computes them (dim 1 and dim 0 times the receptive field). */
function fans(shape: readonly number[]): [number, number] {
  const receptive = shape.slice(2).reduce((a, b) => a * b, 1);
  return [(shape[1] ?? 1) * receptive, (shape[0] ?? 1) * receptive];
}

/** `nn.init.xavier_uniform_`. */
export function xavierUniform(shape: readonly number[]): Tensor<'float32'> {
  const [fanIn, fanOut] = fans(shape);
  return uniform(shape, Math.sqrt(6 / (fanIn + fanOut)));
}

/** `nn.init.xavier_normal_`. */
export function xavierNormal(shape: readonly number[]): Tensor<'float32'> {
  const [fanIn, fanOut] = fans(shape);
  return normal(shape, Math.sqrt(2 / (fanIn + fanOut)));
}

/** `nn.Linear`'s default: kaiming_uniform(a=√5) on the weight, i.e. U(±1/√fanIn); the bias uses the same bound. */
export function linearDefault(shape: readonly number[], fanIn: number): Tensor<'float32'> {
  return uniform(shape, fanIn > 0 ? 1 / Math.sqrt(fanIn) : 0);
}
