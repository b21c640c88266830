#!/usr/bin/python3
"""Generate test/fixtures/optim/steps.safetensors: PyTorch 1.13's optimizers, LR schedulers and clip_grad_norm_,
step by step, for test/optim.test.ts.

Usage (from the repository root, with Debian's torch 1.13):

    /usr/bin/python3 scripts/gen_optim_fixtures.py           # write the file
    /usr/bin/python3 scripts/gen_optim_fixtures.py --check   # exit 1 if it would change

Every case starts from the same five parameters (shapes [4, 6], [6], [3, 2, 5], [17] and [1]: matrices, vectors,
a 3-D tensor and lengths that leave vector tails) and runs `STEPS` steps of:

    optimizer.zero_grad(set_to_none=True); p.grad = <the step's gradient> for the parameters listed that step
    [clip_grad_norm_(params, max_norm, norm_type)]; optimizer.step(); [scheduler.step()]

Parameters left out of a step's list have no gradient that step (PyTorch skips them: their state and step count
do not move). Tensors, per case `<case>`:

    <case>.init.p<i>        the initial parameters
    <case>.s<k>.g<i>        step k's gradient of parameter i (only those listed that step)
    <case>.s<k>.p<i>        parameter i after step k
    <case>.state.<i>.<key>  the final optimizer state of parameter i (exp_avg, exp_avg_sq, max_exp_avg_sq,
                            momentum_buffer)

The `__metadata__` entry `<case>` is JSON: optimizer name, its options in attnode's camelCase, the parameter
groups (indices and per-group options), the parameter indices with gradients per step, the scheduler, the
clipping, and what PyTorch reported: `lrs` (every group's lr after each step, i.e. get_last_lr()),
`total_norms` (clip_grad_norm_'s return value per step, float32 as float), `state_steps` (each parameter's final
step count) and `state_dict_groups` (the final optimizer.state_dict()['param_groups'], PyTorch's keys).
Deterministic: fixed seeds, one thread.

It also writes test/fixtures/optim/train_seed.safetensors: the article's seed model (Embedding → nn.Transformer →
Linear; vocab 11, d_model 16, 2 heads, 1 + 1 layers, feed-forward 32; eval mode, so no dropout) trained end to end
with nn.CrossEntropyLoss(ignore_index=0, label_smoothing=0.1) for a few steps per case: `<case>.init.<key>` the
initial state dict, `<case>.s<k>.{src,tgt_in,tgt_out}` each step's batch (int64 → int32 when loaded),
`<case>.final.<key>` the state dict after the last step; `__metadata__` `<case>`: optimizer, options, clipping,
scheduler, and PyTorch's loss and clip_grad_norm_ total of every step.
"""
import argparse
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_fixtures import serialize_safetensors  # noqa: E402  (the project's safetensors writer)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / 'test' / 'fixtures' / 'optim' / 'steps.safetensors'
TRAIN_OUT = ROOT / 'test' / 'fixtures' / 'optim' / 'train_seed.safetensors'
SHAPES = [(4, 6), (6,), (3, 2, 5), (17,), (1,)]
STEPS = 5
ALL = list(range(len(SHAPES)))
# Parameter 1 misses step 1 and parameter 3 steps 2-3: per-parameter step counts differ inside a group.
SKIPPING = [ALL, [0, 2, 3, 4], [0, 1, 2, 4], [0, 1, 2, 4], ALL]

# attnode option name -> torch keyword
TORCH_KW = {'lr': 'lr', 'momentum': 'momentum', 'dampening': 'dampening', 'weightDecay': 'weight_decay',
            'nesterov': 'nesterov', 'maximize': 'maximize', 'betas': 'betas', 'eps': 'eps', 'amsgrad': 'amsgrad'}

