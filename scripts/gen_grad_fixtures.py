#!/usr/bin/python3
"""Generate the PyTorch gradient fixtures in test/fixtures/grad/.

Usage (from the repository root):

    /usr/bin/python3 scripts/gen_grad_fixtures.py            # write every fixture
    /usr/bin/python3 scripts/gen_grad_fixtures.py --check    # regenerate in memory, fail if any file differs

Needs Debian's PyTorch (`apt-get install python3-torch`, torch 1.13); the
safetensors writer is scripts/gen_fixtures.py's. Deterministic (fixed seeds,
one thread), so re-runs give byte-identical files.

Each file is one case: a module (or a loss) in eval mode (dropout off: its
random stream is not PyTorch's), its inputs, and the gradients of every
parameter and of every float input after one backward:

  state.<key>        the module's state dict (parameters re-drawn so none is trivial)
  in.<name>          forward inputs (float inputs require grad; masks, ids and targets do not)
  gout.<output>      the gradient fed to backward for each output: the loss is sum(output * gout)
  out.<output>       the outputs
  grad.state.<key>   the parameters' gradients
  grad.in.<name>     the float inputs' gradients
  loss               for a loss case, the loss value (scalar or per element)

__metadata__: `kind` ('module' or 'loss'), `module`, `options` (the constructor's keyword arguments, JSON),
`forward` (keyword arguments, JSON; a string "in.<name>" names an input tensor), `inputs` (positional
forward arguments, in order), `outputs`, and for loss cases `loss` (the loss's options and how its input is laid
out from the model output).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_fixtures import Writer, causal_bool, causal_float, js, randomize  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / 'test' / 'fixtures' / 'grad'


class GradWriter(Writer):
    def write(self, name: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
        super().write(f'grad/{name}', tensors, metadata)


def outputs(module_name: str, result: Any) -> dict[str, torch.Tensor]:
    if module_name == 'MultiheadAttention':
        out, weights = result
        return {'attn_output': out} if weights is None else {'attn_output': out, 'attn_weights': weights}
    return {'output': result}


def grad_case(w: Writer, name: str, module_name: str, options: dict[str, Any], module: nn.Module,
              inputs: dict[str, torch.Tensor], forward: dict[str, Any] | None = None,
              use_outputs: tuple[str, ...] | None = None) -> None:
    """Runs module(*inputs, **forward) in eval mode, backward from random output gradients, writes the case."""
    forward = dict(forward or {})
    randomize(module)
    module.eval()
    # The first POSITIONAL[module] inputs are positional; the others (masks) keyword arguments, named in `forward`.
    npos = POSITIONAL[module_name]
    names = list(inputs.keys())
    for extra in names[npos:]:
        forward[extra] = f'in.{extra}'
    leaves = {k: v.clone().requires_grad_(True) if v.is_floating_point() and i < npos else v
              for i, (k, v) in enumerate(inputs.items())}
    kwargs = {k: (leaves[v[3:]] if isinstance(v, str) and v.startswith('in.') else v) for k, v in forward.items()}
    outs = outputs(module_name, module(*[leaves[n] for n in names[:npos]], **kwargs))
    if use_outputs is not None:
        outs = {k: v for k, v in outs.items() if k in use_outputs}
    gouts = {k: torch.randn_like(v) for k, v in outs.items()}
    loss = sum((o * gouts[k]).sum() for k, o in outs.items())
    loss.backward()
    tensors: dict[str, torch.Tensor] = {}
    for k, v in module.state_dict().items():
        tensors[f'state.{k}'] = v
    for k, p in module.named_parameters():
        tensors[f'grad.state.{k}'] = p.grad if p.grad is not None else torch.zeros_like(p)
    for k, v in inputs.items():
        tensors[f'in.{k}'] = v
        if leaves[k].requires_grad:
            tensors[f'grad.in.{k}'] = leaves[k].grad
    for k, v in outs.items():
        tensors[f'out.{k}'] = v.detach()
        tensors[f'gout.{k}'] = gouts[k]
    meta = {
        'kind': 'module', 'module': module_name, 'options': js(options), 'forward': js(forward),
        'inputs': js(names[:npos]), 'outputs': js(list(outs.keys())), 'torch_version': torch.__version__,
    }
    w.write(f'{name}.safetensors', tensors, meta)


# Positional forward arguments per module (the rest of a case's inputs are keyword arguments).
POSITIONAL = {'Linear': 1, 'LayerNorm': 1, 'Embedding': 1, 'MultiheadAttention': 3, 'TransformerEncoderLayer': 1,
              'TransformerDecoderLayer': 2}


class SeedModel(nn.Module):
    """The seed model of lib/cli/seed-model.ts (the article's TransformerModel with the decoder's depth and the
    feed-forward width as arguments, small here)."""

    def __init__(self, vocab: int, d_model: int, nhead: int, enc: int, dec: int, ff: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, d_model)
        self.transformer = nn.Transformer(d_model, nhead, enc, dec, ff)
        self.fc = nn.Linear(d_model, vocab)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        return self.fc(self.transformer(self.embedding(src), self.embedding(tgt)))


def loss_case(w: Writer, name: str, logits: torch.Tensor | None, model: nn.Module | None, model_options: dict[str, Any],
              inputs: dict[str, torch.Tensor], target: torch.Tensor, loss_kind: str, loss_options: dict[str, Any],
              layout: str) -> None:
    """A loss on raw logits (model None) or on the seed model's output. `layout`: how the loss input is made from
    the model output [T, N, V]: 'flat' (reshape(-1, V), target [T·N]) or 'class_dim_1' (permute(1, 2, 0):
    [N, V, T], target [N, T])."""
    tensors: dict[str, torch.Tensor] = {}
    torch_opts = {'ignore_index': loss_options.get('ignore_index', -100), 'reduction': loss_options.get('reduction', 'mean'),
                  'label_smoothing': loss_options.get('label_smoothing', 0.0)}
    weight = loss_options.get('weight')
    if model is not None:
        randomize(model)
        model.eval()
        out = model(*inputs.values())
        x = out.reshape(-1, out.shape[-1]) if layout == 'flat' else out.permute(1, 2, 0)
        for k, v in model.state_dict().items():
            tensors[f'state.{k}'] = v
    else:
        leaf = logits.clone().requires_grad_(True)
        x = leaf
    if loss_kind == 'cross_entropy':
        crit = nn.CrossEntropyLoss(weight=weight, **torch_opts)
    else:
        crit = nn.MSELoss(reduction=torch_opts['reduction'])
    loss = crit(x, target)
    gout = torch.randn_like(loss) if loss.dim() > 0 else torch.tensor(1.0)
    (loss * gout).sum().backward()
    if model is not None:
        for k, p in model.named_parameters():
            tensors[f'grad.state.{k}'] = p.grad if p.grad is not None else torch.zeros_like(p)
        for k, v in inputs.items():
            tensors[f'in.{k}'] = v
    else:
        tensors['in.input'] = logits
        tensors['grad.in.input'] = leaf.grad
    tensors['in.target'] = target
    if weight is not None:
        tensors['in.weight'] = weight
    tensors['loss'] = loss.detach()
    tensors['gout.loss'] = gout
    opts = {k: v for k, v in loss_options.items() if k != 'weight'}
    opts['weight'] = weight is not None
    meta = {
        'kind': 'loss', 'module': 'SeedModel' if model is not None else '', 'options': js(model_options),
        'loss': js({'kind': loss_kind, 'options': opts, 'layout': layout}), 'inputs': js(list(inputs.keys())),
        'torch_version': torch.__version__,
    }
    w.write(f'{name}.safetensors', tensors, meta)


def gen(w: Writer) -> None:
    torch.manual_seed(1000)
    E, H, L, S, N = 8, 2, 4, 5, 3

    # Linear, LayerNorm, Embedding
    grad_case(w, 'linear', 'Linear', {'in_features': 5, 'out_features': 4}, nn.Linear(5, 4), {'input': torch.randn(3, 2, 5)})
    grad_case(w, 'layer_norm', 'LayerNorm', {'normalized_shape': [6]}, nn.LayerNorm(6), {'input': torch.randn(4, 3, 6) * 2 + 1})
    grad_case(w, 'layer_norm_2d', 'LayerNorm', {'normalized_shape': [3, 4], 'eps': 1e-3}, nn.LayerNorm([3, 4], eps=1e-3),
              {'input': torch.randn(2, 3, 4)})
    ids = torch.tensor([[1, 0, 3], [3, 3, 6], [0, 2, 1]], dtype=torch.int64)
    grad_case(w, 'embedding_padding', 'Embedding', {'num_embeddings': 7, 'embedding_dim': 4, 'padding_idx': 3},
              nn.Embedding(7, 4, padding_idx=3), {'input': ids})

    # MultiheadAttention: every mask kind, key padding, kdim/vdim, batch first, bias_kv / zero_attn, weights in the loss
    q, k, v = torch.randn(L, N, E), torch.randn(S, N, E), torch.randn(S, N, E)
    x = torch.randn(L, N, E)
    kpm = torch.zeros(N, S, dtype=torch.bool)
    kpm[0, -1] = True
    kpm[2, 1:3] = True
    kpm_self = torch.zeros(N, L, dtype=torch.bool)
    kpm_self[1, -1] = True
    mha = {'embed_dim': E, 'num_heads': H}
    grad_case(w, 'mha_self', 'MultiheadAttention', mha, nn.MultiheadAttention(E, H), {'query': x, 'key': x, 'value': x},
              {'need_weights': False})
    fmask = torch.randn(L, S)
    grad_case(w, 'mha_float_mask_2d', 'MultiheadAttention', mha, nn.MultiheadAttention(E, H),
              {'query': q, 'key': k, 'value': v, 'attn_mask': fmask}, {'need_weights': False})
    bmask3 = torch.rand(N * H, L, S) > 0.7
    bmask3[:, :, 0] = False
    grad_case(w, 'mha_bool_mask_3d', 'MultiheadAttention', mha, nn.MultiheadAttention(E, H),
              {'query': q, 'key': k, 'value': v, 'attn_mask': bmask3}, {'need_weights': False})
    grad_case(w, 'mha_causal_key_padding', 'MultiheadAttention', mha, nn.MultiheadAttention(E, H),
              {'query': x, 'key': x, 'value': x, 'key_padding_mask': kpm_self, 'attn_mask': causal_bool(L)}, {'need_weights': False})
    grad_case(w, 'mha_key_padding_weights', 'MultiheadAttention', mha, nn.MultiheadAttention(E, H),
              {'query': q, 'key': k, 'value': v, 'key_padding_mask': kpm}, {})
    grad_case(w, 'mha_weights_per_head', 'MultiheadAttention', mha, nn.MultiheadAttention(E, H),
              {'query': q, 'key': k, 'value': v, 'attn_mask': fmask}, {'average_attn_weights': False})
    kv_opts = {'embed_dim': E, 'num_heads': H, 'kdim': 6, 'vdim': 3}
    grad_case(w, 'mha_kdim_vdim', 'MultiheadAttention', kv_opts, nn.MultiheadAttention(E, H, kdim=6, vdim=3),
              {'query': q, 'key': torch.randn(S, N, 6), 'value': torch.randn(S, N, 3), 'key_padding_mask': kpm}, {'need_weights': False})
    bf = {'embed_dim': E, 'num_heads': H, 'batch_first': True}
    xb = torch.randn(N, L, E)
    grad_case(w, 'mha_batch_first', 'MultiheadAttention', bf, nn.MultiheadAttention(E, H, batch_first=True),
              {'query': xb, 'key': torch.randn(N, S, E), 'value': torch.randn(N, S, E), 'key_padding_mask': kpm}, {'need_weights': False})
    bkv = {'embed_dim': E, 'num_heads': H, 'add_bias_kv': True, 'add_zero_attn': True}
    grad_case(w, 'mha_bias_kv_zero_attn', 'MultiheadAttention', bkv, nn.MultiheadAttention(E, H, add_bias_kv=True, add_zero_attn=True),
              {'query': q, 'key': k, 'value': v, 'attn_mask': fmask, 'key_padding_mask': kpm}, {'need_weights': False})
    grad_case(w, 'mha_unbatched', 'MultiheadAttention', mha, nn.MultiheadAttention(E, H),
              {'query': torch.randn(L, E), 'key': torch.randn(S, E), 'value': torch.randn(S, E)}, {'need_weights': False})

    # Transformer layers
    lay = {'d_model': E, 'nhead': H, 'dim_feedforward': 16, 'dropout': 0.1}
    grad_case(w, 'encoder_layer_relu_post', 'TransformerEncoderLayer', lay, nn.TransformerEncoderLayer(**lay),
              {'src': torch.randn(S, N, E), 'src_mask': causal_float(S)}, {})
    pre = {**lay, 'activation': 'gelu', 'norm_first': True, 'batch_first': True}
    grad_case(w, 'encoder_layer_gelu_pre_batch_first', 'TransformerEncoderLayer', pre, nn.TransformerEncoderLayer(**pre),
              {'src': torch.randn(N, S, E), 'src_key_padding_mask': kpm}, {})
    grad_case(w, 'decoder_layer_relu_post', 'TransformerDecoderLayer', lay, nn.TransformerDecoderLayer(**lay),
              {'tgt': torch.randn(L, N, E), 'memory': torch.randn(S, N, E), 'tgt_mask': causal_float(L),
               'memory_key_padding_mask': kpm}, {})
    predec = {**lay, 'activation': 'gelu', 'norm_first': True}
    grad_case(w, 'decoder_layer_gelu_pre', 'TransformerDecoderLayer', predec, nn.TransformerDecoderLayer(**predec),
              {'tgt': torch.randn(L, N, E), 'memory': torch.randn(S, N, E), 'tgt_mask': causal_bool(L),
               'memory_mask': torch.rand(L, S) > 0.8, 'tgt_key_padding_mask': kpm_self}, {})

    # Cross-entropy on logits: weights, ignore_index, label smoothing, every reduction, [N, C, d…]
    C = 6
    logits = torch.randn(7, C) * 2
    target = torch.tensor([0, 5, 2, -100, 3, 3, 1], dtype=torch.int64)
    wts = torch.rand(C) + 0.5
    for red in ('mean', 'sum', 'none'):
        loss_case(w, f'cross_entropy_{red}', logits, None, {}, {}, target, 'cross_entropy',
                  {'weight': wts, 'ignore_index': -100, 'reduction': red, 'label_smoothing': 0.1}, 'flat')
    loss_case(w, 'cross_entropy_plain', logits, None, {}, {}, target.clamp(min=0), 'cross_entropy', {}, 'flat')
    t4 = torch.randint(0, C, (2, 3, 4))
    t4[0, 1, 2] = 4
    t4[1, 0, 0] = 7  # ignore_index 7
    loss_case(w, 'cross_entropy_nd', torch.randn(2, C, 3, 4), None, {}, {}, t4, 'cross_entropy',
              {'ignore_index': 7, 'label_smoothing': 0.2}, 'flat')
    loss_case(w, 'mse_mean', torch.randn(3, 4), None, {}, {}, torch.randn(3, 4), 'mse', {}, 'flat')
    loss_case(w, 'mse_none', torch.randn(3, 4), None, {}, {}, torch.randn(3, 4), 'mse', {'reduction': 'none'}, 'flat')

    # The seed model (Embedding → Transformer → Linear) trained as the article's §5.4 does, with CrossEntropyLoss
    V, D = 11, 8
    seed_opts = {'vocab': V, 'd_model': D, 'nhead': 2, 'enc': 2, 'dec': 2, 'ff': 16}
    src = torch.randint(0, V, (6, 2))
    tgt = torch.randint(0, V, (5, 2))
    tgt_loss = tgt.clone()
    tgt_loss[-1, 0] = 0  # the pad id, ignored below
    loss_case(w, 'seed_model_ce', None, SeedModel(V, D, 2, 2, 2, 16), seed_opts, {'src': src, 'tgt': tgt},
              tgt_loss.reshape(-1), 'cross_entropy', {'weight': torch.rand(V) + 0.5, 'ignore_index': 0, 'label_smoothing': 0.1},
              'flat')
    loss_case(w, 'seed_model_ce_class_dim', None, SeedModel(V, D, 2, 2, 2, 16), seed_opts, {'src': src, 'tgt': tgt},
              tgt.t().contiguous(), 'cross_entropy', {}, 'class_dim_1')

    # Sequences longer than one 32-query tile and one 64-key block of the flash-attention backward, every mask kind
    # (their own seed, so the cases above stay byte-identical).
    torch.manual_seed(2000)
    LL, SL, NL = 40, 70, 2
    ql, kl, vl = torch.randn(LL, NL, E), torch.randn(SL, NL, E), torch.randn(SL, NL, E)
    kpm_l = torch.zeros(NL, SL, dtype=torch.bool)
    kpm_l[0, -7:] = True
    kpm_l[1, 3:40] = True
    grad_case(w, 'mha_long_float_mask_key_padding', 'MultiheadAttention', mha, nn.MultiheadAttention(E, H),
              {'query': ql, 'key': kl, 'value': vl, 'attn_mask': torch.randn(LL, SL), 'key_padding_mask': kpm_l},
              {'need_weights': False})
    bm = torch.rand(NL * H, LL, SL) > 0.7
    bm[:, :, 0] = False
    grad_case(w, 'mha_long_bool_mask_3d', 'MultiheadAttention', mha, nn.MultiheadAttention(E, H),
              {'query': ql, 'key': kl, 'value': vl, 'attn_mask': bm}, {'need_weights': False})
    xl = torch.randn(SL, NL, E)
    grad_case(w, 'mha_long_causal_self', 'MultiheadAttention', mha, nn.MultiheadAttention(E, H),
              {'query': xl, 'key': xl, 'value': xl, 'attn_mask': causal_float(SL)}, {'need_weights': False})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--check', action='store_true', help='compare with the files on disk instead of writing')
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    w = GradWriter(args.check)
    gen(w)
    total = sum(s for _, s in w.sizes)
    for name, size in w.sizes:
        print(f'{name:50s} {size / 1024:7.1f} KB')
    print(f'total {total / 1024:.1f} KB')
    if args.check and w.mismatches:
        print('differs:', ', '.join(w.mismatches))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
