#!/usr/bin/python3
"""Generate the PyTorch reference fixtures in test/fixtures/.

Usage (from the repository root):

    /usr/bin/python3 scripts/gen_fixtures.py            # write every fixture
    /usr/bin/python3 scripts/gen_fixtures.py --check    # regenerate in memory, fail if any file differs

Needs Debian's PyTorch (`apt-get install python3-torch`, torch 1.13) and numpy;
use /usr/bin/python3, not a virtualenv/pyenv python without torch. The
`safetensors` Python package is not needed: the format is written here.

The output is deterministic (fixed seeds, one thread, sorted header keys), so a
re-run produces byte-identical files; `--check` verifies that.

Files written (see test/fixtures/README.md for the naming conventions):

  dtypes.safetensors     one tensor per safetensors dtype plus torch's own
                         float32/int32 conversions, for the loader tests
  ops.safetensors        inputs/outputs of single ops (matmul, linear, softmax,
                         layer_norm, relu, gelu, embedding, add); case
                         parameters as JSON strings in __metadata__
  <module case>.safetensors
                         one module each: `state.<state_dict key>`, `in.<forward
                         arg>`, `out.<output>`; __metadata__ keys `module`,
                         `options`, `forward` (JSON), plus `path`,
                         `fastpath_eligible`, `note`

Module outputs are always computed on PyTorch's standard ("math") path:
module.eval() (dropout off) but with autograd enabled and parameters requiring
grad, which is one of the documented conditions that disables the fast paths
(torch._native_multi_head_attention, torch._transformer_encoder_layer_fwd and
the nested-tensor conversion of TransformerEncoder). The script also runs each
case under torch.no_grad() to find out whether a fast path would have been
taken and records that in the metadata; where the fast path's result differs
(TransformerEncoder pads masked positions with zeros), that result is stored
too, as `out_fastpath.<output>`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / 'test' / 'fixtures'

# The safetensors writer: scripts/torch_to_safetensors.py (torch alone; the other generators import it from here).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from torch_to_safetensors import ST_DTYPES, serialize_safetensors, tensor_bytes  # noqa: E402,F401


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

class Writer:
    def __init__(self, check: bool) -> None:
        self.check = check
        self.mismatches: list[str] = []
        self.sizes: list[tuple[str, int]] = []

    def write(self, name: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
        data = serialize_safetensors(tensors, metadata)
        path = OUT_DIR / name
        self.sizes.append((name, len(data)))
        if self.check:
            if not path.exists() or path.read_bytes() != data:
                self.mismatches.append(name)
        else:
            path.write_bytes(data)


def js(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(',', ':'))


def seed(n: int) -> None:
    torch.manual_seed(n)


def randomize(module: nn.Module) -> None:
    """Re-draw every parameter so no two layers of a stack share weights
    (TransformerEncoder deep-copies its layer) and biases/LayerNorm affine
    parameters are not the trivial 0/1 they are initialised to."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() == 2:
                bound = math.sqrt(6.0 / (p.shape[0] + p.shape[1]))
                p.uniform_(-bound, bound)
            elif 'norm' in name and name.endswith('weight'):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))


def causal_float(n: int) -> torch.Tensor:
    return nn.Transformer.generate_square_subsequent_mask(n)


def causal_bool(n: int) -> torch.Tensor:
    return torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)


class FastPathProbe:
    """Detects whether a forward call takes one of PyTorch 1.13's fast paths by
    wrapping the private entry points the Python modules call."""

    NAMES = ('_native_multi_head_attention', '_transformer_encoder_layer_fwd', '_nested_tensor_from_mask')

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.saved: dict[str, Callable[..., Any]] = {}

    def __enter__(self) -> 'FastPathProbe':
        for n in self.NAMES:
            fn = getattr(torch, n)
            self.saved[n] = fn

            def wrapper(*args: Any, __n: str = n, __fn: Callable[..., Any] = fn, **kwargs: Any) -> Any:
                self.hits.append(__n)
                return __fn(*args, **kwargs)

            setattr(torch, n, wrapper)
        return self

    def __exit__(self, *exc: Any) -> None:
        for n, fn in self.saved.items():
            setattr(torch, n, fn)


def outputs_of(module_name: str, result: Any) -> dict[str, torch.Tensor]:
    if module_name == 'MultiheadAttention':
        attn_output, attn_weights = result
        out = {'attn_output': attn_output}
        if attn_weights is not None:
            out['attn_weights'] = attn_weights
        return out
    return {'output': result}


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    # NaN == NaN here: the fully-masked cases produce NaN on both paths.
    both_nan = torch.isnan(a) & torch.isnan(b)
    d = (a - b).abs()
    d[both_nan] = 0
    return float(torch.nan_to_num(d, nan=float('inf')).max()) if d.numel() else 0.0


