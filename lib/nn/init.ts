/**
 * `torch.nn.init`: PyTorch 1.13's initialisation functions under camelCase
 * names (`xavierUniform_` for `xavier_uniform_`), each filling a float32
 * tensor in place and returning it, plus `calculateGain`. Every module's
 * constructor initialises its parameters with these, as PyTorch's
 * `reset_parameters` does, so a module's initial values follow PyTorch's
 * distributions.
 *
 * Draws come from the process-wide generator (lib/random.ts), so `manualSeed(n)` makes model
 * construction reproducible (like `torch.manual_seed`; the stream is
 * attnode's own, not PyTorch's). Views are filled through their strides; the
 * caches derived from the tensor's memory (packed GEMM weights) are told it
 * changed.
 */
import { Tensor } from '../tensor';
import { describeValue, formatShape } from '../errors';
import { currentContext } from '../context';
import { erf } from '../backend/js/math';
import { markWritten } from '../in-place';
import { defaultGenerator } from '../random';

export { manualSeed } from '../random';

/** Checks `tensor` (float32, not while recording) and writes `value()` into each element, through its strides. */
function fill(fn: string, tensor: unknown, value: () => number): Tensor<'float32'> {
  const t = checkTensor(fn, tensor);
  if (currentContext().recording) {
    throw new Error(`nn.init.${fn}: writes the tensor in JS, which cannot run inside runAsync() (recorded kernels would run after it)`);
  }
  const d = t.data;
  if (d.length === t.size) {
    // Dense (contiguous or a permutation of it): every element of data is one of the tensor's.
    for (let i = 0; i < d.length; i++) d[i] = value();
  } else if (t.size > 0) {
    const { shape, strides } = t;
    const idx = new Array<number>(shape.length).fill(0);
    let off = 0;
    for (let e = 0; e < t.size; e++) {
      d[off] = value();
      for (let k = shape.length - 1; k >= 0; k--) {
        off += strides[k]!;
        if (++idx[k]! < shape[k]!) break;
        off -= strides[k]! * shape[k]!;
        idx[k] = 0;
      }
    }
  }
  markWritten(t);
  return t;
}

function checkTensor(fn: string, tensor: unknown): Tensor<'float32'> {
  if (!(tensor instanceof Tensor) || tensor.dtype !== 'float32') {
    throw new TypeError(`nn.init.${fn}: argument 'tensor' must be a float32 Tensor, got ${describeValue(tensor)}`);
  }
  return tensor as Tensor<'float32'>;
}

function num(fn: string, name: string, value: unknown): number {
  if (typeof value !== 'number' || Number.isNaN(value)) throw new TypeError(`nn.init.${fn}: argument '${name}' must be a number, got ${describeValue(value)}`);
  return value;
}

/** A nonlinearity {@link calculateGain} knows (PyTorch's names). */
export type Nonlinearity =
  | 'linear' | 'conv1d' | 'conv2d' | 'conv3d' | 'conv_transpose1d' | 'conv_transpose2d' | 'conv_transpose3d'
  | 'sigmoid' | 'tanh' | 'relu' | 'leaky_relu' | 'selu';

const LINEAR_FNS = ['linear', 'conv1d', 'conv2d', 'conv3d', 'conv_transpose1d', 'conv_transpose2d', 'conv_transpose3d'];

/**
 * The recommended gain for a nonlinearity (PyTorch's `calculate_gain`): 1 for linear/conv/sigmoid, 5/3 for tanh,
 * √2 for relu, √(2 / (1 + slope²)) for leaky_relu (`param` the negative slope, default 0.01), 3/4 for selu.
 * @throws RangeError for another nonlinearity; TypeError for a leaky_relu slope that is not a number.
 */
export function calculateGain(nonlinearity: Nonlinearity, param?: number | null): number {
  if (LINEAR_FNS.includes(nonlinearity) || nonlinearity === 'sigmoid') return 1;
  if (nonlinearity === 'tanh') return 5 / 3;
  if (nonlinearity === 'relu') return Math.sqrt(2);
  if (nonlinearity === 'leaky_relu') {
    const slope = param === undefined || param === null ? 0.01 : param;
    if (typeof slope !== 'number' || !Number.isFinite(slope)) {
      throw new TypeError(`nn.init.calculateGain: negative_slope ${describeValue(param)} not a valid number (argument 'param')`);
    }
    return Math.sqrt(2 / (1 + slope ** 2));
  }
  if (nonlinearity === 'selu') return 3 / 4;
  throw new RangeError(`nn.init.calculateGain: Unsupported nonlinearity ${describeValue(nonlinearity)}; known: ${[...LINEAR_FNS, 'sigmoid', 'tanh', 'relu', 'leaky_relu', 'selu'].join(', ')}`);
}

