/**
 * The attention call shared by `scaledDotProductAttention` and multi-head
 * attention's `attendHeads`, with its autograd and dropout.
 *
 * Without grad and dropout it is the fused kernel as before (no L×S matrix).
 * In grad mode, or with dropout, and without returned weights it stays fused
 * (flash): the kernel also writes each query row's log-sum-exp L [batch,
 * heads, L] (float32), which is all the graph keeps besides q, k, v and the
 * output, and the backward is one `attentionBackward` op (FlashAttention-2:
 * probabilities recomputed per query tile × key block, memory O(L + S)).
 * Dropout then runs inside the kernel on a mask hashed from one seed drawn
 * from the call's generator, which the backward regenerates. With the
 * weights returned and grad or dropout, it is composed: the kernel returns the probabilities P [batch, heads, L, S] as
 * well (float32); dropout multiplies P by a scaled keep-mask and the output
 * is recomputed as P′·V with GEMMs. {@link attentionBackward} is that
 * path's backward (materialising dP):
 *   dV = P′ᵀ·dO,  dP′ = dO·Vᵀ (+ the gradient of returned weights),
 *   dP = dP′ ⊙ mask,  dS = softmax backward(P, dP),
 *   dQ = scale·dS·K,  dK = scale·dSᵀ·Q,
 * all on batched GEMMs reading q, k, v and dO through their (batch, head,
 * position) strides; grouped-query heads sum their group's gradients.
 */
import { Activation, BinaryOp, type AttentionMask, type AttentionOperands, type AttentionPrecision } from '../backend/backend';
import { resolveBackend } from '../backend/registry';
import { allocateUninitialized } from '../dtype';
import type { OpOptions } from '../op-options';
import { Rng, Tensor } from '../tensor';
import { needsGrad, recordOp } from '../autograd/graph';
import type { F32 } from './checks';
import { dropoutMask } from './dropout';

/** (batch, head, position) element strides of a tensor laid out like one attention operand. */
export type HeadStrides = (t: F32) => [number, number, number];

/** Dropout on the attention probabilities (training mode with p > 0). */
export interface AttentionDropout {
  p: number;
  generator: Rng;
}

/** One attention call: q, k, v and the output `out`, each with features contiguous, addressed through `strides`. */
export interface AttentionCall extends OpOptions {
  q: F32;
  k: F32;
  v: F32;
  /** Written in place (its history becomes this call's in grad mode). */
  out: F32;
  strides: HeadStrides;
  batch: number;
  heads: number;
  kvHeads: number;
  lq: number;
  lk: number;
  dk: number;
  dv: number;
  scale: number;
  masks: readonly AttentionMask[];
  causal: boolean;
  /** Also return the probabilities (after dropout) [batch, heads, L, S]. */
  needWeights: boolean;
  precision: AttentionPrecision;
  dropout?: AttentionDropout | null;
}


/**
 * Calls `f(b, h0, count, kvHead, kvStep)` over blocks of query heads that one batched GEMM covers: with
 * kvHeads === heads, all heads of sequence b (each with its own kv head, kvStep 1); with grouped-query heads,
 * each kv head's group (kvStep 0: the group shares it).
 */
function headBlocks(c: AttentionCall, f: (b: number, h0: number, count: number, kvHead: number, kvStep: number) => void): void {
  const group = c.heads / c.kvHeads;
  for (let b = 0; b < c.batch; b++) {
    if (group === 1) f(b, 0, c.heads, 0, 1);
    else for (let j = 0; j < c.kvHeads; j++) f(b, j * group, group, j, 0);
  }
}

function offset(st: [number, number, number], b: number, h: number): number {
  return b * st[0] + h * st[1];
}

/** Copies a head-major [batch, heads, L, d] buffer into `dst` (any layout `strides` addresses). */
function fromHeadMajor(hm: Float32Array, dst: F32, strides: HeadStrides, shape: [number, number, number, number], c: OpOptions): void {
  if (hm.length === 0) return;
  const [sb, sh, sl] = strides(dst);
  resolveBackend(c.backend).copy({
    x: hm, xStrides: [shape[1] * shape[2] * shape[3], shape[2] * shape[3], shape[3], 1], y: dst.data,
    yStrides: [sb, sh, sl, 1], shape,
  });
}

/**
 * Runs the attention of `c` into `c.out`; returns the weights when asked for. Records the backward when q, k or v
 * require grad in grad mode.
 */