def module_case(
    w: Writer,
    name: str,
    module_name: str,
    options: dict[str, Any],
    module: nn.Module,
    inputs: dict[str, torch.Tensor],
    forward: dict[str, Any] | None = None,
    note: str = '',
    state_dtype: torch.dtype | None = None,
) -> None:
    """Runs `module(**inputs, **forward)` on the math path and writes the fixture."""
    forward = forward or {}
    randomize(module)
    if state_dtype is not None:
        # Round the weights to the storage dtype first so the stored weights
        # are exactly the ones torch computed with.
        with torch.no_grad():
            for p in module.parameters():
                p.copy_(p.to(state_dtype).to(p.dtype))
    module.eval()
    assert all(p.requires_grad for p in module.parameters())

    # Math path: eval mode, grad enabled, parameters requiring grad.
    with torch.enable_grad(), FastPathProbe() as probe:
        math_out = outputs_of(module_name, module(**inputs, **forward))
    assert not probe.hits, (name, probe.hits)
    math_out = {k: v.detach() for k, v in math_out.items()}

    # What the usual `with torch.no_grad()` inference would have done.
    with torch.no_grad(), FastPathProbe() as probe:
        fast_out = outputs_of(module_name, module(**inputs, **forward))
    hits = sorted(set(probe.hits))
    diff = max(max_abs_diff(math_out[k], fast_out[k]) for k in math_out)

    tensors: dict[str, torch.Tensor] = {}
    for k, v in module.state_dict().items():
        tensors[f'state.{k}'] = v.to(state_dtype) if state_dtype is not None else v
    for k, v in inputs.items():
        tensors[f'in.{k}'] = v
    for k, v in math_out.items():
        tensors[f'out.{k}'] = v
    if diff > 1e-5:
        for k, v in fast_out.items():
            tensors[f'out_fastpath.{k}'] = v
    fwd_meta = dict(forward)
    fwd_meta['inputs'] = list(inputs.keys())
    metadata = {
        'module': module_name,
        'options': js(options),
        'forward': js(fwd_meta),
        'path': 'math',
        'fastpath_eligible': js(bool(hits)),
        'fastpath_functions': js(hits),
        'fastpath_max_abs_diff': f'{diff:.3g}',
        'torch_version': torch.__version__,
    }
    if note:
        metadata['note'] = note
    w.write(f'{name}.safetensors', tensors, metadata)


# ---------------------------------------------------------------------------
# dtypes fixture (for the loader)
# ---------------------------------------------------------------------------

def gen_dtypes(w: Writer) -> None:
    nan, inf = float('nan'), float('inf')
    f32 = torch.tensor([0.0, -0.0, 1.5, -3.25, 3.4e38, 1e-45, inf, -inf, nan], dtype=torch.float32)
    f16 = torch.tensor([0.0, -0.0, 1.0, -2.0, 0.5, 65504.0, 2.0 ** -24, 6.1e-5, 0.1, inf, -inf, nan],
                       dtype=torch.float16)
    bf16 = torch.tensor([0.0, -0.0, 1.0, -2.0, 3.0e38, 1e-40, 0.1, inf, -inf, nan], dtype=torch.bfloat16)
    f64 = torch.tensor([0.1, 1.0 / 3.0, -2.5, 1e300, -1e300, 1e-50, 16777217.0, inf, nan], dtype=torch.float64)
    i64 = torch.tensor([0, -1, 2 ** 31 - 1, -(2 ** 31), 42], dtype=torch.int64)
    tensors = {
        'f32': f32,
        'f32_3d': torch.arange(24, dtype=torch.float32).reshape(2, 3, 4) - 11.5,
        'f16': f16,
        'f16_as_f32': f16.float(),
        'bf16': bf16.reshape(2, 5),
        'bf16_as_f32': bf16.float().reshape(2, 5),
        'f64': f64,
        'f64_as_f32': f64.float(),
        'i64': i64,
        'i64_as_i32': i64.int(),
        'i32': torch.tensor([[0, -1], [2 ** 31 - 1, -(2 ** 31)]], dtype=torch.int32),
        'i16': torch.tensor([0, -1, 32767, -32768], dtype=torch.int16),
        'i8': torch.tensor([0, -1, 127, -128], dtype=torch.int8),
        'u8': torch.tensor([0, 1, 7, 255], dtype=torch.uint8),
        'bool': torch.tensor([[True, False, True], [False, False, True]]),
        'empty_f32': torch.zeros(0, 3),
        'empty_i64': torch.zeros(0, dtype=torch.int64),
        'scalar_f32': torch.tensor(2.5),
    }
    meta = {'format': 'pt', 'producer': 'scripts/gen_fixtures.py', 'unicode': 'ünï ✓'}
    w.write('dtypes.safetensors', tensors, meta)


# ---------------------------------------------------------------------------
# ops fixture
# ---------------------------------------------------------------------------

