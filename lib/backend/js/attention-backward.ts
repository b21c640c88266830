/**
 * The flash-attention backward in plain TypeScript (see AttentionBackwardArgs): the reference the native kernel is
 * tested against and what the TS backend trains with. Same blockwise math as the kernel — for each query tile
 * and each key block it sees, P = exp(scale·q·kᵀ + masks − L) and dS = P ∘ (dO·Vᵀ − D) are recomputed from the
 * forward's log-sum-exp L and D = rowsum(dO ∘ O), then dV += Pᵀ·dO, dK += scale·dSᵀ·Q, dQ += scale·dS·K — with
 * sums in JS doubles; with dropout the forward's mask is regenerated from its seed (attention.ts's dropoutFactor).
 * No lq×lk matrix: one tile × block of probabilities at a time, plus one head's gradient
 * accumulators.
 */
import type { AttentionBackwardArgs } from '../backend';
import { applyMask, dropoutFactor, dropoutOf, dropoutRowKey } from './attention';

/** Query rows per tile and keys per block, as the native kernel (kAttnQueryTile, kAttnKeyBlock). */
const TILE = 32;
const BLOCK = 64;

type Strides = readonly [number, number, number];

function gradStrides(args: AttentionBackwardArgs, name: 'gradQStrides' | 'gradKStrides' | 'gradVStrides'): Strides {
  const st = args[name];
  if (!st || st.length !== 3) {
    throw new TypeError(`attentionBackward: argument '${name}' must be an Array of 3 strides (batch, head, position) when its gradient is given, got ${st === undefined ? 'undefined' : JSON.stringify(st)}`);
  }
  return st;
}

