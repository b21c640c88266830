#!/usr/bin/python3
"""Generate the llama2.c fixtures in test/fixtures/llama2c/.

Usage (from the repository root, with Debian's torch 1.13):

    /usr/bin/python3 scripts/gen_llama_fixtures.py

Writes a small random Llama checkpoint in karpathy/llama2.c's `model.bin`
format (grouped-query attention, an unshared classifier: the negative
vocab_size case), a `tokenizer.bin` in llama2.c's format (specials, the 256
byte tokens, single characters and scored merges), and `reference.json`:
the logits of a prompt and the greedy continuation computed by a PyTorch
port of llama2.c's run.c (interleaved rotary pairs, RMSNorm eps 1e-5,
SwiGLU, kv head = head // (n_heads / n_kv_heads)), plus token ids from a
Python port of run.c's encode. Both ports are written here from run.c, not
from attnode, so they are an independent reference.
"""
import json
import math
import struct
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_fixtures import serialize_safetensors  # noqa: E402  (the project's safetensors writer)

OUT = Path(__file__).resolve().parent.parent / 'test' / 'fixtures' / 'llama2c'
HF_OUT = Path(__file__).resolve().parent.parent / 'test' / 'fixtures' / 'hf'

DIM, HIDDEN, LAYERS, HEADS, KV_HEADS, SEQ_LEN = 32, 72, 2, 4, 2, 64
CHARS = ' abcdefghijklmnopqrstuvwxyzTOL.,!\'\n'
MERGES = [' t', 'he', ' the', 'in', 'an', ' a', 'er', 'on', 're', ' s', 'ing', 'ed', ' w', 'nd', ' and', 'ou',
          'at', 'en', ' h', 'it', 'is', ' O', 'On', 'Once', ' u', 'up', 'pon', ' upon', ' ti', 'me', ' time', 'ly']


def build_vocab() -> tuple[list[bytes], list[float]]:
    vocab = [b'<unk>', b'\n<s>\n', b'\n</s>\n'] + [f'<0x{b:02X}>'.encode() for b in range(256)]
    scores = [0.0] * len(vocab)
    for ch in CHARS:
        vocab.append(ch.encode())
        scores.append(-100.0)
    for i, m in enumerate(MERGES):
        vocab.append(m.encode())
        scores.append(-float(i))  # earlier merges win
    return vocab, scores


def write_tokenizer(path: Path, vocab: list[bytes], scores: list[float]) -> None:
    out = bytearray(struct.pack('<i', max(len(v) for v in vocab)))
    for v, s in zip(vocab, scores):
        out += struct.pack('<fi', s, len(v)) + v
    path.write_bytes(bytes(out))


def encode(text: str, vocab: list[bytes], scores: list[float], bos: bool = True, eos: bool = False) -> list[int]:
    """run.c's encode: dummy prefix, one token per UTF-8 character (bytes + 3 when unknown), best-score merges."""
    lookup: dict[bytes, int] = {}
    for i, v in enumerate(vocab):
        lookup.setdefault(v, i)
    tokens = [1] if bos else []
    if text:
        tokens.append(lookup[b' '])
    for ch in text:
        b = ch.encode()
        if b in lookup:
            tokens.append(lookup[b])
        else:
            tokens.extend(x + 3 for x in b)
    while True:
        best, best_id, best_at = -1e10, -1, -1
        for i in range(len(tokens) - 1):
            j = lookup.get(vocab[tokens[i]] + vocab[tokens[i + 1]])
            if j is not None and scores[j] > best:
                best, best_id, best_at = scores[j], j, i
        if best_at < 0:
            break
        tokens[best_at:best_at + 2] = [best_id]
    if eos:
        tokens.append(2)
    return tokens


def rmsnorm(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return w * (x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-5))


def rope(x: torch.Tensor, pos: int) -> torch.Tensor:
    """run.c: adjacent pairs (2i, 2i+1) of each head, freq = 1 / 10000^(2i / head_size)."""
    hs = x.shape[-1]
    i = torch.arange(0, hs, 2, dtype=torch.float32)
    freq = 1.0 / torch.pow(torch.tensor(10000.0), i / hs)
    val = pos * freq
    c, s = torch.cos(val), torch.sin(val)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out