def gen_ops(w: Writer) -> None:
    seed(1)
    t: dict[str, torch.Tensor] = {}
    meta: dict[str, str] = {}

    def case(op: str, name: str, params: dict[str, Any], **tensors: torch.Tensor) -> None:
        meta[f'{op}.{name}'] = js(params)
        for k, v in tensors.items():
            t[f'{op}.{name}.{k}'] = v.detach().contiguous()

    # matmul (torch.matmul broadcasting over leading dims)
    for name, sa, sb in [
        ('case1', (3, 4), (4, 5)),
        ('case2', (2, 3, 4), (2, 4, 5)),
        ('case3', (2, 1, 3, 4), (5, 4, 6)),
        ('case4', (2, 3, 4), (4, 5)),
        ('case5', (3, 4), (2, 4, 5)),
    ]:
        a, b = torch.randn(sa), torch.randn(sb)
        case('matmul', name, {}, a=a, b=b, out=torch.matmul(a, b))

    # linear
    x, wt, bs = torch.randn(2, 3, 4), torch.randn(5, 4), torch.randn(5)
    case('linear', 'case1', {'bias': True}, x=x, weight=wt, bias=bs, out=F.linear(x, wt, bs))
    case('linear', 'case2', {'bias': False}, x=x, weight=wt, out=F.linear(x, wt))
    x2 = torch.randn(6, 8)
    w2, b2 = torch.randn(3, 8), torch.randn(3)
    case('linear', 'case3', {'bias': True}, x=x2, weight=w2, bias=b2, out=F.linear(x2, w2, b2))

    # softmax
    x = torch.randn(3, 7) * 3
    case('softmax', 'case1', {'dim': -1}, x=x, out=F.softmax(x, dim=-1))
    x = torch.tensor([[1e4, -1e4, 0.0, 1e4 - 1, 5.0], [-1e4, -1e4, -1e4, -1e4 + 2, -1e4 + 1],
                      [1e4, 1e4, 1e4, 1e4, 1e4]])
    case('softmax', 'large_logits', {'dim': -1}, x=x, out=F.softmax(x, dim=-1))
    x = torch.full((2, 6), 3.5)
    x[1] = -7.0
    case('softmax', 'constant_rows', {'dim': -1}, x=x, out=F.softmax(x, dim=-1))
    x = torch.randn(2, 4, 5)
    x[0, 1, 2] = float('-inf')
    x[1, 3, :4] = float('-inf')
    case('softmax', 'neg_inf', {'dim': -1}, x=x, out=F.softmax(x, dim=-1))
    x = torch.randn(2, 5, 3)
    case('softmax', 'dim1', {'dim': 1}, x=x, out=F.softmax(x, dim=1))

    # layer_norm
    x = torch.randn(2, 3, 8)
    g, b = 1 + 0.1 * torch.randn(8), 0.1 * torch.randn(8)
    case('layer_norm', 'affine', {'normalized_shape': [8], 'eps': 1e-5},
         x=x, weight=g, bias=b, out=F.layer_norm(x, [8], g, b, 1e-5))
    case('layer_norm', 'no_affine', {'normalized_shape': [8], 'eps': 1e-5},
         x=x, out=F.layer_norm(x, [8], None, None, 1e-5))
    g2, b2 = 1 + 0.1 * torch.randn(3, 8), 0.1 * torch.randn(3, 8)
    case('layer_norm', 'two_dims', {'normalized_shape': [3, 8], 'eps': 1e-6},
         x=x, weight=g2, bias=b2, out=F.layer_norm(x, [3, 8], g2, b2, 1e-6))
    # Offset 100, std 1: a one-pass float32 E[x²] − E[x]² is off by ~1e-3 here, while
    # PyTorch's own float32 rounding stays ~6e-6 (a smaller std would make PyTorch's
    # rounding itself exceed the 1e-5 parity tolerance).
    x = 100.0 + torch.randn(4, 16)
    g, b = 1 + 0.1 * torch.randn(16), 0.1 * torch.randn(16)
    case('layer_norm', 'large_mean', {'normalized_shape': [16], 'eps': 1e-3},
         x=x, weight=g, bias=b, out=F.layer_norm(x, [16], g, b, 1e-3))
    x = torch.randn(3, 5)
    x[1] = 2.0
    g, b = 1 + 0.1 * torch.randn(5), 0.1 * torch.randn(5)
    case('layer_norm', 'constant_row', {'normalized_shape': [5], 'eps': 1e-5},
         x=x, weight=g, bias=b, out=F.layer_norm(x, [5], g, b, 1e-5))

    # relu / gelu
    special = torch.tensor([[0.0, -0.0, 1e-30, -1e-30, 20.0, -20.0, 1e30, -1e30, 0.5, -0.5]])
    x = torch.cat([torch.randn(2, 10) * 3, special])
    case('relu', 'case1', {}, x=x, out=F.relu(x))
    x = torch.cat([torch.linspace(-6, 6, 25).reshape(1, 25),
                   torch.tensor([[0.0, -20.0, 20.0, -10.0, 10.0, 1e-7, -1e-7, 3.0, -3.0, 0.7071, -0.7071,
                                  5.5, -5.5, 8.0, -8.0, 1.0, -1.0, 2.0, -2.0, 0.1, -0.1, 0.01, -0.01, 4.0, -4.0]])])
    for approx in ('none', 'tanh'):
        case('gelu', approx, {'approximate': approx}, x=x, out=F.gelu(x, approximate=approx))

    # embedding (ids are int64 in torch; stored as I64)
    wt = torch.randn(10, 4)
    ids = torch.tensor([[0, 3, 9], [9, 9, 1]], dtype=torch.int64)
    case('embedding', 'case1', {}, ids=ids, weight=wt, out=F.embedding(ids, wt))
    ids = torch.tensor([7, 2, 2, 0], dtype=torch.int64)
    case('embedding', 'case2', {}, ids=ids, weight=wt, out=F.embedding(ids, wt))

    # add with broadcasting
    for name, sa, sb in [
        ('same', (2, 3, 4), (2, 3, 4)),
        ('row', (2, 3, 4), (4,)),
        ('outer', (2, 1, 4), (3, 1)),
        ('scalar', (3, 2), (1,)),
        ('leading', (4,), (2, 3, 4)),
    ]:
        a, b = torch.randn(sa), torch.randn(sb)
        case('add', name, {}, a=a, b=b, out=a + b)

    meta['producer'] = 'scripts/gen_fixtures.py'
    meta['torch_version'] = torch.__version__
    w.write('ops.safetensors', t, meta)


def rms_norm_24(x: torch.Tensor, shape: list[int], weight: torch.Tensor | None, eps: float | None) -> torch.Tensor:
    """PyTorch 2.4's F.rms_norm, as its composite implementation computes it (torch 1.13 has no rms_norm):
    x * rsqrt(mean(x^2 over the normalized dims) + eps) * weight, eps None = finfo(x.dtype).eps."""
    dims = tuple(range(-len(shape), 0))
    e = torch.finfo(x.dtype).eps if eps is None else eps
    r = x * torch.rsqrt(x.pow(2).mean(dims, keepdim=True) + e)
    return r * weight if weight is not None else r


