#!/usr/bin/env python3
"""Checks `npm run train:seed`'s weights against PyTorch (torch 1.13 at /usr/bin/python3).

Loads <run dir>/model.safetensors into the seed article's TransformerModel (§5.2, written here as the article
writes it; only the causal tgt_mask of teacher forcing is added to its forward), evaluates the mean
CrossEntropyLoss on the held-out sequences of <run dir>/run.json in eval mode, and compares it with the loss
attnode recorded there. Prints both; exits 1 when they differ by more than --tol (1e-4).

    /usr/bin/python3 scripts/check_seed_training.py [runs/train-seed] [--tol 1e-4]
"""
import argparse
import json
import os
import struct
import sys

import torch
import torch.nn as nn


class TransformerModel(nn.Module):
    def __init__(self, vocab_size, d_model, nhead, num_layers, num_decoder_layers=6, dim_feedforward=2048):
        super(TransformerModel, self).__init__()
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.transformer = nn.Transformer(d_model, nhead, num_layers, num_decoder_layers, dim_feedforward)
        self.fc = nn.Linear(d_model, vocab_size)

    def forward(self, src, tgt, tgt_mask=None):
        src = self.embedding(src)
        tgt = self.embedding(tgt)
        output = self.transformer(src, tgt, tgt_mask=tgt_mask)
        output = self.fc(output)
        return output


def read_safetensors(path):
    """F32 tensors of a safetensors file (the format is a JSON header and raw little-endian data)."""
    with open(path, 'rb') as f:
        data = f.read()
    (n,) = struct.unpack('<Q', data[:8])
    header = json.loads(data[8:8 + n])
    body = memoryview(data)[8 + n:]
    out = {}
    for name, meta in header.items():
        if name == '__metadata__':
            continue
        if meta['dtype'] != 'F32':
            sys.exit(f'{path}: tensor {name} has dtype {meta["dtype"]}, expected F32')
        start, end = meta['data_offsets']
        out[name] = torch.frombuffer(bytearray(body[start:end]), dtype=torch.float32).reshape(meta['shape'])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('run_dir', nargs='?', default='runs/train-seed')
    ap.add_argument('--tol', type=float, default=1e-4)
    args = ap.parse_args()
    run_path = os.path.join(args.run_dir, 'run.json')
    weights_path = os.path.join(args.run_dir, 'model.safetensors')
    for p in (run_path, weights_path):
        if not os.path.exists(p):
            sys.exit(f'{p} does not exist: run `npm run train:seed -- --out {args.run_dir}` first')
    with open(run_path) as f:
        run = json.load(f)
    c = run['config']
    model = TransformerModel(c['vocabSize'], c['dModel'], c['nhead'], c['numEncoderLayers'], c['numDecoderLayers'], c['dimFeedforward'])
    # strict: every key of the article's state_dict is in the file and nothing else.
    model.load_state_dict(read_safetensors(weights_path), strict=True)
    model.eval()

    seqs = torch.tensor(run['heldOut'], dtype=torch.long)  # [N, L]
    if seqs.shape[1] != c['seqLen']:
        sys.exit(f'{run_path}: held-out sequences have {seqs.shape[1]} digits, config.seqLen is {c["seqLen"]}')
    tgt = seqs.sort(dim=1).values
    src = seqs.T  # sequence-first, as nn.Transformer's default
    tgt_out = tgt.T
    tgt_in = torch.cat([torch.full((1, seqs.shape[0]), c['bosId'], dtype=torch.long), tgt_out[:-1]])
    mask = nn.Transformer.generate_square_subsequent_mask(c['seqLen'])
    with torch.no_grad():
        logits = model(src, tgt_in, tgt_mask=mask)
        loss = nn.CrossEntropyLoss()(logits.reshape(-1, c['vocabSize']), tgt_out.reshape(-1)).item()
        acc = (logits.argmax(-1) == tgt_out).float().mean().item()

    ours = run['heldOutLoss']
    diff = abs(loss - ours)
    print(f'held-out sequences: {seqs.shape[0]} x {c["seqLen"]} digits')
    print(f'attnode held-out loss: {ours:.8f}')
    print(f'PyTorch {torch.__version__} held-out loss: {loss:.8f}  (teacher-forced token accuracy {100 * acc:.2f} %)')
    print(f'|difference|: {diff:.3e} (tolerance {args.tol:g})')
    if not diff <= args.tol:
        print('MISMATCH', file=sys.stderr)
        sys.exit(1)
    print('OK')


if __name__ == '__main__':
    main()
