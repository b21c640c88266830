#!/usr/bin/python3
"""Generate the GPT-2 Hugging Face folders in test/fixtures/hf/gpt2-*.

Usage (from the repository root, with Debian's torch 1.13):

    /usr/bin/python3 scripts/gen_gpt2_fixtures.py

Each folder is what `save_pretrained` writes for a tiny random
`GPT2LMHeadModel`: config.json, model.safetensors (Conv1D layout: c_attn,
c_proj, c_fc weights stored [in, out]) and a GPT-2-style byte-level BPE
tokenizer.json (ByteLevel pre-tokenizer/decoder, merges trained here on a
small corpus, `<|endoftext|>` as bos/eos), plus reference.json with:

- the prompt's ids (this script's own byte-level BPE encoder, written from
  GPT-2's encoder.py: bytes_to_unicode, rank-ordered merges) and its logits;
- the greedy continuation of the prompt (10 tokens, full recompute per step);
- a left-padded batch of two prompts and each row's greedy continuation,
  with Hugging Face's generate conventions (position ids cumsum(mask) - 1,
  padding at position 1, padded keys masked with the dtype's minimum).

The model is written here from the published GPT-2 architecture (pre-norm
blocks, causal attention scaled by 1/sqrt(head_dim), gelu_new, learned
positions, LM head tied to wte), not from attnode, so it is an independent
reference.

gpt2-tiny stores `transformer.*` keys plus the tied `lm_head.weight` copy
(transformers' save_pretrained output); gpt2-bare stores OpenAI's bare
GPT2Model keys (`h.0.…`, `wte.weight`) with the old causal-mask buffers
`h.N.attn.bias`, n_inner set and the erf GELU.
"""
import json
import math
import re
import sys
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_fixtures import serialize_safetensors  # noqa: E402  (the project's safetensors writer)

HF_OUT = Path(__file__).resolve().parent.parent / 'test' / 'fixtures' / 'hf'

CORPUS = """Once upon a time there was a little cat. The cat sat on the mat and looked at the sun.
The dog ran to the park, and the cat ran after the dog. They played in the garden all day.
In the morning the bird sang a song; in the evening the children read a story about the sea.
It's a nice day, isn't it? Yes, it is! We'll go to the shop and then we'll come back home.
There were 3 apples and 12 oranges on the table. The people said hello to the teacher."""
NUM_MERGES = 60
EOS = '<|endoftext|>'
# GPT-2's pre-tokenizer regex, restricted to ASCII letters/digits (this script only encodes ASCII text).
PAT = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte → printable character map."""
    bs = list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) + list(range(ord('®'), ord('ÿ') + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


B2U = bytes_to_unicode()


def words(text: str) -> list[str]:
    return [''.join(B2U[b] for b in w.encode()) for w in PAT.findall(text)]


def train_bpe() -> list[tuple[str, str]]:
    """Plain BPE training: repeatedly merge the most frequent adjacent pair (ties: the first in sorted order)."""
    counts = Counter(words(CORPUS))
    seqs = {w: list(w) for w in counts}
    merges = []
    for _ in range(NUM_MERGES):
        pairs: Counter = Counter()
        for w, c in counts.items():
            s = seqs[w]
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        best = max(sorted(pairs), key=lambda p: pairs[p])
        merges.append(best)
        for w in seqs:
            s, out, i = seqs[w], [], 0
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == best:
                    out.append(s[i] + s[i + 1])
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[w] = out
    return merges


def build_tokenizer() -> tuple[dict, dict[str, int], list[tuple[str, str]]]:
    merges = train_bpe()
    vocab: dict[str, int] = {}
    for ch in B2U.values():
        vocab[ch] = len(vocab)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    eos_id = len(vocab)
    tj = {
        'version': '1.0', 'truncation': None, 'padding': None,
        'added_tokens': [{'id': eos_id, 'content': EOS, 'single_word': False, 'lstrip': False, 'rstrip': False,
                          'normalized': True, 'special': True}],
        'normalizer': None,
        'pre_tokenizer': {'type': 'ByteLevel', 'add_prefix_space': False, 'trim_offsets': True, 'use_regex': True},
        'post_processor': {'type': 'ByteLevel', 'add_prefix_space': True, 'trim_offsets': False, 'use_regex': True},
        'decoder': {'type': 'ByteLevel', 'add_prefix_space': True, 'trim_offsets': True, 'use_regex': True},
        'model': {'type': 'BPE', 'dropout': None, 'unk_token': None, 'continuing_subword_prefix': '',
                  'end_of_word_suffix': '', 'fuse_unk': False, 'byte_fallback': False, 'ignore_merges': False,
                  'vocab': vocab, 'merges': [f'{a} {b}' for a, b in merges]},
    }
    return tj, vocab, merges


def encode(text: str, vocab: dict[str, int], merges: list[tuple[str, str]]) -> list[int]:
    """GPT-2's encoder.py bpe(): merge the lowest-ranked adjacent pair until none is in the merges."""
    ranks = {m: i for i, m in enumerate(merges)}
    ids = []
    for w in words(text):
        s = list(w)
        while len(s) > 1:
            pairs = [(ranks.get((a, b), math.inf), i) for i, (a, b) in enumerate(zip(s, s[1:]))]
            r, i = min(pairs)
            if r == math.inf:
                break
            a, b = s[i], s[i + 1]
            out, j = [], 0
            while j < len(s):
                if j + 1 < len(s) and s[j] == a and s[j + 1] == b:
                    out.append(a + b)
                    j += 2
                else:
                    out.append(s[j])
                    j += 1
            s = out
        ids.extend(vocab[p] for p in s)
    return ids


