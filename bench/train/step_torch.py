#!/usr/bin/python3
"""PyTorch 1.13's half of `npm run bench:train`: training steps of the seed article's TransformerModel.

One process per measurement (bench/train/step.ts starts it, alternating with attnode's child):

    step_torch.py --vocab 1000 --d-model 256 --nhead 4 --enc 2 --dec 2 --ff 1024 --batch 8 --seq 32 \
                  --threads 1 --warmup 3 --steps 10 [--seed 0]

Prints one JSON line: per-step milliseconds of the whole step and of each phase (forward with the loss,
loss.backward(), Adam.step(), zero_grad), the CPU time of each step (all threads), the torch version and its thread count, the process's peak RSS.

The step is the article's §5.4 step with the model in train mode (dropout 0.1 as nn.Transformer's default),
teacher forcing under a causal tgt_mask, nn.CrossEntropyLoss, optim.Adam(lr 1e-3) with PyTorch 1.13's default
implementation (single-tensor, foreach=None), and zero_grad(set_to_none=True) — attnode's zeroGrad default, and
the cheaper of the two for PyTorch (1.13's default False memsets every gradient and the next backward adds into
it). The model class is the one scripts/check_seed_training.py checks train:seed's weights with.

PyTorch's products run on whatever libblas.so.3 the process loads (Debian's torch is built with BLAS_INFO=generic):
the result names it (`blas`), with OpenBLAS's thread count, which step.ts sets to --threads through
OPENBLAS_NUM_THREADS (torch.set_num_threads does not reach a pthreads OpenBLAS).
"""
import argparse
import ctypes
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'scripts'))
from check_seed_training import TransformerModel  # noqa: E402


def vm_kib(field):
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(field + ':'):
            return int(line.split()[1])
    return -1


def blas_info():
    """The BLAS library the process loaded (torch's matmuls run on it) and, for OpenBLAS, its thread count."""
    libs = sorted({line.split()[-1] for line in Path('/proc/self/maps').read_text().splitlines()
                   if 'blas' in line.rsplit('/', 1)[-1] and '.so' in line})
    info = {'libraries': libs, 'openblasThreads': None}
    for lib in libs:
        if 'openblas' in lib:
            try:
                info['openblasThreads'] = ctypes.CDLL(lib).openblas_get_num_threads()
            except (OSError, AttributeError):
                pass
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in [('vocab', 1000), ('d-model', 256), ('nhead', 4), ('enc', 2), ('dec', 2), ('ff', 1024),
                          ('batch', 8), ('seq', 32), ('threads', 1), ('warmup', 3), ('steps', 10), ('seed', 0)]:
        ap.add_argument('--' + name, type=int, default=default)
    a = ap.parse_args()
    if a.threads < 1 or a.steps < 1 or a.warmup < 0:
        sys.exit(f'step_torch.py: --threads and --steps must be >= 1 and --warmup >= 0, got {a.threads}, {a.steps}, {a.warmup}')
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = TransformerModel(a.vocab, a.d_model, a.nhead, a.enc, a.dec, a.ff).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(a.seed + 1)
    src = torch.randint(0, a.vocab, (a.seq, a.batch), generator=g)
    tgt_in = torch.randint(0, a.vocab, (a.seq, a.batch), generator=g)
    tgt_out = torch.randint(0, a.vocab, (a.seq * a.batch,), generator=g)
    mask = nn.Transformer.generate_square_subsequent_mask(a.seq)

    phases = {'forward': [], 'backward': [], 'optimizer': [], 'zeroGrad': []}
    step_ms = []
    cpu_ms = []
    losses = []
    for i in range(a.warmup + a.steps):
        c0 = time.process_time()
        t0 = time.perf_counter()
        output = model(src, tgt_in, tgt_mask=mask)
        loss = criterion(output.reshape(-1, a.vocab), tgt_out)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        optimizer.step()
        t3 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        c4 = time.process_time()
        losses.append(loss.item())
        if i >= a.warmup:
            step_ms.append((t4 - t0) * 1e3)
            cpu_ms.append((c4 - c0) * 1e3)
            for k, (s, e) in zip(phases, [(t0, t1), (t1, t2), (t2, t3), (t3, t4)]):
                phases[k].append((e - s) * 1e3)
    print(json.dumps({
        'ok': True, 'engine': 'pytorch', 'version': torch.__version__, 'threads': torch.get_num_threads(),
        'stepMs': step_ms, 'cpuMs': cpu_ms, 'phasesMs': phases, 'firstLoss': losses[0], 'lastLoss': losses[-1],
        'peakRssKiB': vm_kib('VmHWM'), 'blas': blas_info(),
    }))


if __name__ == '__main__':
    main()
