#!/usr/bin/python3
"""Rewrite a benchmark case's float32 ONNX graph as onnxruntime's `quantize_dynamic` would emit it.

Usage (repository root; Debian's python3-onnx, `apt-get install -y python3-onnx`; no onnxruntime Python package):

    /usr/bin/python3 scripts/quantize_onnx_dynamic.py --cases layer-gelu-b1s128[,...] [--per-channel] [--force]
    /usr/bin/python3 scripts/quantize_onnx_dynamic.py --input IN.onnx --output OUT.onnx [--per-channel]

For a case it reads bench/models/<case>.onnx (scripts/export_bench_models.py: the same weights attnode and PyTorch
load) and writes bench/models/<case>.int8.onnx (per-tensor weights, quantize_dynamic's default) or
<case>.int8pc.onnx (--per-channel). The rewrite follows onnxruntime.quantization.quantize_dynamic with its defaults
(QuantizationMode.IntegerOps, weight_type=QInt8, activations QUInt8, reduce_range=False, MatMulConstBOnly=True):

- every Gemm (alpha = beta = 1, constant B) becomes MatMul + Add first, as ONNXQuantizer.replace_gemm_with_matmul does;
- every MatMul whose B is a float initializer becomes
      DynamicQuantizeLinear(A) -> A_quantized (uint8), A_scale, A_zero_point     (once per activation tensor)
      MatMulInteger(A_quantized, B_quantized, A_zero_point, B_zero_point) -> int32
      Cast(to float) ; Mul(A_scale, B_scale) ; Mul -> the MatMul's original output
  with B quantized to int8 symmetrically: scale = max|B| / 127, zero point 0, values rint(B / scale) clipped to
  [-127, 127]; per tensor, or per output column (B's last axis) with --per-channel;
- MatMuls of two activations (attention's q·kᵀ and probabilities·v) stay float32 (MatMulConstBOnly);
- everything else (bias Adds, LayerNorm, Softmax, GELU) stays float32. onnxruntime's graph optimizer then fuses
  each quantized chain into DynamicQuantizeMatMul / MatMulIntegerToFloat, as it does for quantize_dynamic's output.

Deterministic; the output is checked with onnx.checker. Files newer than their input are kept unless --force.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = ROOT / 'bench' / 'models'
CASES_JSON = ROOT / 'bench' / 'cases' / 'cases.json'


def quantize_weight(w: np.ndarray, per_channel: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """int8 symmetric weights as quantize_dynamic's QInt8 path computes them: (q, scale, zero_point)."""
    if w.ndim != 2:
        raise ValueError(f'expected a 2-D MatMul weight, got shape {list(w.shape)}')
    absmax = np.abs(w).max(axis=0) if per_channel else np.array(np.abs(w).max())
    absmax = absmax.astype(np.float32)
    # A column (or tensor) of zeros gets scale 1 (quantize_data's rule for an empty range), so nothing divides by 0.
    scale = np.where(absmax > 0, absmax / np.float32(127.0), np.float32(1.0)).astype(np.float32)
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    zp = np.zeros(scale.shape, dtype=np.int8)
    return q, scale, zp