def gelu(x: torch.Tensor, kind: str) -> torch.Tensor:
    """transformers' ACT2FN[activation_function] for the kinds the fixtures use."""
    if kind == 'relu':
        return torch.relu(x)
    if kind == 'gelu_new':
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def gpt2_logits(w: dict[str, torch.Tensor], cfg: dict, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """GPT2LMHeadModel on ids [B, T] with attention mask [B, T] (1 = token): logits [B, T, V]."""
    B, T = ids.shape
    E, H = cfg['n_embd'], cfg['n_head']
    hd, eps = E // H, cfg['layer_norm_epsilon']
    pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    x = w['transformer.wte.weight'][ids] + w['transformer.wpe.weight'][pos]
    lowest = torch.finfo(torch.float32).min
    allowed = torch.tril(torch.ones(T, T, dtype=torch.bool))[None, None] & (mask[:, None, None, :] == 1)
    bias = torch.zeros(B, 1, T, T).masked_fill(~allowed, lowest)
    ln = lambda v, p: torch.nn.functional.layer_norm(v, (E,), w[p + '.weight'], w[p + '.bias'], eps)  # noqa: E731
    conv = lambda v, p: v @ w[p + '.weight'] + w[p + '.bias']  # noqa: E731  (Conv1D: x·W + b, W [in, out])
    for l in range(cfg['n_layer']):
        p = f'transformer.h.{l}.'
        q, k, v = conv(ln(x, p + 'ln_1'), p + 'attn.c_attn').split(E, dim=-1)
        q, k, v = (t.view(B, T, H, hd).transpose(1, 2) for t in (q, k, v))
        # reorder_and_upcast_attn only changes where the float32 scaling happens (numerics), not the result.
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + bias, dim=-1) @ v
        x = x + conv(a.transpose(1, 2).reshape(B, T, E), p + 'attn.c_proj')
        x = x + conv(gelu(conv(ln(x, p + 'ln_2'), p + 'mlp.c_fc'), cfg['activation_function']), p + 'mlp.c_proj')
    return ln(x, 'transformer.ln_f') @ w['transformer.wte.weight'].T


def greedy(w: dict, cfg: dict, ids: list[list[int]], mask: list[list[int]], steps: int) -> list[list[int]]:
    """Greedy continuation, recomputing the whole sequence every step (no cache: independent of attnode's)."""
    seq, m = torch.tensor(ids), torch.tensor(mask)
    out: list[list[int]] = [[] for _ in ids]
    for _ in range(steps):
        nxt = gpt2_logits(w, cfg, seq, m)[:, -1].argmax(-1)
        for b, t in enumerate(nxt.tolist()):
            out[b].append(t)
        seq = torch.cat([seq, nxt[:, None]], dim=1)
        m = torch.cat([m, torch.ones(len(ids), 1, dtype=m.dtype)], dim=1)
    return out


