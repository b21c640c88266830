#!/usr/bin/python3
"""Write the benchmark models into bench/models/ (gitignored: hundreds of MB).

Usage (from the repository root; needs Debian's torch 1.13: use /usr/bin/python3):

    /usr/bin/python3 scripts/export_bench_models.py                 # every case in bench/cases/cases.json
    /usr/bin/python3 scripts/export_bench_models.py --quick         # only the cases of the quick run
    /usr/bin/python3 scripts/export_bench_models.py --cases mha-s2048,seed-b4s64 [--force]

For each model of bench/cases/cases.json: `<model>.safetensors`, the module's
state dict (PyTorch's key names, which attnode's loadStateDict takes as they
are). For each case: `<case>.onnx` (torch.onnx.export, opset 17, the case's
fixed shapes so onnxruntime sees static shapes) and `<case>.io.safetensors`
(the input(s) and PyTorch's output on its standard math path, the reference
every peer's output is checked against).

Deterministic: fixed seeds per model and per case. Files that exist and are
newer than cases.json are kept unless --force.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'scripts'))
sys.path.insert(0, str(ROOT / 'bench' / 'peers'))

from gen_fixtures import serialize_safetensors  # noqa: E402  (the project's safetensors writer)
import torch_models as tm  # noqa: E402

OPSET = 17


def fresh(path: Path) -> bool:
    return path.exists() and path.stat().st_mtime >= tm.CASES_JSON.stat().st_mtime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--quick', action='store_true', help='only the cases of the quick run')
    ap.add_argument('--cases', default='', help='comma-separated case ids')
    ap.add_argument('--force', action='store_true', help='rewrite files that exist')
    args = ap.parse_args()

    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg = tm.load_cases()
    wanted = {c for c in args.cases.split(',') if c}
    cases = [c for c in cfg['cases'] if (not wanted or c['id'] in wanted) and (not args.quick or c.get('quick'))]
    unknown = wanted - {c['id'] for c in cfg['cases']}
    if unknown:
        print(f'unknown case id(s): {", ".join(sorted(unknown))}', file=sys.stderr)
        return 2
    tm.MODELS_DIR.mkdir(parents=True, exist_ok=True)

    built: dict[str, torch.nn.Module] = {}
    for case in cases:
        mid = case['model']
        spec = cfg['models'][mid]
        if mid not in built:
            torch.manual_seed(spec['seed'])
            m = tm.build(spec).eval()
            tm.randomize(m)
            built[mid] = m
            st = tm.MODELS_DIR / f'{mid}.safetensors'
            if args.force or not fresh(st):
                st.write_bytes(serialize_safetensors(tm.state_dict_of(spec['kind'], m), {'model': mid}))
                print(f'wrote {st.relative_to(ROOT)}')
        m = built[mid]
        io_path = tm.MODELS_DIR / f'{case["id"]}.io.safetensors'
        onnx_path = tm.MODELS_DIR / f'{case["id"]}.onnx'
        if not args.force and fresh(io_path) and fresh(onnx_path):
            print(f'up to date: {case["id"]}')
            continue
        inputs = tm.case_inputs(case, spec)
        run_args = tm.run_args(spec, inputs)
        # The reference output on PyTorch's math path: grad enabled and parameters requiring grad rule out the
        # fused fast paths, whose rounding differs slightly.
        with torch.enable_grad():
            ref = m(*run_args).detach()
        io_path.write_bytes(serialize_safetensors({**inputs, 'output': ref.contiguous()}, {'case': case['id']}))
        t0 = time.time()
        names = list(inputs.keys())
        # Traced with grad enabled too, so the graph is the math path (the fast paths have no ONNX symbolic).
        torch.onnx.export(m, run_args, str(onnx_path), opset_version=OPSET, input_names=names,
                          output_names=['output'], do_constant_folding=True)
        print(f'wrote {io_path.relative_to(ROOT)}, {onnx_path.relative_to(ROOT)} '
              f'({onnx_path.stat().st_size / 2**20:.0f} MiB, {time.time() - t0:.1f} s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
