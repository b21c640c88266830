/**
 * Backward of the Tensor view methods (`view`, `reshape`, `transpose`,
 * `permute`, `narrow`/`slice`/`select`, `unsqueeze`/`squeeze`, `expand`) and
 * of `contiguous`/`clone` copies. lib/tensor.ts calls {@link recordView}
 * through its hooks when the tensor requires grad in grad mode.
 *
 * A view's gradient is the gradient of the elements it selects: reshapes and
 * transposes move it back with the inverse view (no copy), a slice writes it
 * into zeros of the base's shape, an expand sums it over the repeated dims.
 */
import { resolveBackend } from '../backend/registry';
import { sumToShape } from '../ops/reduce';
import { allocateUninitialized } from '../dtype';
import { Tensor, type ViewKind } from '../tensor';
import { recordOp, type Node } from './graph';

type F32 = Tensor<'float32'>;

const NAMES: Record<ViewKind, string> = {
  reshape: 'ViewBackward',
  transpose: 'TransposeBackward',
  permute: 'PermuteBackward',
  slice: 'SliceBackward',
  select: 'SelectBackward',
  expand: 'ExpandBackward',
  copy: 'CloneBackward',
};

const ZERO = new Float32Array(1);

/**
 * Writes `g` into the region of zeros of `shape` that `region(z)` selects. The zeros are a backend fill of a
 * buffer from the backward's pool (a copy of one zero with stride 0), not a fresh zeroed ArrayBuffer: attention's
 * q, k and v are slices of one projection, so each step scatters three gradients of its full size.
 */
function scatterInto(g: F32, shape: readonly number[], region: (z: F32) => F32): F32 {
  const size = shape.reduce((a, b) => a * b, 1);
  const z = new Tensor(allocateUninitialized('float32', size), shape, 'float32');
  fillZeros(z);
  copyInto(g, region(z));
  return z;
}

/** Copies `g` into `r` (same shape, any strides) with a backend copy. */
export function copyInto(g: F32, r: F32): void {
  if (g.size > 0) resolveBackend().copy({ x: g.data, xStrides: g.strides, y: r.data, yStrides: r.strides, shape: g.shape });
}

/**
 * What a slice's or select's backward writes: entries [start, end) of dim `dim` of zeros of `shape` (the input's)
 * receive the gradient through `region`. The engine uses it to write the gradients of several slices of one tensor
 * (attention's q, k and v columns of one projection, the rows of `inProjWeight`) into one buffer, zero-filling only
 * what no slice covers, instead of scattering each into zeros of its own and adding them up.
 */
export interface ScatterInfo {
  readonly shape: readonly number[];
  readonly dim: number;
  readonly start: number;
  readonly end: number;
  readonly region: (z: F32) => F32;
}

/** Nodes of slices and selects with unit step (see {@link ScatterInfo}). */
const scatters = new WeakMap<Node, ScatterInfo>();

/** The region a slice/select node's gradient goes to, or undefined for every other node. */
export function scatterInfo(node: Node): ScatterInfo | undefined {
  return scatters.get(node);
}

/** Fills `z` with zeros (a backend copy of one zero with stride 0). */
export function fillZeros(z: F32): void {
  if (z.size > 0) resolveBackend().copy({ x: ZERO, xStrides: z.shape.map(() => 0), y: z.data, yStrides: z.strides, shape: z.shape });
}

/** Records the backward of `output = input.<kind>(...args)`. */
export function recordView(kind: ViewKind, input: Tensor, output: Tensor, args: readonly number[]): void {
  const shape = input.shape.slice();
  let backward: (g: F32) => F32;
  switch (kind) {
    case 'reshape':
      backward = (g) => g.reshape(shape);
      break;
    case 'transpose':
      backward = (g) => g.transpose(args[0]!, args[1]!);
      break;
    case 'permute': {
      const inverse = new Array<number>(args.length);
      args.forEach((d, i) => (inverse[d] = i));
      backward = (g) => g.permute(inverse);
      break;
    }
    case 'slice': {
      const [d, start, len, step] = args as [number, number, number, number];
      backward = (g) => scatterInto(g, shape, (z) => (len === 0 ? z.narrow(d, 0, 0) : z.slice(d, start, start + (len - 1) * step + 1, step)));
      break;
    }
    case 'select': {
      const [d, i] = args as [number, number];
      backward = (g) => scatterInto(g, shape, (z) => z.select(d, i));
      break;
    }
    case 'expand':
      backward = (g) => sumToShape(g, shape);
      break;
    case 'copy':
      backward = (g) => g;
      break;
  }
  const node = recordOp(NAMES[kind], [input], [output], ([g]) => [backward(g!)]);
  if (kind === 'select') {
    const [d, i] = args as [number, number];
    scatters.set(node, { shape, dim: d, start: i, end: i + 1, region: (z) => z.select(d, i) });
  } else if (kind === 'slice' && args[3] === 1 && args[2]! > 0) {
    const [d, start, len] = args as [number, number, number];
    scatters.set(node, { shape, dim: d, start, end: start + len, region: (z) => z.narrow(d, start, len) });
  }
}