def folder(name: str, cfg: dict, tok: tuple, bare: bool) -> None:
    tj, vocab, merges = tok
    torch.manual_seed(sum(name.encode()))
    E, L, V, P = cfg['n_embd'], cfg['n_layer'], cfg['vocab_size'], cfg['n_positions']
    inner = cfg.get('n_inner') or 4 * E
    r = lambda *s: torch.randn(*s) * 0.2  # noqa: E731
    w = {'transformer.wte.weight': r(V, E), 'transformer.wpe.weight': r(P, E),
         'transformer.ln_f.weight': 1 + 0.1 * r(E), 'transformer.ln_f.bias': 0.1 * r(E)}
    for l in range(L):
        p = f'transformer.h.{l}.'
        w.update({p + 'ln_1.weight': 1 + 0.1 * r(E), p + 'ln_1.bias': 0.1 * r(E),
                  p + 'attn.c_attn.weight': r(E, 3 * E), p + 'attn.c_attn.bias': 0.1 * r(3 * E),
                  p + 'attn.c_proj.weight': r(E, E), p + 'attn.c_proj.bias': 0.1 * r(E),
                  p + 'ln_2.weight': 1 + 0.1 * r(E), p + 'ln_2.bias': 0.1 * r(E),
                  p + 'mlp.c_fc.weight': r(E, inner), p + 'mlp.c_fc.bias': 0.1 * r(inner),
                  p + 'mlp.c_proj.weight': r(inner, E), p + 'mlp.c_proj.bias': 0.1 * r(E)})
    prompt = 'The cat sat on the mat'
    ids = encode(prompt, vocab, merges)
    batch_texts = ['The dog ran to the park', 'Once upon a time there']
    batch_ids = [encode(t, vocab, merges) for t in batch_texts]
    width = max(len(b) for b in batch_ids)
    pad = vocab['!']  # any id: padded positions are masked
    padded = [[pad] * (width - len(b)) + b for b in batch_ids]
    pmask = [[0] * (width - len(b)) + [1] * len(b) for b in batch_ids]
    with torch.no_grad():
        logits = gpt2_logits(w, cfg, torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))[0]
        cont = greedy(w, cfg, [ids], [[1] * len(ids)], 10)[0]
        batch_cont = greedy(w, cfg, padded, pmask, 8)
        singles = [greedy(w, cfg, [b], [[1] * len(b)], 8)[0] for b in batch_ids]
    stored = dict(w)
    if bare:
        stored = {k[len('transformer.'):]: v for k, v in stored.items()}
        for l in range(L):
            stored[f'h.{l}.attn.bias'] = torch.tril(torch.ones(P, P)).view(1, 1, P, P)
    else:
        stored['lm_head.weight'] = w['transformer.wte.weight'].clone()
    d = HF_OUT / name
    d.mkdir(parents=True, exist_ok=True)
    (d / 'config.json').write_text(json.dumps(cfg, indent=2) + '\n')
    (d / 'model.safetensors').write_bytes(serialize_safetensors({k: v.contiguous() for k, v in stored.items()}, {'format': 'pt'}))
    (d / 'tokenizer.json').write_text(json.dumps(tj, ensure_ascii=False) + '\n')
    (d / 'tokenizer_config.json').write_text(json.dumps({
        'tokenizer_class': 'GPT2Tokenizer', 'model_max_length': P, 'bos_token': EOS, 'eos_token': EOS,
        'unk_token': EOS, 'add_prefix_space': False}, indent=2) + '\n')
    ref = {'producer': 'scripts/gen_gpt2_fixtures.py', 'torch_version': torch.__version__,
           'prompt': prompt, 'input_ids': ids, 'logits': [[round(float(v), 7) for v in row] for row in logits],
           'greedy': cont,
           'batch': {'texts': batch_texts, 'input_ids': padded, 'attention_mask': pmask, 'greedy': batch_cont,
                     'single_greedy': singles}}
    (d / 'reference.json').write_text(json.dumps(ref) + '\n')


def main() -> int:
    tok = build_tokenizer()
    vocab_size = len(tok[1]) + 1  # + <|endoftext|>
    eos = vocab_size - 1
    base = {'model_type': 'gpt2', 'architectures': ['GPT2LMHeadModel'], 'vocab_size': vocab_size, 'n_positions': 64,
            'n_embd': 32, 'n_layer': 2, 'n_head': 4, 'n_inner': None, 'activation_function': 'gelu_new',
            'layer_norm_epsilon': 1e-5, 'bos_token_id': eos, 'eos_token_id': eos, 'resid_pdrop': 0.1,
            'embd_pdrop': 0.1, 'attn_pdrop': 0.1, 'initializer_range': 0.02, 'scale_attn_weights': True,
            'use_cache': True, 'torch_dtype': 'float32'}
    folder('gpt2-tiny', base, tok, bare=False)
    folder('gpt2-bare', {**base, 'n_inner': 48, 'activation_function': 'gelu', 'layer_norm_epsilon': 1e-6}, tok, bare=True)
    # config.json conformance: ReLU MLP, n_inner 40, layer_norm_epsilon 1e-3, reorder_and_upcast_attn, scale_attn_weights.
    folder('gpt2-relu-upcast', {**base, 'n_inner': 40, 'activation_function': 'relu', 'layer_norm_epsilon': 1e-3,
                                'reorder_and_upcast_attn': True, 'scale_attn_by_inverse_layer_idx': False}, tok, bare=False)
    for p in sorted(HF_OUT.glob('gpt2-*/*')):
        print(f'{p.stat().st_size:>9}  {p.relative_to(HF_OUT.parent)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