export function runAttention(c: AttentionCall): F32 | null {
  const grad = needsGrad(c.q, c.k, c.v);
  const drop = c.dropout && c.dropout.p > 0 ? c.dropout : null;
  const be = resolveBackend(c.backend);
  const pShape = [c.batch, c.heads, c.lq, c.lk];
  const pSize = c.batch * c.heads * c.lq * c.lk;
  const kernel = (weights: Float32Array | null, precision: AttentionPrecision, lse?: Float32Array, dropoutSeed?: number): void => {
    be.attention({
      ...operands(c, dropoutSeed), weights, ...(precision !== 'float32' ? { precision } : {}), ...(lse ? { lse } : {}),
    });
  };
  if (!c.needWeights) {
    if (!grad && !drop) {
      kernel(null, c.precision);
      return null;
    }
    // Flash: dropout runs inside the kernel on a mask hashed from one seed drawn here, and the graph keeps the
    // output, each row's log-sum-exp and that seed, never the probabilities or the mask.
    const seed = drop ? drop.generator.nextUint32() : undefined;
    const lse = grad ? (allocateUninitialized('float32', c.batch * c.heads * c.lq) as Float32Array) : undefined;
    kernel(null, 'float32', lse, seed);
    if (lse) {
      recordOp('ScaledDotProductAttentionBackward', [c.q, c.k, c.v], [c.out],
        (grads, needs) => flashAttentionBackward(c, lse, seed, grads[0]!, needs),
        [c.q, c.k, c.v, c.out, asSaved(lse), ...c.masks.map((m) => asSaved(m.data))]);
    }
    return null;
  }
  if (!grad && !drop) {
    const weights = new Tensor(allocateUninitialized('float32', pSize), pShape, 'float32');
    kernel(weights.data, c.precision);
    return weights;
  }
  // Composed: the probabilities are materialised (float32), dropout applied to them, the output recomputed.
  const probs = new Tensor(allocateUninitialized('float32', pSize), pShape, 'float32');
  kernel(probs.data, 'float32');
  let kept = probs;
  let mask: Float32Array | null = null;
  if (drop && pSize > 0) {
    mask = dropoutMask(pSize, drop.p, drop.generator, c.backend);
    kept = new Tensor(allocateUninitialized('float32', pSize), pShape, 'float32');
    be.binary({ op: BinaryOp.Mul, a: probs.data, aStrides: [1], b: mask, bStrides: [1], y: kept.data, shape: [pSize] });
    const hm = allocateUninitialized('float32', c.batch * c.heads * c.lq * c.dv);
    const vs = c.strides(c.v);
    const lqk = c.lq * c.lk;
    headBlocks(c, (b, h0, count, kvHead, kvStep) => {
      be.gemm({
        a: kept.data.subarray((b * c.heads + h0) * lqk), b: c.v.data.subarray(offset(vs, b, kvHead)), ldb: vs[2],
        c: hm.subarray((b * c.heads + h0) * c.lq * c.dv), m: c.lq, n: c.dv, k: c.lk, act: Activation.None,
        batch: count, strideA: lqk, strideB: kvStep * vs[1], strideC: c.lq * c.dv,
      });
    });
    fromHeadMajor(hm, c.out, c.strides, [c.batch, c.heads, c.lq, c.dv], c);
  }
  const weights = c.needWeights ? kept : null;
  if (grad) {
    const saved = { call: c, probs, kept, mask };
    recordOp('ScaledDotProductAttentionBackward', [c.q, c.k, c.v], weights ? [c.out, weights] : [c.out],
      (grads, needs) => attentionBackward(saved, grads[0]!, weights ? grads[1]! : null, needs),
      [c.q, c.k, c.v, probs, kept, ...(mask ? [asSaved(mask)] : [])]);
  }
  return weights;
}

/**
 * A typed array a backward reads, as a tensor for its node's saved list: the node then holds its buffer, which
 * goes back to the pool only once the node has run (lib/workspace.ts).
 */
function asSaved(a: Float32Array | Uint8Array): Tensor {
  return a instanceof Float32Array ? new Tensor(a, [a.length], 'float32') : new Tensor(a, [a.length], 'bool');
}

/** The backend arguments every attention op of call `c` shares (with its dropout when a seed is given). */
function operands(c: AttentionCall, dropoutSeed: number | undefined): AttentionOperands {
  return {
    q: c.q.data, k: c.k.data, v: c.v.data, out: c.out.data,
    qStrides: c.strides(c.q), kStrides: c.strides(c.k), vStrides: c.strides(c.v), outStrides: c.strides(c.out),
    batch: c.batch, heads: c.heads, lq: c.lq, lk: c.lk, dk: c.dk, dv: c.dv, scale: c.scale, masks: c.masks,
    causal: c.causal, ...(c.kvHeads !== c.heads ? { kvHeads: c.kvHeads } : {}),
    ...(c.dropout && c.dropout.p > 0 && dropoutSeed !== undefined ? { dropoutP: c.dropout.p, dropoutSeed } : {}),
  };
}