def forward(w: dict[str, torch.Tensor], tokens: list[int]) -> torch.Tensor:
    """Logits [T, vocab] of run.c's transformer() applied position by position with its KV cache."""
    hs = DIM // HEADS
    group = HEADS // KV_HEADS
    kc = [[] for _ in range(LAYERS)]
    vc = [[] for _ in range(LAYERS)]
    logits = []
    for pos, tok in enumerate(tokens):
        x = w['emb'][tok].clone()
        for l in range(LAYERS):
            xb = rmsnorm(x, w['rms_att'][l])
            q = rope((w['wq'][l] @ xb).view(HEADS, hs), pos)
            k = rope((w['wk'][l] @ xb).view(KV_HEADS, hs), pos)
            v = (w['wv'][l] @ xb).view(KV_HEADS, hs)
            kc[l].append(k)
            vc[l].append(v)
            K, V = torch.stack(kc[l]), torch.stack(vc[l])  # [pos+1, kv, hs]
            out = torch.empty(HEADS, hs)
            for h in range(HEADS):
                att = torch.softmax((K[:, h // group] @ q[h]) / hs ** 0.5, dim=0)
                out[h] = att @ V[:, h // group]
            x = x + w['wo'][l] @ out.reshape(-1)
            xb = rmsnorm(x, w['rms_ffn'][l])
            h1 = w['w1'][l] @ xb
            x = x + w['w2'][l] @ (h1 * torch.sigmoid(h1) * (w['w3'][l] @ xb))
        logits.append(w['wcls'] @ rmsnorm(x, w['rms_final']))
    return torch.stack(logits)


# ---------------------------------------------------------------------------
# Hugging Face Llama-family folders (config.json + model.safetensors), from the published architecture:
# rotate_half rotary embeddings, repeat_kv grouped-query attention, RMSNorm in float32, SwiGLU MLP.

def rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def llama3_inv_freq(inv_freq: torch.Tensor, rs: dict) -> torch.Tensor:
    """transformers' _compute_llama3_parameters."""
    factor, low, high, old = rs['factor'], rs['low_freq_factor'], rs['high_freq_factor'], rs['original_max_position_embeddings']
    low_wavelen, high_wavelen = old / low, old / high
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, scaled)


def head_dim(cfg: dict) -> int:
    """transformers: config.head_dim when set, else hidden_size // num_attention_heads."""
    return cfg.get('head_dim') or cfg['hidden_size'] // cfg['num_attention_heads']


def biases(cfg: dict, qkv_bias: bool) -> tuple[bool, bool, bool]:
    """(q/k/v, o_proj, mlp) biases as each family's modeling file builds them: Qwen2 q/k/v only; Llama's
    attention_bias on q/k/v and o_proj, mlp_bias on gate/up/down; Mistral none."""
    llama = cfg['model_type'] == 'llama'
    attn = llama and cfg.get('attention_bias', False)
    return qkv_bias or attn, attn, llama and cfg.get('mlp_bias', False)


def hf_llama_logits(w: dict[str, torch.Tensor], cfg: dict, ids: list[int], qkv_bias: bool) -> torch.Tensor:
    E, H, KV = cfg['hidden_size'], cfg['num_attention_heads'], cfg['num_key_value_heads']
    hd, T, eps = head_dim(cfg), len(ids), cfg['rms_norm_eps']
    qkv_bias, o_bias, mlp_bias = biases(cfg, qkv_bias)
    inv = 1.0 / (cfg['rope_theta'] ** (torch.arange(0, hd, 2).float() / hd))
    rs = cfg.get('rope_scaling') or {}
    kind = rs.get('rope_type', rs.get('type'))
    if kind == 'llama3':
        inv = llama3_inv_freq(inv, rs)
    elif kind == 'linear':  # _compute_linear_scaling_rope_parameters
        inv = inv / rs['factor']
    # 'dynamic' keeps the default frequencies while the sequence fits in max_position_embeddings.
    freqs = torch.outer(torch.arange(T).float(), inv)
    emb = torch.cat([freqs, freqs], dim=-1)
    cos, sin = emb.cos(), emb.sin()
    norm = lambda x, g: g * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))  # noqa: E731
    x = w['model.embed_tokens.weight'][ids]
    causal = torch.full((T, T), float('-inf')).triu(1)
    for l in range(cfg['num_hidden_layers']):
        p = f'model.layers.{l}.'
        h = norm(x, w[p + 'input_layernorm.weight'])
        proj = lambda n, k: h @ w[p + f'self_attn.{n}.weight'].T + (w[p + f'self_attn.{n}.bias'] if qkv_bias else 0)  # noqa: E731
        q = proj('q_proj', H).view(T, H, hd).transpose(0, 1)
        k = proj('k_proj', KV).view(T, KV, hd).transpose(0, 1)
        v = proj('v_proj', KV).view(T, KV, hd).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // KV, dim=0)
        v = v.repeat_interleave(H // KV, dim=0)
        a = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hd) + causal, dim=-1) @ v
        x = x + a.transpose(0, 1).reshape(T, H * hd) @ w[p + 'self_attn.o_proj.weight'].T + (w[p + 'self_attn.o_proj.bias'] if o_bias else 0)
        h = norm(x, w[p + 'post_attention_layernorm.weight'])
        lin = lambda n, t: t @ w[p + f'mlp.{n}.weight'].T + (w[p + f'mlp.{n}.bias'] if mlp_bias else 0)  # noqa: E731
        x = x + lin('down_proj', torch.nn.functional.silu(lin('gate_proj', h)) * lin('up_proj', h))
    head = w['model.embed_tokens.weight'] if cfg['tie_word_embeddings'] else w['lm_head.weight']
    return norm(x, w['model.norm.weight']) @ head.T