def gen_rms_norm(w: Writer) -> None:
    """rms_norm.safetensors: the same layout as ops.safetensors (case parameters in __metadata__)."""
    seed(7)
    t: dict[str, torch.Tensor] = {}
    meta: dict[str, str] = {}

    def case(name: str, params: dict[str, Any], **tensors: torch.Tensor) -> None:
        meta[f'rms_norm.{name}'] = js(params)
        for k, v in tensors.items():
            t[f'rms_norm.{name}.{k}'] = v.detach().contiguous()

    x = torch.randn(2, 3, 8) * 2
    g = 1 + 0.1 * torch.randn(8)
    case('affine', {'normalized_shape': [8], 'eps': 1e-6}, x=x, weight=g, out=rms_norm_24(x, [8], g, 1e-6))
    case('no_affine_default_eps', {'normalized_shape': [8], 'eps': None}, x=x, out=rms_norm_24(x, [8], None, None))
    g2 = 1 + 0.1 * torch.randn(3, 8)
    case('two_dims', {'normalized_shape': [3, 8], 'eps': 1e-5}, x=x, weight=g2, out=rms_norm_24(x, [3, 8], g2, 1e-5))
    # Tiny values: eps dominates the mean square, so the default eps is visible in the result.
    x = torch.randn(4, 16) * 1e-4
    case('tiny_default_eps', {'normalized_shape': [16], 'eps': None}, x=x, out=rms_norm_24(x, [16], None, None))
    x = torch.randn(2, 1031)
    g = 1 + 0.1 * torch.randn(1031)
    case('long_rows', {'normalized_shape': [1031], 'eps': 1e-6}, x=x, weight=g, out=rms_norm_24(x, [1031], g, 1e-6))

    meta['producer'] = 'scripts/gen_fixtures.py'
    meta['torch_version'] = torch.__version__
    meta['reference'] = 'PyTorch 2.4 F.rms_norm composite formula (rms_norm_24)'
    w.write('rms_norm.safetensors', t, meta)


def hf_inv_freq(dim: int, base: float) -> torch.Tensor:
    """Hugging Face Llama's default frequencies, in float32 as it computes them."""
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))


def llama3_inv_freq(inv_freq: torch.Tensor, factor: float, low: float, high: float, old_len: int) -> torch.Tensor:
    """Llama 3's rope_scaling (transformers' _compute_llama3_parameters), float32."""
    low_wavelen = old_len / low
    high_wavelen = old_len / high
    wavelen = 2 * math.pi / inv_freq
    out = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * out / factor + smooth * out
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, out)


def hf_rope(x: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor, interleaved: bool,
            rotary_dim: int) -> torch.Tensor:
    """RoPE as Hugging Face applies it (torch 1.13 has none): freqs = positions.float() x inv_freq in float32,
    cos/sin of them in float32, x * cos + rotate_half(x) * sin; interleaved: GPT-J's rotate_every_two on
    adjacent pairs. x [N, L, H, D], positions [N, L]; features past rotary_dim pass through (GPT-NeoX)."""
    freqs = (inv_freq[None, :, None].float().expand(positions.shape[0], -1, 1)
             @ positions[:, None, :].float()).transpose(1, 2)  # [N, L, half], HF's matmul form
    rot, rest = x[..., :rotary_dim], x[..., rotary_dim:]
    if interleaved:
        cos = freqs.cos().repeat_interleave(2, -1)[:, :, None, :]
        sin = freqs.sin().repeat_interleave(2, -1)[:, :, None, :]
        x1, x2 = rot[..., ::2], rot[..., 1::2]
        rotated = torch.stack((-x2, x1), -1).flatten(-2)
    else:
        emb = torch.cat((freqs, freqs), -1)
        cos, sin = emb.cos()[:, :, None, :], emb.sin()[:, :, None, :]
        half = rotary_dim // 2
        rotated = torch.cat((-rot[..., half:], rot[..., :half]), -1)
    return torch.cat((rot * cos + rotated * sin, rest), -1)


def gqa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                  causal: bool) -> torch.Tensor:
    """F.scaled_dot_product_attention(..., enable_gqa=True) of PyTorch 2.5 by its documented formula (torch 1.13
    has neither): k, v [N, Hkv, S, E] repeated to q's heads (head h reads h // (H // Hkv)), then
    softmax(q kT / sqrt(E) + mask) v; causal is top-left aligned."""
    rep = q.shape[-3] // k.shape[-3]
    k = k.repeat_interleave(rep, dim=-3)
    v = v.repeat_interleave(rep, dim=-3)
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        s = s.masked_fill(torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).triu(1), float('-inf'))
    if mask is not None:
        s = s + mask
    return torch.softmax(s, -1) @ v


