/** `torch.nn.utils`: gradient clipping (implemented in lib/optim, beside the optimizers whose fused ops it shares). */
export { clipGradNorm, type ClipGradNormOptions } from '../optim/clip-grad';
export { consumePrefixInStateDictIfPresent } from './state-dict-report';