def llama_weights(cfg: dict, r, qkv_bias: bool) -> dict[str, torch.Tensor]:
    """Random LlamaForCausalLM weights under Hugging Face's keys, drawn with `r(*shape)` in a fixed order."""
    E, I, V, L = cfg['hidden_size'], cfg['intermediate_size'], cfg['vocab_size'], cfg['num_hidden_layers']
    kv = head_dim(cfg) * cfg['num_key_value_heads']
    q = head_dim(cfg) * cfg['num_attention_heads']
    qkv_bias, o_bias, mlp_bias = biases(cfg, qkv_bias)
    w = {'model.embed_tokens.weight': r(V, E), 'model.norm.weight': 1 + 0.1 * r(E)}
    if not cfg['tie_word_embeddings']:
        w['lm_head.weight'] = r(V, E)
    for l in range(L):
        p = f'model.layers.{l}.'
        w.update({p + 'input_layernorm.weight': 1 + 0.1 * r(E), p + 'post_attention_layernorm.weight': 1 + 0.1 * r(E),
                  p + 'self_attn.q_proj.weight': r(q, E), p + 'self_attn.k_proj.weight': r(kv, E),
                  p + 'self_attn.v_proj.weight': r(kv, E), p + 'self_attn.o_proj.weight': r(E, q),
                  p + 'mlp.gate_proj.weight': r(I, E), p + 'mlp.up_proj.weight': r(I, E), p + 'mlp.down_proj.weight': r(E, I)})
        if qkv_bias:
            w.update({p + 'self_attn.q_proj.bias': r(q), p + 'self_attn.k_proj.bias': r(kv), p + 'self_attn.v_proj.bias': r(kv)})
        if o_bias:
            w[p + 'self_attn.o_proj.bias'] = r(E)
        if mlp_bias:
            w.update({p + 'mlp.gate_proj.bias': r(I), p + 'mlp.up_proj.bias': r(I), p + 'mlp.down_proj.bias': r(E)})
    return w


def hf_folder(name: str, cfg: dict, store: torch.dtype, qkv_bias: bool) -> None:
    torch.manual_seed(sum(name.encode()))  # stable across runs (str hash() is salted per process)
    V = cfg['vocab_size']
    r = lambda *s: (torch.randn(*s) * 0.2).to(store).float()  # noqa: E731  (values exactly representable in `store`)
    w = llama_weights(cfg, r, qkv_bias)
    # The reference multiplies exactly the values the file stores.
    w = {k: v.to(store).float() for k, v in w.items()}
    ids = [int(i) for i in torch.randint(0, V, (9,))]
    with torch.no_grad():
        logits = hf_llama_logits(w, cfg, ids, qkv_bias)
    d = HF_OUT / name
    d.mkdir(parents=True, exist_ok=True)
    (d / 'config.json').write_text(json.dumps(cfg, indent=2) + '\n')
    (d / 'model.safetensors').write_bytes(serialize_safetensors({k: v.to(store) for k, v in w.items()}, {'format': 'pt'}))
    ref = {'producer': 'scripts/gen_llama_fixtures.py', 'torch_version': torch.__version__, 'input_ids': ids,
           'logits': [[round(float(v), 7) for v in row] for row in logits]}
    (d / 'reference.json').write_text(json.dumps(ref) + '\n')