def gen_llama_ops(w: Writer) -> None:
    """llama_ops.safetensors: silu/sigmoid/tanh/silu*up, RoPE (HF and interleaved, partial, per-row positions,
    Llama 3 frequencies at long positions) and grouped-query attention; parameters in __metadata__."""
    seed(11)
    t: dict[str, torch.Tensor] = {}
    meta: dict[str, str] = {}

    def case(name: str, params: dict[str, Any], **tensors: torch.Tensor) -> None:
        meta[name] = js(params)
        for k, v in tensors.items():
            t[f'{name}.{k}'] = v.detach().contiguous()

    specials = torch.tensor([0.0, -0.0, 1e-30, -1e-30, 1e-5, -1e-5, 0.62, 0.63, -0.7, 9.0, -9.0, 20.0, -20.0,
                             88.0, -88.0, 100.0, -100.0, float('inf'), float('-inf'), float('nan')])
    x = torch.cat((specials, torch.randn(300) * 6))
    case('act', {}, x=x, silu=F.silu(x), sigmoid=torch.sigmoid(x), tanh=torch.tanh(x))
    g, u = torch.randn(4, 77) * 5, torch.randn(4, 77) * 2
    case('silu_mul', {}, gate=g, up=u, out=F.silu(g) * u)

    def rope_case(name: str, shape: list[int], positions: torch.Tensor, theta: float, interleaved: bool,
                  rotary_dim: int | None = None, offset: int | None = None, inv_freq: torch.Tensor | None = None) -> None:
        n, l, h, d = shape
        rd = d if rotary_dim is None else rotary_dim
        xx = torch.randn(*shape) * 2
        f = hf_inv_freq(rd, theta) if inv_freq is None else inv_freq
        pos2 = positions if positions.dim() == 2 else positions[None, :].expand(n, l)
        params: dict[str, Any] = {'theta': theta, 'interleaved': interleaved, 'rotaryDim': rd, 'customInvFreq': inv_freq is not None}
        if offset is not None:
            params['offset'] = offset
        case(name, params, x=xx, positions=positions.to(torch.int32), inv_freq=f,
             out=hf_rope(xx, pos2, f, interleaved, rd))

    rope_case('rope.hf_shared', [2, 5, 3, 16], torch.arange(5), 10000.0, False)
    rope_case('rope.hf_left_padded', [2, 4, 2, 8], torch.tensor([[0, 0, 1, 2], [0, 1, 2, 3]]), 10000.0, False)
    rope_case('rope.interleaved_offset', [1, 6, 2, 16], torch.arange(3, 9), 10000.0, True, offset=3)
    rope_case('rope.neox_partial', [2, 3, 4, 32], torch.arange(3), 10000.0, False, rotary_dim=8)
    rope_case('rope.llama3_long', [1, 4, 2, 128], torch.arange(8000, 8004), 500000.0, False,
              inv_freq=llama3_inv_freq(hf_inv_freq(128, 500000.0), 8.0, 1.0, 4.0, 8192))
    rope_case('rope.theta500k_default', [1, 3, 1, 128], torch.arange(100, 103), 500000.0, False)

    q, k, v = torch.randn(2, 8, 5, 16), torch.randn(2, 2, 7, 16), torch.randn(2, 2, 7, 16)
    mask = torch.randn(5, 7)
    case('gqa.mask', {'causal': False}, q=q, k=k, v=v, mask=mask, out=gqa_attention(q, k, v, mask, False))
    q, k, v = torch.randn(1, 6, 9, 8), torch.randn(1, 3, 9, 8), torch.randn(1, 3, 9, 8)
    case('gqa.causal', {'causal': True}, q=q, k=k, v=v, out=gqa_attention(q, k, v, None, True))
    q, k, v = torch.randn(2, 8, 1, 64), torch.randn(2, 1, 33, 64), torch.randn(2, 1, 33, 64)
    case('gqa.decode_mqa', {'causal': False}, q=q, k=k, v=v, out=gqa_attention(q, k, v, None, False))

    meta['producer'] = 'scripts/gen_fixtures.py'
    meta['torch_version'] = torch.__version__
    meta['reference'] = 'published formulas in torch float32: F.silu, sigmoid, tanh; HF Llama RoPE; SDPA enable_gqa'
    w.write('llama_ops.safetensors', t, meta)


# ---------------------------------------------------------------------------
# module parity fixtures
# ---------------------------------------------------------------------------

