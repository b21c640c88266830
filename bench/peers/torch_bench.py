#!/usr/bin/python3
"""PyTorch 1.13 as a benchmark peer; times itself (time.perf_counter around the forward call).

Two modes (run from anywhere; Debian's /usr/bin/python3, which has torch):

    torch_bench.py serve
        A JSON-lines server on stdin/stdout, so bench/run.ts can interleave torch with the other peers:
          {"cmd": "load", "case": ID}     → {"ok": true, "torch": VERSION, "fastpath": BOOL, "maxAbsDiff": F, "rel": F,
                                             "cosine": F, "blas": {"libraries": [...], "openblasThreads": N}, "pid": PID}
          {"cmd": "threads", "n": N}      → {"ok": true, "threads": N}
          {"cmd": "run", "reps": R}       → {"ok": true, "ms": [R floats], "cpuMs": C, "wallMs": W}
                                             (C: the process's CPU time, every thread, over the R passes; W: their wall time)
          {"cmd": "output", "path": P}    → {"ok": true}   (last output written to P as raw float32)
          {"cmd": "quit"}
        Errors answer {"ok": false, "error": MSG}. Nothing else is printed on stdout.

    torch_bench.py rss ID THREADS REPS
        Loads case ID, runs it REPS times at THREADS threads and prints one JSON line: median ms and the
        process's peak RSS (VmHWM) with its RSS before the model was built.

The model runs under torch.inference_mode() with the weights not requiring grad: PyTorch's own inference
setting, in which 1.13 takes its fused fast paths where eligible (batch-first encoder layers and MHA).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def vm_kib(field: str) -> int:
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(field + ':'):
            return int(line.split()[1])
    return -1


BASE_RSS_KIB = vm_kib('VmRSS')  # before torch is imported: the interpreter alone

import torch  # noqa: E402
import torch_models as tm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'train'))
from step_torch import blas_info  # noqa: E402  (which libblas torch's products run on, and its threads)


def cpu_ms() -> float:
    """CPU time of the whole process (every thread: OpenMP's and OpenBLAS's too), ms."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return (r.ru_utime + r.ru_stime) * 1e3


class Runner:
    def __init__(self) -> None:
        self.cfg = tm.load_cases()
        self.model: torch.nn.Module | None = None
        self.args: tuple[torch.Tensor, ...] = ()
        self.last: torch.Tensor | None = None

    def load(self, case_id: str) -> dict[str, Any]:
        case = next((c for c in self.cfg['cases'] if c['id'] == case_id), None)
        if case is None:
            raise ValueError(f'unknown case {case_id!r}')
        spec = self.cfg['models'][case['model']]
        m = tm.build(spec).eval()
        tm.load_state(spec['kind'], m, tm.read_safetensors(tm.MODELS_DIR / f'{case["model"]}.safetensors'))
        for p in m.parameters():
            p.requires_grad_(False)
        io = tm.read_safetensors(tm.MODELS_DIR / f'{case_id}.io.safetensors')
        self.model = m
        self.args = tm.run_args(spec, {k: v for k, v in io.items() if k != 'output'})
        fast = probe_fastpath(lambda: self.forward())
        out = self.last
        assert out is not None
        ref = io['output']
        diff = (out - ref).abs().max().item()
        scale = ref.abs().max().item()
        cosine = torch.nn.functional.cosine_similarity(out.double().flatten(), ref.double().flatten(), dim=0).item()
        return {'torch': torch.__version__, 'fastpath': fast, 'maxAbsDiff': diff, 'rel': diff / scale if scale else diff,
                'cosine': cosine, 'openblas': openblas_core(), 'blas': blas_info(), 'pid': os.getpid()}

    def forward(self) -> None:
        assert self.model is not None
        with torch.inference_mode():
            self.last = self.model(*self.args)

    def run(self, reps: int) -> list[float]:
        return self.run_timed(reps)['ms']

    def run_timed(self, reps: int) -> dict[str, Any]:
        ms = []
        c0 = cpu_ms()
        w0 = time.perf_counter()
        for _ in range(reps):
            t0 = time.perf_counter()
            self.forward()
            ms.append((time.perf_counter() - t0) * 1e3)
        return {'ms': ms, 'cpuMs': cpu_ms() - c0, 'wallMs': (time.perf_counter() - w0) * 1e3}