/** Fills `tensor` from U(a, b) (PyTorch's `uniform_`, default U(0, 1)). @throws RangeError when a > b. */
export function uniform_(tensor: Tensor<'float32'>, a = 0, b = 1): Tensor<'float32'> {
  num('uniform_', 'a', a);
  num('uniform_', 'b', b);
  if (!(a <= b)) throw new RangeError(`nn.init.uniform_: expects a <= b (a [from, to) range), got a = ${a} > b = ${b}`);
  const rng = defaultGenerator();
  return fill('uniform_', tensor, () => a + (b - a) * rng.uniform());
}

/** Fills `tensor` from N(mean, std²) (PyTorch's `normal_`, default N(0, 1)). @throws RangeError when std < 0. */
export function normal_(tensor: Tensor<'float32'>, mean = 0, std = 1): Tensor<'float32'> {
  num('normal_', 'mean', mean);
  num('normal_', 'std', std);
  if (!(std >= 0)) throw new RangeError(`nn.init.normal_: expects std >= 0.0, got ${std}`);
  const rng = defaultGenerator();
  return fill('normal_', tensor, () => mean + std * rng.normal());
}

/** erf⁻¹(y) for y in (−1, 1), to double precision (a rational first guess refined by Newton steps on erf). */
function erfinv(y: number): number {
  if (y <= -1) return y === -1 ? -Infinity : NaN;
  if (y >= 1) return y === 1 ? Infinity : NaN;
  // Giles' single-precision approximation as the start.
  let w = -Math.log((1 - y) * (1 + y));
  let x: number;
  if (w < 5) {
    w -= 2.5;
    let p = 2.81022636e-8;
    for (const c of [3.43273939e-7, -3.5233877e-6, -4.39150654e-6, 0.00021858087, -0.00125372503, -0.00417768164, 0.246640727, 1.50140941]) p = c + p * w;
    x = p * y;
  } else {
    w = Math.sqrt(w) - 3;
    let p = -0.000200214257;
    for (const c of [0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773, -0.0076224613, 0.00943887047, 1.00167406, 2.83297682]) p = c + p * w;
    x = p * y;
  }
  for (let k = 0; k < 3; k++) {
    const e = erf(x) - y;
    x -= e / (Math.exp(-x * x) * 1.1283791670955126); // d/dx erf = 2/√π · e^(−x²)
  }
  return x;
}

const normCdf = (x: number): number => (1 + erf(x / Math.SQRT2)) / 2;

/**
 * Fills `tensor` from N(mean, std²) truncated to [a, b] (PyTorch's `trunc_normal_`: inverse-CDF sampling of
 * U(2·Φ(a′) − 1, 2·Φ(b′) − 1) through erf⁻¹, then clamped). Defaults N(0, 1) on [−2, 2].
 * @throws RangeError when std <= 0 or a > b.
 */
export function truncNormal_(tensor: Tensor<'float32'>, mean = 0, std = 1, a = -2, b = 2): Tensor<'float32'> {
  for (const [name, v] of [['mean', mean], ['std', std], ['a', a], ['b', b]] as const) num('truncNormal_', name, v);
  if (!(std > 0)) throw new RangeError(`nn.init.truncNormal_: expects std > 0, got ${std}`);
  if (!(a <= b)) throw new RangeError(`nn.init.truncNormal_: expects a <= b, got a = ${a} > b = ${b}`);
  const lo = 2 * normCdf((a - mean) / std) - 1;
  const hi = 2 * normCdf((b - mean) / std) - 1;
  const rng = defaultGenerator();
  return fill('truncNormal_', tensor, () => {
    const v = mean + std * Math.SQRT2 * erfinv(lo + (hi - lo) * rng.uniform());
    return Math.min(Math.max(v, a), b);
  });
}

/** PyTorch's spelling of {@link truncNormal_}. */
export const trunc_normal_ = truncNormal_;

/** Fills `tensor` with `val` (PyTorch's `constant_`). */
export function constant_(tensor: Tensor<'float32'>, val: number): Tensor<'float32'> {
  if (typeof val !== 'number') throw new TypeError(`nn.init.constant_: argument 'val' must be a number, got ${describeValue(val)}`);
  return fill('constant_', tensor, () => val);
}

/** Fills `tensor` with ones (PyTorch's `ones_`). */
export function ones_(tensor: Tensor<'float32'>): Tensor<'float32'> {
  return fill('ones_', tensor, () => 1);
}

/** Fills `tensor` with zeros (PyTorch's `zeros_`). */
export function zeros_(tensor: Tensor<'float32'>): Tensor<'float32'> {
  return fill('zeros_', tensor, () => 0);
}

/**
 * Fan-in and fan-out as PyTorch computes them: dim 1 and dim 0, each times the receptive field (the product of
 * dims 2…). @throws RangeError for fewer than 2 dimensions.
 */