def gen_mha(w: Writer) -> None:
    E, H, L, S, N = 8, 2, 4, 6, 3

    def mha(name: str, options: dict[str, Any], inputs: dict[str, torch.Tensor], forward: dict[str, Any] | None = None,
            note: str = '') -> None:
        m = nn.MultiheadAttention(**options)
        module_case(w, name, 'MultiheadAttention', options, m, inputs, forward, note)

    seed(100)
    x = torch.randn(L, N, E)
    mha('mha_self_basic', {'embed_dim': E, 'num_heads': H}, {'query': x, 'key': x, 'value': x},
        note='self-attention (query, key and value are the same tensor), seq-first, averaged weights')

    seed(101)
    E4 = 16
    q, kv = torch.randn(N, L, E4), torch.randn(N, S, E4)
    mha('mha_batch_first', {'embed_dim': E4, 'num_heads': 4, 'batch_first': True},
        {'query': q, 'key': kv, 'value': kv}, note='cross-attention with key is value; batch-first')

    seed(102)
    q, k, v = torch.randn(L, N, E), torch.randn(S, N, E), torch.randn(S, N, E)
    mha('mha_no_bias', {'embed_dim': E, 'num_heads': H, 'bias': False}, {'query': q, 'key': k, 'value': v})

    seed(103)
    q, k, v = torch.randn(L, N, E), torch.randn(S, N, 6), torch.randn(S, N, 5)
    mha('mha_kdim_vdim', {'embed_dim': E, 'num_heads': H, 'kdim': 6, 'vdim': 5}, {'query': q, 'key': k, 'value': v},
        note='separate q/k/v projection weights (q_proj_weight, k_proj_weight, v_proj_weight)')

    seed(104)
    q, k, v = torch.randn(L, N, E), torch.randn(S, N, E), torch.randn(S, N, E)
    mha('mha_bias_kv', {'embed_dim': E, 'num_heads': H, 'add_bias_kv': True}, {'query': q, 'key': k, 'value': v})

    seed(105)
    q, k, v = torch.randn(L, N, E), torch.randn(S, N, E), torch.randn(S, N, E)
    mha('mha_zero_attn', {'embed_dim': E, 'num_heads': H, 'add_zero_attn': True}, {'query': q, 'key': k, 'value': v})

    seed(106)
    q, k, v = torch.randn(N, L, E), torch.randn(N, S, E), torch.randn(N, S, E)
    am = torch.rand(L, S) < 0.3
    am[:, 0] = False
    kpm = torch.zeros(N, S, dtype=torch.bool)
    kpm[1, -2:] = True
    mha('mha_bias_kv_zero_attn_masks',
        {'embed_dim': E, 'num_heads': H, 'add_bias_kv': True, 'add_zero_attn': True, 'batch_first': True},
        {'query': q, 'key': k, 'value': v, 'attn_mask': am, 'key_padding_mask': kpm},
        {'average_attn_weights': False},
        note='add_bias_kv appends one key/value column (bias_k/bias_v) after the projections and add_zero_attn '
             'another (zeros); attn_mask and key_padding_mask get an unmasked column for each, so the weights '
             'have S + 2 columns')

    seed(107)
    q, k, v = torch.randn(L, N, E), torch.randn(S, N, E), torch.randn(S, N, E)
    mha('mha_per_head_weights', {'embed_dim': E, 'num_heads': H}, {'query': q, 'key': k, 'value': v},
        {'need_weights': True, 'average_attn_weights': False})
    mha('mha_no_weights', {'embed_dim': E, 'num_heads': H}, {'query': q, 'key': k, 'value': v},
        {'need_weights': False}, note='need_weights=False: attn_weights is None, only out.attn_output is stored')

    seed(108)
    q, k, v = torch.randn(L, N, E), torch.randn(S, N, E), torch.randn(S, N, E)
    am = torch.rand(L, S) < 0.4
    am[:, 0] = False
    mha('mha_bool_mask_2d', {'embed_dim': E, 'num_heads': H}, {'query': q, 'key': k, 'value': v, 'attn_mask': am},
        note='bool attn_mask: True = not allowed to attend')
    amf = torch.randn(L, S)
    amf[0, 2] = float('-inf')
    amf[2, 4:] = float('-inf')
    mha('mha_float_mask_2d', {'embed_dim': E, 'num_heads': H}, {'query': q, 'key': k, 'value': v, 'attn_mask': amf},
        note='float attn_mask is added to the scaled scores (-inf entries included)')
    am3 = torch.rand(N * H, L, S) < 0.4
    am3[:, :, 1] = False
    mha('mha_bool_mask_3d', {'embed_dim': E, 'num_heads': H}, {'query': q, 'key': k, 'value': v, 'attn_mask': am3},
        note='3-D mask of shape (N*num_heads, L, S): index b*num_heads + h')
    amf3 = torch.randn(N * H, L, S)
    amf3[3, 1, :3] = float('-inf')
    mha('mha_float_mask_3d', {'embed_dim': E, 'num_heads': H}, {'query': q, 'key': k, 'value': v, 'attn_mask': amf3})
    kpm = torch.zeros(N, S, dtype=torch.bool)
    kpm[0, -1] = True
    kpm[2, 2:] = True
    mha('mha_key_padding', {'embed_dim': E, 'num_heads': H},
        {'query': q, 'key': k, 'value': v, 'key_padding_mask': kpm},
        note='bool key_padding_mask (N, S): True = padding, ignored')
    mha('mha_float_mask_and_key_padding', {'embed_dim': E, 'num_heads': H},
        {'query': q, 'key': k, 'value': v, 'attn_mask': amf, 'key_padding_mask': kpm},
        note='float attn_mask combined with bool key_padding_mask')

    seed(109)
    q, k, v = torch.randn(L, E), torch.randn(S, E), torch.randn(S, E)
    am = torch.rand(L, S) < 0.3
    am[:, 0] = False
    kpm = torch.tensor([False, False, False, False, True, True])
    mha('mha_unbatched', {'embed_dim': E, 'num_heads': H, 'batch_first': True},
        {'query': q, 'key': k, 'value': v, 'attn_mask': am, 'key_padding_mask': kpm},
        {'average_attn_weights': False},
        note='unbatched: query (L, E), key/value (S, E), key_padding_mask (S,); batch_first is ignored; '
             'per-head weights are (num_heads, L, S)')

    seed(111)
    x = torch.randn(N, L, E)
    kpm = torch.zeros(N, L, dtype=torch.bool)
    kpm[0, -1] = True
    kpm[2, -2:] = True
    mha('mha_self_batch_first_kpm', {'embed_dim': E, 'num_heads': H, 'batch_first': True},
        {'query': x, 'key': x, 'value': x, 'key_padding_mask': kpm},
        note='batch-first self-attention with key padding: the configuration for which PyTorch 1.13 takes '
             'torch._native_multi_head_attention under no_grad (see fastpath_eligible)')

    seed(110)
    x = torch.randn(L, N, E)
    kpm = torch.zeros(N, L, dtype=torch.bool)
    kpm[1, :] = True
    mha('mha_fully_masked', {'embed_dim': E, 'num_heads': H},
        {'query': x, 'key': x, 'value': x, 'key_padding_mask': kpm},
        note='batch element 1 has every key masked: PyTorch 1.13 returns NaN for its whole output and weights '
             '(softmax over all -inf); the other batch elements are unaffected')


def enc_layer_opts(d: int, h: int, ff: int, **kw: Any) -> dict[str, Any]:
    return {'d_model': d, 'nhead': h, 'dim_feedforward': ff, **kw}


