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
import struct
import sys
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parent.parent / 'test' / 'fixtures' / 'llama2c'

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
    for p in sorted(OUT.iterdir()):
        print(f'{p.stat().st_size:>9}  {p.name}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
