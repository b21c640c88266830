"""The benchmark models in PyTorch, built from bench/cases/cases.json.

Shared by scripts/export_bench_models.py (which draws the weights and writes the
ONNX files) and bench/peers/torch_bench.py (which times PyTorch on the same
weights), so both build exactly the same module for a model id.

Layouts: encoder layers, encoders and MultiheadAttention are batch-first
([N, S, E]) because PyTorch 1.13 only takes its fast inference path
(torch._transformer_encoder_layer_fwd, torch._native_multi_head_attention)
with batch_first=True, and the peer should run at its best. The seed model is
seq-first ([S, N] token ids), as in the article's code.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parent.parent.parent
CASES_JSON = ROOT / 'bench' / 'cases' / 'cases.json'
MODELS_DIR = ROOT / 'bench' / 'models'


def load_cases() -> dict[str, Any]:
    return json.loads(CASES_JSON.read_text())


class MhaSelf(nn.Module):
    """Self-attention with need_weights=False: the module under test, as its ONNX graph and torch call see it."""

    def __init__(self, embed_dim: int, num_heads: int) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mha(x, x, x, need_weights=False)[0]

    def inner(self) -> nn.Module:
        return self.mha


class SeedModel(nn.Module):
    """The article's TransformerModel (§5.2): embedding → nn.Transformer → linear (lib/cli/seed-model.ts)."""

    def __init__(self, vocab: int, d_model: int, nhead: int, n_enc: int, n_dec: int, ff: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, d_model)
        self.transformer = nn.Transformer(d_model, nhead, n_enc, n_dec, ff)
        self.fc = nn.Linear(d_model, vocab)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        return self.fc(self.transformer(self.embedding(src), self.embedding(tgt)))


def build(spec: dict[str, Any]) -> nn.Module:
    kind = spec['kind']
    if kind == 'encoder_layer':
        return nn.TransformerEncoderLayer(spec['dModel'], spec['nhead'], spec['dimFeedforward'],
                                          activation=spec['activation'], batch_first=True)
    if kind == 'encoder':
        layer = nn.TransformerEncoderLayer(spec['dModel'], spec['nhead'], spec['dimFeedforward'],
                                           activation=spec['activation'], batch_first=True)
        return nn.TransformerEncoder(layer, spec['numLayers'])
    if kind == 'mha':
        return MhaSelf(spec['embedDim'], spec['numHeads'])
    if kind == 'seed':
        return SeedModel(spec['vocab'], spec['dModel'], spec['nhead'], spec['numEncoderLayers'],
                         spec['numDecoderLayers'], spec['dimFeedforward'])
    raise ValueError(f'unknown model kind {kind!r}')


def state_dict_of(kind: str, module: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as attnode's module of that kind names it (the MHA wrapper's prefix dropped)."""
    target = module.inner() if isinstance(module, MhaSelf) else module
    return {k: v.detach().contiguous() for k, v in target.state_dict().items()}


def load_state(kind: str, module: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    target = module.inner() if isinstance(module, MhaSelf) else module
    target.load_state_dict(tensors, strict=True)


def randomize(module: nn.Module) -> None:
    """Re-draw every parameter (as scripts/gen_fixtures.py does): no two layers share weights, and biases and
    LayerNorm affine parameters are not the trivial 0/1, so a kernel that drops one shows in the output check."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() == 2:
                bound = math.sqrt(6.0 / (p.shape[0] + p.shape[1]))
                p.uniform_(-bound, bound)
            elif 'norm' in name and name.endswith('weight'):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))


# safetensors reading (the writer is scripts/gen_fixtures.py's serialize_safetensors)
_NP = {'F32': np.float32, 'F64': np.float64, 'I32': np.int32, 'I64': np.int64, 'U8': np.uint8}


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    data = path.read_bytes()
    (n,) = struct.unpack('<Q', data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out: dict[str, torch.Tensor] = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        a, b = info['data_offsets']
        arr = np.frombuffer(data, dtype=_NP[info['dtype']], count=(b - a) // np.dtype(_NP[info['dtype']]).itemsize,
                            offset=base + a)
        out[name] = torch.from_numpy(arr.copy()).reshape(info['shape'])
    return out


def case_inputs(case: dict[str, Any], spec: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The case's inputs, drawn from a seed derived from the case so every regeneration gives the same data."""
    g = torch.Generator().manual_seed(sum(ord(c) for c in case['id']) * 7919)
    n, s = case['batch'], case['seq']
    if spec['kind'] == 'seed':
        t = case.get('tgtSeq', s)
        return {'src': torch.randint(0, spec['vocab'], (s, n), generator=g, dtype=torch.int32),
                'tgt': torch.randint(0, spec['vocab'], (t, n), generator=g, dtype=torch.int32)}
    d = spec['dModel'] if 'dModel' in spec else spec['embedDim']
    return {'x': torch.randn(n, s, d, generator=g)}


def run_args(spec: dict[str, Any], inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    if spec['kind'] == 'seed':
        # nn.Embedding wants int64 ids (the files keep int32: what attnode reads).
        return (inputs['src'].long(), inputs['tgt'].long())
    return (inputs['x'],)