CASES = [
    # name, optimizer, options, groups (None: one group of all), grads per step, scheduler, clip
    ('sgd_plain', 'SGD', {'lr': 0.1}, None, [ALL] * STEPS, None, None),
    ('sgd_momentum', 'SGD', {'lr': 0.05, 'momentum': 0.9}, None, SKIPPING, None, None),
    ('sgd_dampening_wd', 'SGD', {'lr': 0.05, 'momentum': 0.9, 'dampening': 0.3, 'weightDecay': 0.01}, None, [ALL] * STEPS, None, None),
    ('sgd_nesterov_wd', 'SGD', {'lr': 0.02, 'momentum': 0.8, 'nesterov': True, 'weightDecay': 0.1}, None, SKIPPING, None, None),
    ('sgd_maximize', 'SGD', {'lr': 0.1, 'momentum': 0.5, 'weightDecay': 0.2, 'maximize': True}, None, [ALL] * STEPS, None, None),
    ('adam', 'Adam', {'lr': 0.01}, None, [ALL] * STEPS, None, None),
    ('adam_defaults', 'Adam', {}, None, [ALL] * STEPS, None, None),
    ('adam_wd_amsgrad', 'Adam', {'lr': 0.01, 'betas': [0.8, 0.99], 'weightDecay': 0.05, 'amsgrad': True}, None, SKIPPING, None, None),
    ('adam_maximize_eps', 'Adam', {'lr': 0.02, 'eps': 1e-3, 'maximize': True}, None, [ALL] * STEPS, None, None),
    ('adamw', 'AdamW', {'lr': 0.01}, None, [ALL] * STEPS, None, None),
    ('adamw_amsgrad_wd', 'AdamW', {'lr': 0.03, 'weightDecay': 0.1, 'amsgrad': True}, None, SKIPPING, None, None),
    ('adam_groups', 'Adam', {'lr': 0.01},
     [{'params': [0, 1]}, {'params': [2, 3], 'lr': 0.05, 'weightDecay': 0.1}, {'params': [4], 'lr': 0.001, 'amsgrad': True}],
     SKIPPING, None, None),
    ('sgd_groups', 'SGD', {'lr': 0.1, 'momentum': 0.9},
     [{'params': [0, 2, 4]}, {'params': [1, 3], 'lr': 0.01, 'momentum': 0.5, 'nesterov': True}], SKIPPING, None, None),
    # The Transformer paper's schedule: lr = d^-0.5 * min(step^-0.5, step * warmup^-1.5), base lr 1.
    ('adam_lambda_warmup', 'Adam', {'lr': 1.0, 'betas': [0.9, 0.98], 'eps': 1e-9}, None, [ALL] * 7,
     {'type': 'LambdaLR', 'schedule': 'transformer', 'dModel': 32, 'warmup': 3}, None),
    ('sgd_steplr', 'SGD', {'lr': 0.1, 'momentum': 0.9}, [{'params': [0, 1, 2]}, {'params': [3, 4], 'lr': 0.3}], [ALL] * 7,
     {'type': 'StepLR', 'stepSize': 2, 'gamma': 0.5}, None),
    ('adam_clip2', 'Adam', {'lr': 0.01}, None, SKIPPING, None, {'maxNorm': 1.0, 'normType': 2}),
    ('sgd_clip_inf', 'SGD', {'lr': 0.1, 'momentum': 0.9}, None, [ALL] * STEPS, None, {'maxNorm': 0.5, 'normType': 'inf'}),
    ('adamw_clip3_loose', 'AdamW', {'lr': 0.01}, None, [ALL] * STEPS, None, {'maxNorm': 1000.0, 'normType': 3}),
]


def transformer_schedule(d_model: int, warmup: int):
    def f(step: int) -> float:
        s = max(step, 1)
        return d_model ** -0.5 * min(s ** -0.5, s * warmup ** -1.5)
    return f


def torch_options(options: dict) -> dict:
    out = {}
    for k, v in options.items():
        out[TORCH_KW[k]] = tuple(v) if k == 'betas' else v
    return out