def gen_encoder_layers(w: Writer) -> None:
    d, h, ff, L, N = 16, 4, 32, 5, 3

    def layer(name: str, options: dict[str, Any], inputs: dict[str, torch.Tensor], note: str = '') -> None:
        m = nn.TransformerEncoderLayer(**options)
        module_case(w, name, 'TransformerEncoderLayer', options, m, inputs, None, note)

    seed(200)
    layer('encoder_layer_relu_post', enc_layer_opts(d, h, ff), {'src': torch.randn(L, N, d)},
          note='defaults: relu, post-norm, seq-first')
    seed(201)
    layer('encoder_layer_gelu_pre_causal',
          enc_layer_opts(d, h, ff, activation='gelu', norm_first=True, batch_first=True),
          {'src': torch.randn(N, L, d), 'src_mask': causal_float(L)}, note='float causal src_mask (0 / -inf)')
    seed(202)
    kpm = torch.zeros(N, L, dtype=torch.bool)
    kpm[1, -2:] = True
    kpm[2, -1] = True
    layer('encoder_layer_batch_first_kpm', enc_layer_opts(d, h, ff, batch_first=True),
          {'src': torch.randn(N, L, d), 'src_key_padding_mask': kpm},
          note='eligible for torch._transformer_encoder_layer_fwd under no_grad; it agrees with the math path here')
    seed(203)
    am = causal_bool(L)
    kpm = torch.zeros(N, L, dtype=torch.bool)
    kpm[0, -1] = True
    layer('encoder_layer_bool_masks', enc_layer_opts(d, h, ff, layer_norm_eps=1e-6, activation='gelu'),
          {'src': torch.randn(L, N, d), 'src_mask': am, 'src_key_padding_mask': kpm},
          note='bool causal src_mask plus bool key padding; layer_norm_eps 1e-6')
    seed(204)
    layer('encoder_layer_unbatched', enc_layer_opts(d, h, ff, norm_first=True),
          {'src': torch.randn(L, d), 'src_mask': causal_float(L)}, note='unbatched src (L, E)')


def gen_decoder_layers(w: Writer) -> None:
    d, h, ff, T, S, N = 16, 4, 32, 4, 5, 2

    def layer(name: str, options: dict[str, Any], inputs: dict[str, torch.Tensor], note: str = '') -> None:
        m = nn.TransformerDecoderLayer(**options)
        module_case(w, name, 'TransformerDecoderLayer', options, m, inputs, None, note)

    seed(300)
    layer('decoder_layer_relu_post_causal', enc_layer_opts(d, h, ff),
          {'tgt': torch.randn(T, N, d), 'memory': torch.randn(S, N, d), 'tgt_mask': causal_float(T)},
          note='seq-first, float causal tgt_mask')
    seed(301)
    tkpm = torch.zeros(N, T, dtype=torch.bool)
    tkpm[1, -1] = True
    mkpm = torch.zeros(N, S, dtype=torch.bool)
    mkpm[0, -2:] = True
    mm = torch.rand(T, S) < 0.3
    mm[:, 0] = False
    layer('decoder_layer_gelu_pre_masks',
          enc_layer_opts(d, h, ff, activation='gelu', norm_first=True, batch_first=True),
          {'tgt': torch.randn(N, T, d), 'memory': torch.randn(N, S, d), 'tgt_mask': causal_bool(T), 'memory_mask': mm,
           'tgt_key_padding_mask': tkpm, 'memory_key_padding_mask': mkpm},
          note='bool causal tgt_mask, bool memory_mask, both key padding masks')
    seed(302)
    layer('decoder_layer_unbatched', enc_layer_opts(d, h, ff, layer_norm_eps=1e-6),
          {'tgt': torch.randn(T, d), 'memory': torch.randn(S, d), 'tgt_mask': causal_float(T)},
          note='unbatched tgt (T, E) and memory (S, E)')


def gen_stacks(w: Writer) -> None:
    d, h, ff, L, N = 16, 4, 32, 5, 3

    seed(400)
    lopts = enc_layer_opts(d, h, ff, batch_first=True)
    m = nn.TransformerEncoder(nn.TransformerEncoderLayer(**lopts), 2, norm=nn.LayerNorm(d))
    kpm = torch.zeros(N, L, dtype=torch.bool)
    kpm[1, -2:] = True
    kpm[2, -1] = True
    module_case(w, 'encoder_stack_kpm', 'TransformerEncoder',
                {'encoder_layer': lopts, 'num_layers': 2, 'norm': {'eps': 1e-5}}, m,
                {'src': torch.randn(N, L, d), 'src_key_padding_mask': kpm},
                note='under torch.no_grad() PyTorch 1.13 converts src to a nested tensor (fast path) and pads the '
                     'result with zeros, so padded positions come out as the final norm of a zero vector '
                     '(= norm.bias), not the math-path values: out.output is the math path, '
                     'out_fastpath.output what no_grad inference returns')

    seed(401)
    lopts = enc_layer_opts(d, h, ff, norm_first=True, activation='gelu')
    m = nn.TransformerEncoder(nn.TransformerEncoderLayer(**lopts), 3, norm=nn.LayerNorm(d))
    kpm = torch.zeros(N, L, dtype=torch.bool)
    kpm[0, -1] = True
    module_case(w, 'encoder_stack_masks', 'TransformerEncoder',
                {'encoder_layer': lopts, 'num_layers': 3, 'norm': {'eps': 1e-5}}, m,
                {'src': torch.randn(L, N, d), 'mask': causal_float(L), 'src_key_padding_mask': kpm},
                note='pre-norm stack of 3 with final LayerNorm, causal mask and key padding')

    seed(402)
    T, S = 4, 5
    lopts = enc_layer_opts(d, h, ff)
    m = nn.TransformerDecoder(nn.TransformerDecoderLayer(**lopts), 2, norm=nn.LayerNorm(d))
    tkpm = torch.zeros(N, T, dtype=torch.bool)
    tkpm[2, -1] = True
    mkpm = torch.zeros(N, S, dtype=torch.bool)
    mkpm[1, -2:] = True
    module_case(w, 'decoder_stack', 'TransformerDecoder',
                {'decoder_layer': lopts, 'num_layers': 2, 'norm': {'eps': 1e-5}}, m,
                {'tgt': torch.randn(T, N, d), 'memory': torch.randn(S, N, d), 'tgt_mask': causal_float(T),
                 'tgt_key_padding_mask': tkpm, 'memory_key_padding_mask': mkpm})