def gen_hf() -> None:
    base = {'vocab_size': 96, 'hidden_size': 32, 'intermediate_size': 56, 'num_hidden_layers': 2,
            'num_attention_heads': 4, 'num_key_value_heads': 2, 'max_position_embeddings': 128, 'rms_norm_eps': 1e-5,
            'rope_theta': 10000.0, 'tie_word_embeddings': False, 'torch_dtype': 'float32'}
    hf_folder('llama-gqa', {**base, 'model_type': 'llama', 'architectures': ['LlamaForCausalLM']}, torch.float32, False)
    hf_folder('llama3-bf16-tied', {**base, 'model_type': 'llama', 'architectures': ['LlamaForCausalLM'],
                                   'rope_theta': 500000.0, 'tie_word_embeddings': True, 'torch_dtype': 'bfloat16',
                                   'rope_scaling': {'rope_type': 'llama3', 'factor': 8.0, 'low_freq_factor': 1.0,
                                                    'high_freq_factor': 4.0, 'original_max_position_embeddings': 16}},
              torch.bfloat16, False)
    hf_folder('qwen2-bias', {**base, 'model_type': 'qwen2', 'architectures': ['Qwen2ForCausalLM'], 'rms_norm_eps': 1e-6,
                             'num_key_value_heads': 1, 'rope_theta': 1000000.0}, torch.float16, True)
    # config.json conformance: fields real checkpoints set that change the outputs.
    hf_folder('llama-headdim-bias', {**base, 'model_type': 'llama', 'architectures': ['LlamaForCausalLM'], 'head_dim': 12,
                                     'attention_bias': True, 'mlp_bias': True, 'hidden_act': 'silu',
                                     'rope_scaling': {'type': 'linear', 'factor': 2.0}}, torch.float32, False)
    # Mistral ignores attention_bias (its projections are bias-free); the 9-token reference fits the 16-position window.
    hf_folder('mistral-window', {**base, 'model_type': 'mistral', 'architectures': ['MistralForCausalLM'], 'head_dim': 16,
                                 'sliding_window': 16, 'attention_bias': True, 'tie_word_embeddings': True,
                                 'rope_scaling': {'rope_type': 'dynamic', 'factor': 4.0}}, torch.float32, False)


def main() -> int:
    torch.manual_seed(1234)
    OUT.mkdir(parents=True, exist_ok=True)
    vocab, scores = build_vocab()
    V = len(vocab)
    hs = DIM // HEADS
    kv = hs * KV_HEADS
    r = lambda *s: torch.randn(*s) * 0.2  # noqa: E731
    w = {
        'emb': r(V, DIM), 'rms_att': 1 + 0.1 * torch.randn(LAYERS, DIM), 'wq': r(LAYERS, DIM, DIM),
        'wk': r(LAYERS, kv, DIM), 'wv': r(LAYERS, kv, DIM), 'wo': r(LAYERS, DIM, DIM),
        'rms_ffn': 1 + 0.1 * torch.randn(LAYERS, DIM), 'w1': r(LAYERS, HIDDEN, DIM), 'w2': r(LAYERS, DIM, HIDDEN),
        'w3': r(LAYERS, HIDDEN, DIM), 'rms_final': 1 + 0.1 * torch.randn(DIM), 'wcls': r(V, DIM),
    }
    header = struct.pack('<7i', DIM, HIDDEN, LAYERS, HEADS, KV_HEADS, -V, SEQ_LEN)  # negative: unshared classifier
    freq = torch.zeros(SEQ_LEN * hs // 2)  # run.c skips the two RoPE tables
    blob = b''.join(t.contiguous().numpy().astype('<f4').tobytes() for t in [
        w['emb'], w['rms_att'], w['wq'], w['wk'], w['wv'], w['wo'], w['rms_ffn'], w['w1'], w['w2'], w['w3'],
        w['rms_final'], freq, freq, w['wcls']])
    (OUT / 'model.bin').write_bytes(header + blob)
    write_tokenizer(OUT / 'tokenizer.bin', vocab, scores)

    texts = ['Once upon a time', 'the cat and the dog', '', 'héllo wörld ✓', 'On the tin, in an inn!']
    prompt = encode('Once upon a time', vocab, scores)
    with torch.no_grad():
        logits = forward(w, prompt)
        seq = list(prompt)
        for _ in range(12):
            seq.append(int(forward(w, seq)[-1].argmax()))
    ref = {
        'producer': 'scripts/gen_llama_fixtures.py', 'torch_version': torch.__version__,
        'config': {'dim': DIM, 'hidden': HIDDEN, 'layers': LAYERS, 'heads': HEADS, 'kv_heads': KV_HEADS,
                   'vocab': V, 'seq_len': SEQ_LEN},
        'encode': [{'text': t, 'ids': encode(t, vocab, scores)} for t in texts],
        'prompt': prompt,
        'logits': [[round(float(v), 7) for v in row] for row in logits],
        'greedy': seq[len(prompt):],
    }
    (OUT / 'reference.json').write_text(json.dumps(ref, ensure_ascii=False) + '\n')
    gen_hf()
    for p in sorted([*OUT.iterdir(), *HF_OUT.glob('*/*')]):
        print(f'{p.stat().st_size:>9}  {p.relative_to(OUT.parent)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