class Rewriter:
    def __init__(self, model: onnx.ModelProto, per_channel: bool) -> None:
        self.model = model
        self.per_channel = per_channel
        self.inits = {i.name: i for i in model.graph.initializer}
        self.quantized_acts: dict[str, tuple[str, str, str]] = {}
        self.stats = {'matmul_quantized': 0, 'matmul_float': 0, 'gemm_replaced': 0}

    def float_init(self, name: str) -> np.ndarray | None:
        t = self.inits.get(name)
        if t is None or t.data_type != TensorProto.FLOAT:
            return None
        return numpy_helper.to_array(t)

    def add_init(self, arr: np.ndarray, name: str) -> str:
        t = numpy_helper.from_array(arr, name)
        self.model.graph.initializer.append(t)
        self.inits[name] = t
        return name

    def gemm_to_matmul(self, node: onnx.NodeProto) -> list[onnx.NodeProto] | None:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get('alpha', 1.0) != 1.0 or attrs.get('beta', 1.0) != 1.0 or attrs.get('transA', 0):
            return None
        b = self.float_init(node.input[1])
        if b is None:
            return None
        if attrs.get('transB', 0):
            b = np.ascontiguousarray(b.T)
        b_name = self.add_init(b, node.input[1] + '_T' if attrs.get('transB', 0) else node.input[1] + '_B')
        self.stats['gemm_replaced'] += 1
        if len(node.input) > 2 and node.input[2]:
            mm_out = node.output[0] + '_MatMul'
            return [helper.make_node('MatMul', [node.input[0], b_name], [mm_out], node.name + '_MatMul'),
                    helper.make_node('Add', [mm_out, node.input[2]], [node.output[0]], node.name + '_Add')]
        return [helper.make_node('MatMul', [node.input[0], b_name], [node.output[0]], node.name + '_MatMul')]

    def quantize_matmul(self, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        w = self.float_init(node.input[1])
        if w is None or w.ndim != 2:
            self.stats['matmul_float'] += 1
            return [node]
        out: list[onnx.NodeProto] = []
        a = node.input[0]
        if a not in self.quantized_acts:
            names = (a + '_quantized', a + '_scale', a + '_zero_point')
            out.append(helper.make_node('DynamicQuantizeLinear', [a], list(names), a + '_QuantizeLinear'))
            self.quantized_acts[a] = names
        aq, a_scale, a_zp = self.quantized_acts[a]
        wname = node.input[1]
        q, scale, zp = quantize_weight(w, self.per_channel)
        wq = self.add_init(q, wname + '_quantized')
        ws = self.add_init(scale, wname + '_scale')
        wz = self.add_init(zp, wname + '_zero_point')
        base = node.name or node.output[0]
        mmi = node.output[0] + '_output_quantized'
        out.append(helper.make_node('MatMulInteger', [aq, wq, a_zp, wz], [mmi], base + '_quant'))
        cast = mmi + '_cast_output'
        out.append(helper.make_node('Cast', [mmi], [cast], mmi + '_cast', to=TensorProto.FLOAT))
        smul = base + '_quant_scales_mul:0'
        out.append(helper.make_node('Mul', [a_scale, ws], [smul], base + '_quant_scales_mul'))
        out.append(helper.make_node('Mul', [cast, smul], [node.output[0]], base + '_quant_output_scale_mul'))
        self.stats['matmul_quantized'] += 1
        return out

    def run(self) -> onnx.ModelProto:
        g = self.model.graph
        nodes: list[onnx.NodeProto] = []
        for n in g.node:
            if n.op_type == 'Gemm':
                rep = self.gemm_to_matmul(n)
                if rep is None:
                    nodes.append(n)
                    continue
                for r in rep:
                    nodes.extend(self.quantize_matmul(r) if r.op_type == 'MatMul' else [r])
            elif n.op_type == 'MatMul':
                nodes.extend(self.quantize_matmul(n))
            else:
                nodes.append(n)
        del g.node[:]
        g.node.extend(nodes)
        # The float weights the rewrite replaced are no longer read by any node: drop them, as quantize_dynamic does.
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        keep = [t for t in g.initializer if t.name in used]
        del g.initializer[:]
        g.initializer.extend(keep)
        helper.set_model_props(self.model, {
            'attnode.quantization': json.dumps({
                'as': 'onnxruntime.quantization.quantize_dynamic', 'weight_type': 'QInt8', 'activation_type': 'QUInt8',
                'per_channel': self.per_channel, 'reduce_range': False, 'MatMulConstBOnly': True, **self.stats,
            }),
        })
        return self.model


def quantize_file(src: Path, dst: Path, per_channel: bool) -> dict[str, int]:
    model = onnx.load(str(src))
    r = Rewriter(model, per_channel)
    out = r.run()
    onnx.checker.check_model(out)
    dst.write_bytes(out.SerializeToString())
    return r.stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--cases', default='', help='comma-separated case ids of bench/cases/cases.json')
    ap.add_argument('--input', help='an ONNX file (instead of --cases)')
    ap.add_argument('--output', help='where to write the rewritten graph (with --input)')
    ap.add_argument('--per-channel', action='store_true', help='int8 weights per output column (default per tensor)')
    ap.add_argument('--force', action='store_true', help='rewrite outputs that are newer than their input')
    args = ap.parse_args()

    jobs: list[tuple[Path, Path]] = []
    if args.input:
        if not args.output:
            print('--input needs --output', file=sys.stderr)
            return 2
        jobs.append((Path(args.input), Path(args.output)))
    else:
        ids = [c for c in args.cases.split(',') if c]
        known = {c['id'] for c in json.loads(CASES_JSON.read_text())['cases']}
        unknown = [c for c in ids if c not in known]
        if not ids or unknown:
            print(f'--cases: give known case ids (unknown: {", ".join(unknown) or "none given"})', file=sys.stderr)
            return 2
        suffix = '.int8pc.onnx' if args.per_channel else '.int8.onnx'
        jobs = [(MODELS_DIR / f'{c}.onnx', MODELS_DIR / f'{c}{suffix}') for c in ids]
    for src, dst in jobs:
        if not src.exists():
            print(f'{src}: not found (bench models are written by scripts/export_bench_models.py)', file=sys.stderr)
            return 1
        if not args.force and dst.exists() and dst.stat().st_mtime >= src.stat().st_mtime:
            print(f'up to date: {dst}')
            continue
        stats = quantize_file(src, dst, args.per_channel)
        print(f'wrote {dst} ({json.dumps(stats)})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