/** Scratch bytes of the last {@link flashAttentionBackward} call, as its backend reported them (tests read it). */
let lastFlashWorkspaceBytes = 0;

/**
 * Scratch bytes the last flash-attention backward used beyond its inputs and outputs (what its backend reported;
 * 0 for a backward recorded for `runAsync`, whose kernel has not run when it returns). For tests and diagnostics.
 */
export function lastAttentionBackwardWorkspaceBytes(): number {
  return lastFlashWorkspaceBytes;
}

/**
 * The flash backward of one attention call: gradients of q, k and v (each a contiguous tensor of its input's
 * shape, null where `needs` says none) from the gradient of the output, through the backend's `attentionBackward`
 * with the forward's log-sum-exp `lse`.
 */
export function flashAttentionBackward(
  c: AttentionCall, lse: Float32Array, dropoutSeed: number | undefined, dOut: F32, needs: readonly boolean[],
): [F32 | null, F32 | null, F32 | null] {
  const be = resolveBackend(c.backend);
  const g = dOut.strides[dOut.ndim - 1] === 1 || c.dv <= 1 ? dOut : dOut.contiguous(c.backend);
  const grad = (t: F32, need: boolean | undefined): F32 | null =>
    need ? new Tensor(allocateUninitialized('float32', t.size), t.shape, 'float32') : null;
  const [dq, dk, dv] = [grad(c.q, needs[0]), grad(c.k, needs[1]), grad(c.v, needs[2])];
  const ws = new Int32Array(1);
  be.attentionBackward({
    ...operands(c, dropoutSeed), lse, dOut: g.data, dOutStrides: c.strides(g),
    gradQ: dq ? dq.data : null, gradK: dk ? dk.data : null, gradV: dv ? dv.data : null,
    ...(dq ? { gradQStrides: c.strides(dq) } : {}), ...(dk ? { gradKStrides: c.strides(dk) } : {}),
    ...(dv ? { gradVStrides: c.strides(dv) } : {}), workspaceBytes: ws,
  });
  lastFlashWorkspaceBytes = ws[0]!;
  // Empty calls (no batch or heads) leave the outputs unwritten: their gradients are zero.
  if (c.batch === 0 || c.heads === 0) for (const t of [dq, dk, dv]) t?.data.fill(0);
  return [dq, dk, dv];
}

/** What the forward keeps for {@link attentionBackward}. */
export interface AttentionSaved {
  call: AttentionCall;
  /** Softmax probabilities [batch, heads, L, S]. */
  probs: F32;
  /** After dropout (probs itself without). */
  kept: F32;
  /** The keep-mask (0 or 1/(1 − p)), or null. */
  mask: Float32Array | null;
}

/**
 * The backward of one attention call (see the module comment): gradients of q, k and v, each a contiguous tensor
 * of its input's shape (null where `needs` says none), from the gradient of the output and, when the weights were
 * returned, of the weights.
 */