def openblas_core() -> str | None:
    """The OpenBLAS kernel set torch's libblas runs (OPENBLAS_CORETYPE changes it), or None if not OpenBLAS."""
    try:
        import ctypes
        lib = ctypes.CDLL('libopenblas.so.0')
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib.openblas_get_corename().decode()
    except (OSError, AttributeError):
        return None


def probe_fastpath(fn: Any) -> bool:
    """Whether one of 1.13's fused inference kernels ran (reported, so a reader knows which torch was timed)."""
    names = ('_native_multi_head_attention', '_transformer_encoder_layer_fwd')
    saved = {n: getattr(torch, n) for n in names if hasattr(torch, n)}
    hit = [False]

    def wrap(f: Any) -> Any:
        def w(*a: Any, **k: Any) -> Any:
            hit[0] = True
            return f(*a, **k)
        return w

    try:
        for n, f in saved.items():
            setattr(torch, n, wrap(f))
        fn()
    finally:
        for n, f in saved.items():
            setattr(torch, n, f)
    return hit[0]


def set_threads(n: int) -> dict[str, Any]:
    """torch.set_num_threads sizes OpenMP's pool only; the pthreads OpenBLAS torch's products run on keeps its own
    count (by default every core: how the Zen 5 run's "1 thread" column ran on two), so it is set here too."""
    import ctypes
    torch.set_num_threads(n)
    info = blas_info()
    for lib in info['libraries']:
        if 'openblas' in lib:
            try:
                ctypes.CDLL(lib).openblas_set_num_threads(n)
            except (OSError, AttributeError):
                pass
    return {'threads': torch.get_num_threads(), 'blas': blas_info()}


def serve() -> int:
    r = Runner()
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            cmd = req['cmd']
            if cmd == 'quit':
                return 0
            if cmd == 'load':
                res = r.load(req['case'])
            elif cmd == 'threads':
                res = set_threads(int(req['n']))
            elif cmd == 'run':
                res = r.run_timed(int(req.get('reps', 1)))
            elif cmd == 'output':
                assert r.last is not None
                Path(req['path']).write_bytes(r.last.detach().float().contiguous().numpy().tobytes())
                res = {}
            else:
                raise ValueError(f'unknown command {cmd!r}')
            out = {'ok': True, **res}
        except Exception as e:  # one bad request must not kill the server: the runner reports it
            out = {'ok': False, 'error': f'{type(e).__name__}: {e}'}
        sys.stdout.write(json.dumps(out) + '\n')
        sys.stdout.flush()
    return 0


def rss(case_id: str, threads: int, reps: int) -> int:
    set_threads(threads)
    before = vm_kib('VmRSS')
    r = Runner()
    info = r.load(case_id)
    ms = r.run(reps)
    print(json.dumps({'ok': True, 'peer': 'torch', 'case': case_id, 'threads': threads, 'medianMs': statistics.median(ms),
                      'peakRssKiB': vm_kib('VmHWM'), 'baseRssKiB': before, 'interpreterRssKiB': BASE_RSS_KIB,
                      'fastpath': info['fastpath'], 'openblas': info['openblas']}))
    return 0


if __name__ == '__main__':
    if len(sys.argv) >= 2 and sys.argv[1] == 'serve':
        sys.exit(serve())
    if len(sys.argv) == 5 and sys.argv[1] == 'rss':
        sys.exit(rss(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    print(__doc__, file=sys.stderr)
    sys.exit(2)
