"""PyTorch twin of bench/train/longseq-step.ts: training steps (forward + backward + Adam) of a 2-layer
nn.TransformerEncoder (d_model 512, 8 heads, feed-forward 2048, batch 1) at a long sequence, in its own process,
printing one JSON line: step times and the peak RSS (resource.getrusage ru_maxrss).

    /usr/bin/python3 bench/train/longseq_torch.py [--seq 2048] [--steps 3] [--threads n] [--dropout 0]
"""
import argparse
import json
import resource
import time

import torch
from torch import nn


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument('--seq', type=int, default=2048)
    ap.add_argument('--steps', type=int, default=3)
    ap.add_argument('--threads', type=int, default=None)
    ap.add_argument('--dropout', type=float, default=0.0)
    a = ap.parse_args()
    if a.steps < 2:
        raise SystemExit('--steps must be >= 2 (the first is warm-up)')
    if a.threads is not None:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(512, 8, dim_feedforward=2048, dropout=a.dropout)
    model = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(a.seq, 1, 512)
    target = torch.randn(a.seq, 1, 512)
    times = []
    loss = 0.0
    for _ in range(a.steps):
        t0 = time.perf_counter()
        opt.zero_grad()
        l = nn.functional.mse_loss(model(x), target)
        l.backward()
        opt.step()
        loss = l.item()
        times.append((time.perf_counter() - t0) * 1000)
    measured = sorted(times[1:])
    print(json.dumps({
        'impl': 'pytorch', 'threads': torch.get_num_threads(), 'seq': a.seq, 'dropout': a.dropout,
        'stepMs': [round(t) for t in times], 'medianMs': round(measured[len(measured) // 2]),
        'peakRssMiB': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), 'loss': loss,
        'torch': torch.__version__,
    }))


if __name__ == '__main__':
    main()
