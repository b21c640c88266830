/** Optimizers and learning-rate schedules with PyTorch 1.13's names and semantics (`torch.optim`). */
export {
  Optimizer, type ParamGroup, type ParamGroupInput, type ParamsInput, type ZeroGradOptions, type OptimizerStateDict,
  type ParamStateValue,
} from './optimizer';
export { SGD, type SGDOptions, type SGDGroupOptions } from './sgd';
export { Adam, AdamW, type AdamOptions, type AdamGroupOptions } from './adam';
export * as lrScheduler from './lr-scheduler';