def run_case(name, opt_name, options, groups, grads_per_step, scheduler, clip, tensors: dict) -> dict:
    torch.manual_seed(sum(name.encode()))
    params = [torch.nn.Parameter(torch.randn(*s)) for s in SHAPES]
    for i, p in enumerate(params):
        tensors[f'{name}.init.p{i}'] = p.detach().clone()
    if groups is None:
        torch_params = params
    else:
        torch_params = [{'params': [params[i] for i in g['params']],
                         **torch_options({k: v for k, v in g.items() if k != 'params'})} for g in groups]
    opt = getattr(torch.optim, opt_name)(torch_params, **torch_options(options))
    sched = None
    if scheduler and scheduler['type'] == 'LambdaLR':
        sched = torch.optim.lr_scheduler.LambdaLR(opt, transformer_schedule(scheduler['dModel'], scheduler['warmup']))
    elif scheduler and scheduler['type'] == 'StepLR':
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=scheduler['stepSize'], gamma=scheduler['gamma'])
    lrs, norms = [], []
    for k, with_grad in enumerate(grads_per_step):
        opt.zero_grad(set_to_none=True)
        for i in with_grad:
            g = torch.randn(*SHAPES[i])
            tensors[f'{name}.s{k}.g{i}'] = g.clone()
            params[i].grad = g
        if clip:
            norm_type = float('inf') if clip['normType'] == 'inf' else float(clip['normType'])
            total = torch.nn.utils.clip_grad_norm_(params, clip['maxNorm'], norm_type)
            norms.append(float(total))
        opt.step()
        if sched:
            sched.step()
        lrs.append([g['lr'] for g in opt.param_groups])
        for i, p in enumerate(params):
            tensors[f'{name}.s{k}.p{i}'] = p.detach().clone()
    sd = opt.state_dict()
    state_steps = {}
    for i, st in sd['state'].items():
        for key, v in st.items():
            if key == 'step':
                state_steps[str(i)] = int(v.item()) if torch.is_tensor(v) else int(v)
            elif v is not None:
                tensors[f'{name}.state.{i}.{key}'] = v.detach().clone()
    # The state dict's index order is the groups' order; map back to parameter indices.
    order = [i for g in (groups or [{'params': ALL}]) for i in g['params']]
    remap = {str(order[int(j)]): s for j, s in state_steps.items()}
    for key in [t for t in tensors if t.startswith(f'{name}.state.')]:
        _, _, j, field = key.split('.', 3)
        tensors[f'{name}.pstate.{order[int(j)]}.{field}'] = tensors.pop(key)
    meta_groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items() if k != 'params'} | {'params': g['params']}
                   for g in sd['param_groups']]
    return {
        'optimizer': opt_name, 'options': options, 'groups': groups, 'grads': grads_per_step,
        'scheduler': scheduler, 'clip': clip, 'lrs': lrs, 'total_norms': norms,
        'state_steps': remap, 'state_has': sorted(order[int(j)] for j in sd['state']),
        'state_dict_groups': meta_groups,
        'last_lr': sched.get_last_lr() if sched else None,
    }


class SeedModel(torch.nn.Module):
    """The article's TransformerModel (lib/cli/seed-model.ts), small."""

    def __init__(self, vocab: int, d_model: int, nhead: int, enc: int, dec: int, ff: int) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab, d_model)
        self.transformer = torch.nn.Transformer(d_model, nhead, enc, dec, ff)
        self.fc = torch.nn.Linear(d_model, vocab)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        return self.fc(self.transformer(self.embedding(src), self.embedding(tgt)))