export function attentionBackward(
  saved: AttentionSaved, dOut: F32, dWeights: F32 | null, needs: readonly boolean[],
): [F32 | null, F32 | null, F32 | null] {
  const c = saved.call;
  const be = resolveBackend(c.backend);
  const g = dOut.strides[dOut.ndim - 1] === 1 || c.dv <= 1 ? dOut : dOut.contiguous(c.backend);
  const gs = c.strides(g);
  const [qs, ks, vs] = [c.strides(c.q), c.strides(c.k), c.strides(c.v)];
  const { lq, lk, dk, dv, heads } = c;
  const lqk = lq * lk;
  const pSize = c.batch * heads * lqk;
  const none = Activation.None;
  const empty = (t: F32): F32 => new Tensor(allocateUninitialized('float32', t.size), t.shape, 'float32');
  // Head-major gradients, copied into the inputs' shapes at the end. Every scratch buffer here is written whole by
  // its GEMMs (beta = 0 first), so it comes uninitialized (from the backward's buffer pool).
  const hmSize = (n: number, l: number, d: number): number => c.batch * n * l * d;
  if (pSize === 0 || c.batch === 0) {
    // No scores: nothing flows (an empty key sequence gives a zero output whatever q, k and v are).
    const zero = (t: F32): F32 => new Tensor(new Float32Array(t.size), t.shape, 'float32');
    return [needs[0] ? zero(c.q) : null, needs[1] ? zero(c.k) : null, needs[2] ? zero(c.v) : null];
  }

  let dv_: F32 | null = null;
  if (needs[2]) {
    const hm = allocateUninitialized('float32', hmSize(c.kvHeads, lk, dv));
    headBlocks(c, (b, h0, count, kvHead, kvStep) => {
      const cOff = (b * c.kvHeads + kvHead) * lk * dv;
      if (kvStep === 1) {
        // dV_h = P′_hᵀ · dO_h for every head at once.
        be.gemm({
          a: saved.kept.data.subarray(b * heads * lqk), transA: true, lda: lk, b: g.data.subarray(offset(gs, b, 0)), ldb: gs[2],
          c: hm.subarray(cOff), m: lk, n: dv, k: lq, act: none, batch: count, strideA: lqk, strideB: gs[1], strideC: lk * dv,
        });
        return;
      }
      for (let i = 0; i < count; i++) {
        const h = h0 + i;
        be.gemm({
          a: saved.kept.data.subarray((b * heads + h) * lqk), transA: true, lda: lk, b: g.data.subarray(offset(gs, b, h)), ldb: gs[2],
          c: hm.subarray(cOff), m: lk, n: dv, k: lq, act: none, beta: i === 0 ? 0 : 1,
        });
      }
    });
    dv_ = empty(c.v);
    fromHeadMajor(hm, dv_, c.strides, [c.batch, c.kvHeads, lk, dv], c);
  }
  if (!needs[0] && !needs[1]) return [null, null, dv_];

  // dP′ = dO · Vᵀ (+ dWeights), then through the dropout mask and the softmax: dS in place.
  const dS = allocateUninitialized('float32', pSize);
  headBlocks(c, (b, h0, count, kvHead, kvStep) => {
    be.gemm({
      a: g.data.subarray(offset(gs, b, h0)), lda: gs[2], b: c.v.data.subarray(offset(vs, b, kvHead)), transB: true, ldb: vs[2],
      c: dS.subarray((b * heads + h0) * lqk), m: lq, n: lk, k: dv, act: none, batch: count, strideA: gs[1],
      strideB: kvStep * vs[1], strideC: lqk,
    });
  });
  if (dWeights && pSize > 0) {
    be.binary({
      op: BinaryOp.Add, a: dS, aStrides: [heads * lqk, lqk, lk, 1], b: dWeights.data, bStrides: dWeights.strides, y: dS,
      shape: [c.batch, heads, lq, lk],
    });
  }
  if (saved.mask && pSize > 0) {
    be.binary({ op: BinaryOp.Mul, a: dS, aStrides: [1], b: saved.mask, bStrides: [1], y: dS, shape: [pSize] });
  }
  if (pSize > 0) be.softmaxBackward({ y: saved.probs.data, dy: dS, dx: dS, rows: c.batch * heads * lq, cols: lk });

  let dq: F32 | null = null;
  if (needs[0]) {
    const hm = allocateUninitialized('float32', hmSize(heads, lq, dk));
    headBlocks(c, (b, h0, count, kvHead, kvStep) => {
      // dQ_h = scale · dS_h · K_h.
      be.gemm({
        a: dS.subarray((b * heads + h0) * lqk), lda: lk, b: c.k.data.subarray(offset(ks, b, kvHead)), ldb: ks[2],
        c: hm.subarray((b * heads + h0) * lq * dk), m: lq, n: dk, k: lk, alpha: c.scale, act: none, batch: count,
        strideA: lqk, strideB: kvStep * ks[1], strideC: lq * dk,
      });
    });
    dq = empty(c.q);
    fromHeadMajor(hm, dq, c.strides, [c.batch, heads, lq, dk], c);
  }
  let dk_: F32 | null = null;
  if (needs[1]) {
    const hm = allocateUninitialized('float32', hmSize(c.kvHeads, lk, dk));
    headBlocks(c, (b, h0, count, kvHead, kvStep) => {
      const cOff = (b * c.kvHeads + kvHead) * lk * dk;
      // dK_h = scale · dS_hᵀ · Q_h (a group's heads summed into their shared K).
      if (kvStep === 1) {
        be.gemm({
          a: dS.subarray(b * heads * lqk), transA: true, lda: lk, b: c.q.data.subarray(offset(qs, b, 0)), ldb: qs[2],
          c: hm.subarray(cOff), m: lk, n: dk, k: lq, alpha: c.scale, act: none, batch: count, strideA: lqk,
          strideB: qs[1], strideC: lk * dk,
        });
        return;
      }
      for (let i = 0; i < count; i++) {
        const h = h0 + i;
        be.gemm({
          a: dS.subarray((b * heads + h) * lqk), transA: true, lda: lk, b: c.q.data.subarray(offset(qs, b, h)), ldb: qs[2],
          c: hm.subarray(cOff), m: lk, n: dk, k: lq, alpha: c.scale, act: none, beta: i === 0 ? 0 : 1,
        });
      }
    });
    dk_ = empty(c.k);
    fromHeadMajor(hm, dk_, c.strides, [c.batch, c.kvHeads, lk, dk], c);
  }
  return [dq, dk_, dv_];
}