def gen_transformers(w: Writer) -> None:
    seed(500)
    opts = {'d_model': 32, 'nhead': 4, 'num_encoder_layers': 2, 'num_decoder_layers': 2, 'dim_feedforward': 64}
    S, T, N = 6, 5, 2
    skpm = torch.zeros(N, S, dtype=torch.bool)
    skpm[1, -2:] = True
    tkpm = torch.zeros(N, T, dtype=torch.bool)
    tkpm[0, -1] = True
    smask = torch.zeros(S, S)
    smask[0, 3] = float('-inf')
    smask[2, 1] = -1.5
    mmask = torch.rand(T, S) < 0.25
    mmask[:, 0] = False
    module_case(w, 'transformer_full', 'Transformer', opts, nn.Transformer(**opts),
                {'src': torch.randn(S, N, 32), 'tgt': torch.randn(T, N, 32), 'src_mask': smask,
                 'tgt_mask': causal_float(T), 'memory_mask': mmask, 'src_key_padding_mask': skpm,
                 'tgt_key_padding_mask': tkpm, 'memory_key_padding_mask': skpm},
                note='encoder.norm and decoder.norm are the final LayerNorms nn.Transformer adds')

    seed(501)
    opts = {'d_model': 32, 'nhead': 4, 'num_encoder_layers': 2, 'num_decoder_layers': 2, 'dim_feedforward': 64,
            'batch_first': True, 'norm_first': True, 'activation': 'gelu'}
    skpm = torch.zeros(N, S, dtype=torch.bool)
    skpm[0, -1] = True
    module_case(w, 'transformer_batch_first', 'Transformer', opts, nn.Transformer(**opts),
                {'src': torch.randn(N, S, 32), 'tgt': torch.randn(N, T, 32), 'tgt_mask': causal_float(T),
                 'src_key_padding_mask': skpm, 'memory_key_padding_mask': skpm},
                note='batch-first, pre-norm, gelu')


class TransformerModel(nn.Module):
    """The seed model from the project's origin article, verbatim in structure."""

    def __init__(self, vocab_size: int, d_model: int, nhead: int, num_layers: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model)
        # Positional third argument: num_encoder_layers = num_layers; the
        # decoder keeps the default 6 layers and dim_feedforward stays 2048.
        self.transformer = nn.Transformer(d_model, nhead, num_layers)
        self.fc = nn.Linear(d_model, vocab_size)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        src = self.embedding(src)
        tgt = self.embedding(tgt)
        output = self.transformer(src, tgt)
        return self.fc(output)


def gen_seed_model(w: Writer) -> None:
    seed(600)
    vocab, d, h, layers = 50, 8, 2, 2
    m = TransformerModel(vocab, d, h, layers)
    src = torch.randint(0, vocab, (7, 2), dtype=torch.int64)
    tgt = torch.randint(0, vocab, (5, 2), dtype=torch.int64)
    module_case(w, 'seed_model', 'TransformerModel',
                {'vocab_size': vocab, 'd_model': d, 'nhead': h, 'num_layers': layers,
                 'transformer': {'d_model': d, 'nhead': h, 'num_encoder_layers': layers, 'num_decoder_layers': 6,
                                 'dim_feedforward': 2048}},
                m, {'src': src, 'tgt': tgt},
                note='weights are stored as F16 to keep the file small (8 layers with dim_feedforward 2048); they '
                     'were rounded to float16 before the forward pass, so converting them to float32 gives exactly '
                     'the weights PyTorch used. src/tgt are int64 token ids (S, N) / (T, N), seq-first',
                state_dtype=torch.float16)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--check', action='store_true', help='compare with the files on disk instead of writing')
    ap.add_argument('--only', action='append', default=None, metavar='GROUP',
                    help='generate only these groups (dtypes, ops, rms_norm, mha, encoder_layers, decoder_layers, '
                         'stacks, transformers, seed_model, llama_ops); repeatable. Other torch builds round the last bits '
                         'differently, so adding a group should not rewrite the others.')
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    import warnings
    warnings.filterwarnings('ignore', message='The PyTorch API of nested tensors is in prototype stage')

    w = Writer(args.check)
    groups: dict[str, Callable[[Writer], None]] = {
        'dtypes': gen_dtypes, 'ops': gen_ops, 'rms_norm': gen_rms_norm, 'mha': gen_mha,
        'encoder_layers': gen_encoder_layers, 'decoder_layers': gen_decoder_layers, 'stacks': gen_stacks,
        'transformers': gen_transformers, 'seed_model': gen_seed_model, 'llama_ops': gen_llama_ops,
    }
    for name in args.only or groups:
        if name not in groups:
            ap.error(f'unknown group {name!r}; groups: {", ".join(groups)}')
        groups[name](w)

    total = 0
    for name, size in w.sizes:
        total += size
        print(f'{size:>9}  {name}')
    print(f'{total:>9}  total')
    if w.mismatches:
        print('differs from disk: ' + ', '.join(w.mismatches), file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