export function calculateFanInAndFanOut(tensor: Tensor): [number, number] {
  const fn = 'calculateFanInAndFanOut';
  if (!(tensor instanceof Tensor)) throw new TypeError(`nn.init.${fn}: argument 'tensor' must be a Tensor, got ${describeValue(tensor)}`);
  if (tensor.ndim < 2) {
    throw new RangeError(`nn.init: Fan in and fan out can not be computed for tensor with fewer than 2 dimensions (got shape ${formatShape(tensor.shape)})`);
  }
  const receptive = tensor.shape.slice(2).reduce((x, y) => x * y, 1);
  return [tensor.shape[1]! * receptive, tensor.shape[0]! * receptive];
}

/** Which fan Kaiming initialisation preserves: the forward pass's ('fan_in', the default) or the backward pass's ('fan_out'). */
export type FanMode = 'fan_in' | 'fan_out';

/** Options of {@link kaimingUniform_} and {@link kaimingNormal_} (PyTorch's keyword arguments). */
export interface KaimingOptions {
  /** The negative slope of the rectifier after this layer (only with 'leaky_relu'; default 0). */
  a?: number;
  /** Default 'fan_in'. */
  mode?: FanMode;
  /** Default 'leaky_relu' (with a = 0: the relu gain √2). */
  nonlinearity?: Nonlinearity;
}

function kaimingStd(fn: string, tensor: Tensor, options: KaimingOptions): number | null {
  if (options === null || typeof options !== 'object') throw new TypeError(`nn.init.${fn}: options must be an object, got ${describeValue(options)}`);
  for (const key of Object.keys(options)) {
    if (!['a', 'mode', 'nonlinearity'].includes(key)) throw new TypeError(`nn.init.${fn}: unknown option '${key}'; known options: a, mode, nonlinearity`);
  }
  const { a = 0, mode = 'fan_in', nonlinearity = 'leaky_relu' } = options;
  num(fn, 'a', a);
  const m = typeof mode === 'string' ? mode.toLowerCase() : mode;
  if (m !== 'fan_in' && m !== 'fan_out') {
    throw new RangeError(`nn.init.${fn}: Mode ${describeValue(mode)} not supported, please use one of 'fan_in', 'fan_out' (option 'mode')`);
  }
  checkTensor(fn, tensor);
  // PyTorch 1.13 warns "Initializing zero-element tensors is a no-op" and returns.
  if (tensor.shape.includes(0)) return null;
  const [fanIn, fanOut] = calculateFanInAndFanOut(tensor);
  return calculateGain(nonlinearity, a) / Math.sqrt(m === 'fan_in' ? fanIn : fanOut);
}

/**
 * Kaiming (He) uniform: U(−bound, bound) with bound = gain · √(3 / fan) (PyTorch's `kaiming_uniform_`; `nn.Linear`
 * uses it with a = √5, i.e. bound = 1/√fanIn). A tensor with a zero dimension is left as it is.
 */
export function kaimingUniform_(tensor: Tensor<'float32'>, options: KaimingOptions = {}): Tensor<'float32'> {
  const std = kaimingStd('kaimingUniform_', tensor, options);
  if (std === null) return tensor;
  const bound = Math.sqrt(3) * std;
  return uniform_(tensor, -bound, bound);
}

/** Kaiming (He) normal: N(0, (gain / √fan)²) (PyTorch's `kaiming_normal_`). */
export function kaimingNormal_(tensor: Tensor<'float32'>, options: KaimingOptions = {}): Tensor<'float32'> {
  const std = kaimingStd('kaimingNormal_', tensor, options);
  if (std === null) return tensor;
  return normal_(tensor, 0, std);
}

/** Xavier (Glorot) uniform: U(−a, a) with a = gain · √(6 / (fanIn + fanOut)) (PyTorch's `xavier_uniform_`). */
export function xavierUniform_(tensor: Tensor<'float32'>, gain = 1): Tensor<'float32'> {
  checkTensor('xavierUniform_', tensor);
  num('xavierUniform_', 'gain', gain);
  const [fanIn, fanOut] = calculateFanInAndFanOut(tensor);
  const a = Math.sqrt(3) * gain * Math.sqrt(2 / (fanIn + fanOut));
  return uniform_(tensor, -a, a);
}

/** Xavier (Glorot) normal: N(0, std²) with std = gain · √(2 / (fanIn + fanOut)) (PyTorch's `xavier_normal_`). */
export function xavierNormal_(tensor: Tensor<'float32'>, gain = 1): Tensor<'float32'> {
  checkTensor('xavierNormal_', tensor);
  num('xavierNormal_', 'gain', gain);
  const [fanIn, fanOut] = calculateFanInAndFanOut(tensor);
  return normal_(tensor, 0, gain * Math.sqrt(2 / (fanIn + fanOut)));
}