SEED = {'vocab': 11, 'd_model': 16, 'nhead': 2, 'enc': 1, 'dec': 1, 'ff': 32}
TRAIN_CASES = [
    # name, optimizer, options, clip (max_norm, 2-norm), scheduler, steps
    ('adam_clip_warmup', 'Adam', {'lr': 1.0, 'betas': [0.9, 0.98], 'eps': 1e-9}, 1.0,
     {'type': 'LambdaLR', 'schedule': 'transformer', 'dModel': 16, 'warmup': 2}, 4),
    ('adamw', 'AdamW', {'lr': 3e-3, 'weightDecay': 0.05}, None, None, 4),
    ('sgd_nesterov_steplr', 'SGD', {'lr': 0.05, 'momentum': 0.9, 'nesterov': True}, 0.5,
     {'type': 'StepLR', 'stepSize': 2, 'gamma': 0.5}, 4),
]


def build_train() -> bytes:
    torch.set_num_threads(1)
    tensors: dict[str, torch.Tensor] = {}
    metadata: dict[str, str] = {}
    V = SEED['vocab']
    for name, opt_name, options, clip, scheduler, steps in TRAIN_CASES:
        torch.manual_seed(sum(name.encode()))
        model = SeedModel(*SEED.values())
        model.eval()
        for k, v in model.state_dict().items():
            tensors[f'{name}.init.{k}'] = v.detach().clone()
        opt = getattr(torch.optim, opt_name)(model.parameters(), **torch_options(options))
        sched = None
        if scheduler and scheduler['type'] == 'LambdaLR':
            sched = torch.optim.lr_scheduler.LambdaLR(opt, transformer_schedule(scheduler['dModel'], scheduler['warmup']))
        elif scheduler:
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=scheduler['stepSize'], gamma=scheduler['gamma'])
        crit = torch.nn.CrossEntropyLoss(ignore_index=0, label_smoothing=0.1)
        losses, norms = [], []
        for k in range(steps):
            src = torch.randint(1, V, (7, 3))
            tgt = torch.randint(1, V, (6, 3))
            tgt[-1, 0] = 0  # padding, ignored by the loss
            tgt_in, tgt_out = tgt[:-1], tgt[1:]
            tensors[f'{name}.s{k}.src'] = src
            tensors[f'{name}.s{k}.tgt_in'] = tgt_in.contiguous()
            tensors[f'{name}.s{k}.tgt_out'] = tgt_out.contiguous()
            opt.zero_grad(set_to_none=True)
            out = model(src, tgt_in)
            loss = crit(out.reshape(-1, V), tgt_out.reshape(-1))
            loss.backward()
            if clip is not None:
                norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip)))
            opt.step()
            if sched:
                sched.step()
            losses.append(float(loss))
        for kk, v in model.state_dict().items():
            tensors[f'{name}.final.{kk}'] = v.detach().clone()
        metadata[name] = json.dumps({'optimizer': opt_name, 'options': options, 'clip': clip, 'scheduler': scheduler,
                                     'steps': steps, 'model': SEED, 'losses': losses, 'total_norms': norms}, sort_keys=True)
    return serialize_safetensors(tensors, metadata)


def build() -> bytes:
    torch.set_num_threads(1)
    tensors: dict[str, torch.Tensor] = {}
    metadata: dict[str, str] = {}
    for case in CASES:
        metadata[case[0]] = json.dumps(run_case(*case, tensors), sort_keys=True)
    # 'pstate' keys: state by parameter index (renamed from the state dict's order above).
    tensors = {k.replace('.pstate.', '.state.'): v for k, v in tensors.items()}
    return serialize_safetensors(tensors, metadata)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--check', action='store_true', help='fail if the file would change')
    args = ap.parse_args()
    status = 0
    for out, data, count in ((OUT, build(), len(CASES)), (TRAIN_OUT, build_train(), len(TRAIN_CASES))):
        if args.check:
            same = out.exists() and out.read_bytes() == data
            print(f'{out.relative_to(ROOT)}: {"up to date" if same else "WOULD CHANGE"}')
            status |= 0 if same else 1
        else:
            out.write_bytes(data)
            print(f'wrote {out.relative_to(ROOT)} ({len(data)} bytes, {count} cases)')
    return status


if __name__ == '__main__':
    sys.exit(main())
