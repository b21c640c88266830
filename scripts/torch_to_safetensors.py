#!/usr/bin/python3
"""Write safetensors files with PyTorch alone (no `safetensors` package).

As a command, converts a torch.save state dict (model.pt, pytorch_model.bin) to safetensors:

    python3 scripts/torch_to_safetensors.py model.pt model.safetensors [--key state_dict]

(`--key` picks one entry of a training checkpoint such as {'state_dict': ..., 'epoch': ...}). The file is read
with torch.load(weights_only=True), so no pickled code runs; torch 1.13's weights-only loader refuses some plain
values (floats in an optimizer's state), and `--full-pickle` then loads with the full unpickler, which runs
whatever code the file holds: only for files you made yourself.

As a module, `save_file(tensors, path, metadata=None)` is safetensors.torch.save_file for a plain PyTorch
install, and `serialize_safetensors(tensors, metadata=None)` returns the bytes:

    import sys; sys.path.insert(0, 'scripts')
    from torch_to_safetensors import save_file
    save_file(model.state_dict(), 'model.safetensors')

Tensors that share memory (tied weights) are each written in full, as the format has no sharing. Needs torch
(1.13 or later) and numpy, which torch installs.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path
from typing import Any

import torch

ST_DTYPES: dict[torch.dtype, tuple[str, int]] = {
    torch.float64: ('F64', 8),
    torch.float32: ('F32', 4),
    torch.float16: ('F16', 2),
    torch.bfloat16: ('BF16', 2),
    torch.int64: ('I64', 8),
    torch.int32: ('I32', 4),
    torch.int16: ('I16', 2),
    torch.int8: ('I8', 1),
    torch.uint8: ('U8', 1),
    torch.bool: ('BOOL', 1),
}


def tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        # numpy has no bfloat16: reinterpret the bits.
        t = t.view(torch.int16)
    a = t.numpy()
    if a.dtype.byteorder == '>' or (a.dtype.byteorder == '=' and sys.byteorder == 'big'):
        a = a.astype(a.dtype.newbyteorder('<'))
    return a.tobytes()


def serialize_safetensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """Serialize like the reference implementation: tensors ordered by
    decreasing item size then name (so each is aligned to its item size),
    header padded with spaces so the data section starts at a multiple of 8."""
    for k, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f'{k!r}: expected a tensor, got {type(t).__name__}')
        if t.dtype not in ST_DTYPES:
            raise TypeError(f'{k!r}: dtype {t.dtype} has no safetensors type (supported: {", ".join(str(d) for d in ST_DTYPES)})')
    items = sorted(tensors.items(), key=lambda kv: (-ST_DTYPES[kv[1].dtype][1], kv[0]))
    header: dict[str, Any] = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(v, str):
                raise TypeError(f'metadata value for {k!r} is not a string')
        header['__metadata__'] = dict(sorted(metadata.items()))
    chunks: list[bytes] = []
    offset = 0
    for name, t in items:
        dtype, _ = ST_DTYPES[t.dtype]
        b = tensor_bytes(t)
        header[name] = {'dtype': dtype, 'shape': list(t.shape), 'data_offsets': [offset, offset + len(b)]}
        chunks.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(',', ':'), ensure_ascii=False).encode('utf-8')
    h += b' ' * (-len(h) % 8)
    return len(h).to_bytes(8, 'little') + h + b''.join(chunks)


def save_file(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors.torch.save_file without the safetensors package."""
    Path(path).write_bytes(serialize_safetensors(dict(tensors), metadata))


def main() -> int:
    ap = argparse.ArgumentParser(description='Convert a torch.save state dict to safetensors with torch alone.')
    ap.add_argument('input', help='a torch.save file (model.pt, pytorch_model.bin)')
    ap.add_argument('output', help='the safetensors file to write')
    ap.add_argument('--key', help="the entry holding the state dict in a checkpoint (e.g. 'state_dict')")
    ap.add_argument('--full-pickle', action='store_true',
                    help='load with the full unpickler (runs code the file holds) when the weights-only loader refuses it')
    args = ap.parse_args()
    try:
        obj = torch.load(args.input, map_location='cpu', weights_only=not args.full_pickle)
    except pickle.UnpicklingError as e:
        first = str(e).split('WeightsUnpickler error: ')[-1]
        print(f"{args.input}: torch {torch.__version__}'s weights-only loader refused it ({first}); if you made the file "
              'yourself, --full-pickle loads it with the full unpickler (which runs code the file holds)', file=sys.stderr)
        return 1
    if args.key is not None:
        if not isinstance(obj, dict) or args.key not in obj:
            print(f'{args.input}: no entry {args.key!r} (entries: {", ".join(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__})', file=sys.stderr)
            return 1
        obj = obj[args.key]
    if not isinstance(obj, dict):
        print(f'{args.input}: expected a state dict (a dict of tensors), got {type(obj).__name__}; pass --key', file=sys.stderr)
        return 1
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    skipped = [k for k in obj if k not in tensors]
    save_file(tensors, args.output, {'format': 'pt'})
    print(f'{args.output}: {len(tensors)} tensors' + (f' ({len(skipped)} non-tensor entries left out: {", ".join(map(str, skipped[:5]))})' if skipped else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