export function attentionBackward(args: AttentionBackwardArgs): void {
  const { q, k, v, out, qStrides: qs, kStrides: ks, vStrides: vs, outStrides: os, batch, heads, lq, lk, dk, dv, scale, masks, causal, lse, dOut } = args;
  const gs = args.dOutStrides;
  const kvHeads = args.kvHeads ?? heads;
  if (heads > 0 && !(Number.isInteger(kvHeads) && kvHeads >= 1 && heads % kvHeads === 0)) {
    throw new RangeError(`attentionBackward: argument 'kvHeads' must divide heads = ${heads}, got ${kvHeads}`);
  }
  if (lse.length < batch * heads * lq) {
    throw new RangeError(`attentionBackward: argument 'lse' has ${lse.length} elements, expected at least ${batch * heads * lq} (batch*heads*lq)`);
  }
  const { gradQ, gradK, gradV } = args;
  const dqs = gradQ ? gradStrides(args, 'gradQStrides') : null;
  const dks = gradK ? gradStrides(args, 'gradKStrides') : null;
  const dvs = gradV ? gradStrides(args, 'gradVStrides') : null;
  const drop = dropoutOf('attentionBackward', args.dropoutP, args.dropoutSeed);
  const group = heads > 0 ? heads / kvHeads : 1;
  const p = new Float64Array(TILE * BLOCK);
  const ds = new Float64Array(TILE * BLOCK);
  const dRow = new Float64Array(TILE);
  const dqAcc = new Float64Array(lq * dk);
  const dkAcc = new Float64Array(lk * dk);
  const dvAcc = new Float64Array(lk * dv);
  if (args.workspaceBytes) args.workspaceBytes[0] = 8 * (p.length + ds.length + dRow.length + dqAcc.length + dkAcc.length + dvAcc.length);
  for (let b = 0; b < batch; b++) {
    for (let hk = 0; hk < kvHeads && heads > 0; hk++) {
      dkAcc.fill(0);
      dvAcc.fill(0);
      const kBase = b * ks[0] + hk * ks[1];
      const vBase = b * vs[0] + hk * vs[1];
      for (let h = hk * group; h < (hk + 1) * group; h++) {
        dqAcc.fill(0);
        const qBase = b * qs[0] + h * qs[1];
        const oBase = b * os[0] + h * os[1];
        const gBase = b * gs[0] + h * gs[1];
        const lBase = (b * heads + h) * lq;
        for (let i0 = 0; i0 < lq; i0 += TILE) {
          const nq = Math.min(TILE, lq - i0);
          for (let ii = 0; ii < nq; ii++) {
            // D_i = dO_i · O_i.
            let d = 0;
            for (let c = 0; c < dv; c++) d += dOut[gBase + (i0 + ii) * gs[2] + c]! * out[oBase + (i0 + ii) * os[2] + c]!;
            dRow[ii] = d;
          }
          const jEnd = causal ? Math.min(lk, i0 + nq) : lk;
          for (let j0 = 0; j0 < jEnd; j0 += BLOCK) {
            const nk = Math.min(BLOCK, jEnd - j0);
            // P and dS of the tile against the block.
            for (let ii = 0; ii < nq; ii++) {
              const i = i0 + ii;
              const qi = qBase + i * qs[2];
              const gi = gBase + i * gs[2];
              const L = lse[lBase + i]!;
              const rowKey = drop ? dropoutRowKey(drop, lBase + i) : 0;
              for (let jj = 0; jj < nk; jj++) {
                const j = j0 + jj;
                let pij = 0;
                let dsij = 0;
                if (!causal || j <= i) {
                  const kj = kBase + j * ks[2];
                  let dot = 0;
                  for (let c = 0; c < dk; c++) dot += q[qi + c]! * k[kj + c]!;
                  let s = dot * scale;
                  for (let m = 0; m < masks.length; m++) s = applyMask(masks[m]!, s, b, h, i, j);
                  pij = Math.exp(s - L);
                  const vj = vBase + j * vs[2];
                  let dp = 0;
                  for (let c = 0; c < dv; c++) dp += dOut[gi + c]! * v[vj + c]!;
                  // Dropout: the output used P ∘ M, so dV takes P ∘ M and dP′ passes through M.
                  const m = drop ? dropoutFactor(drop, rowKey, j) : 1;
                  dsij = pij * (dp * m - dRow[ii]!);
                  pij *= m;
                } else if (Number.isNaN(L)) {
                  pij = NaN;
                  dsij = NaN;
                }
                p[ii * BLOCK + jj] = pij;
                ds[ii * BLOCK + jj] = dsij;
              }
            }
            // dV += Pᵀ·dO, dK += dSᵀ·Q, dQ += dS·K (scale applied when written).
            for (let ii = 0; ii < nq; ii++) {
              const i = i0 + ii;
              const qi = qBase + i * qs[2];
              const gi = gBase + i * gs[2];
              for (let jj = 0; jj < nk; jj++) {
                const j = j0 + jj;
                const pij = p[ii * BLOCK + jj]!;
                const dsij = ds[ii * BLOCK + jj]!;
                if (gradV && pij !== 0) for (let c = 0; c < dv; c++) dvAcc[j * dv + c] += pij * dOut[gi + c]!;
                if (dsij === 0) continue;
                if (gradK) for (let c = 0; c < dk; c++) dkAcc[j * dk + c] += dsij * q[qi + c]!;
                if (gradQ) {
                  const kj = kBase + j * ks[2];
                  for (let c = 0; c < dk; c++) dqAcc[i * dk + c] += dsij * k[kj + c]!;
                }
              }
            }
          }
        }
        if (gradQ && dqs) {
          for (let i = 0; i < lq; i++) {
            const at = b * dqs[0] + h * dqs[1] + i * dqs[2];
            for (let c = 0; c < dk; c++) gradQ[at + c] = dqAcc[i * dk + c]! * scale;
          }
        }
      }
      for (let j = 0; j < lk; j++) {
        if (gradK && dks) {
          const at = b * dks[0] + hk * dks[1] + j * dks[2];
          for (let c = 0; c < dk; c++) gradK[at + c] = dkAcc[j * dk + c]! * scale;
        }
        if (gradV && dvs) {
          const at = b * dvs[0] + hk * dvs[1] + j * dvs[2];
          for (let c = 0; c < dv; c++) gradV[at + c] = dvAcc[j * dv + c]!;
        }
      }
    }
  }
}
