/**
 * What code that writes a tensor's memory in place from JS (an optimizer step's kernel, the nn.init functions)
 * must do afterwards: bump the tensor's version counter (shared with its views), which autograd checks for saved
 * tensors and the native backend keys its packed GEMM copies of weights on, so the next forward packs the new values.
 */
import type { Tensor } from './tensor';

/** Marks `t`'s memory as written in place (`t._bumpVersion()`). */
export function markWritten(t: Tensor): void {
  t._bumpVersion();
}
