#!/usr/bin/python3
"""Generate the files README.md's examples load (test/fixtures/readme/, read by test/readme.test.ts).

Usage (from the repository root, with Debian's torch 1.13):

    /usr/bin/python3 scripts/gen_readme_fixtures.py           # write the files, print sizes
    /usr/bin/python3 scripts/gen_readme_fixtures.py --check   # exit 1 if any file would change

- seed.pt: the README's porting example as a user runs it: the article's TransformerModel(50, 8, 2, 2) (PyTorch's
  defaults otherwise: 6 decoder layers, dim_feedforward 2048), saved with plain `torch.save(model.state_dict(),
  ...)`. The parameters are stored as float16 (the state dict's tensors `.half()`) to keep the file at ~0.6 MB;
  attnode reads float16 storages as float32, as it reads a float32 file.
- last.ckpt: a training checkpoint {'state_dict': ..., 'epoch': 12, 'optimizer': ...} of a small nn.Linear, for
  the example that reads one entry of a checkpoint.

torch.save's zip records carry no timestamps that vary (torch writes fixed ones), so the output is byte-identical
on the same torch version.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_fixtures import TransformerModel  # noqa: E402  (the article's seed model)

OUT = Path(__file__).resolve().parent.parent / 'test' / 'fixtures' / 'readme'


def saved(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument('--check', action='store_true', help='compare with the files on disk instead of writing')
    args = ap.parse_args()
    torch.manual_seed(17)
    model = TransformerModel(50, 8, 2, 2)
    state = {k: v.half() for k, v in model.state_dict().items()}
    lin = nn.Linear(4, 3)
    opt = torch.optim.Adam(lin.parameters(), lr=1e-3)
    ckpt = {'state_dict': lin.state_dict(), 'epoch': 12, 'optimizer': opt.state_dict()}
    files = {
        'seed.pt': saved(state),
        'last.ckpt': saved(ckpt),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    differs = []
    for name, data in files.items():
        path = OUT / name
        print(f'{len(data):>9}  {name}')
        if args.check:
            if not path.exists() or path.read_bytes() != data:
                differs.append(name)
        else:
            path.write_bytes(data)
    if differs:
        print(f'differs from disk: {", ".join(differs)}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
