/**
 * Autograd: PyTorch's reverse-mode automatic differentiation on attnode's
 * ops. Importing this registers the engine and the view backward into
 * `Tensor` (the package root and lib/nn import it).
 *
 * - lib/autograd/graph.ts: nodes, edges, `recordOp` (what every op calls in grad mode);
 * - lib/autograd/engine.ts: `Tensor.backward`;
 * - lib/autograd/views.ts: backward of the Tensor view methods;
 * - lib/autograd/grad-mode.ts: `noGrad`, `enableGrad`, `isGradEnabled`, `setGradEnabled`.
 *
 * Each op's backward lives beside its forward in lib/ops/.
 */
import { registerAutogradHooks } from '../tensor';
import { runBackward } from './engine';
import { recordView } from './views';
import { Node } from './graph';

registerAutogradHooks({
  backward: runBackward,
  view: recordView,
  retainGrad: (t) => {
    const fn = t.gradFn;
    if (fn instanceof Node) (fn.retained ??= new Map()).set(t._outputNr, t);
  },
});

export { noGrad, enableGrad, isGradEnabled, setGradEnabled } from './grad-mode';
export { Node, AccumulateGrad, needsGrad, recordOp, type BackwardFn, type Edge } from './graph';
