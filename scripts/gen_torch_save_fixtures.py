#!/usr/bin/python3
"""Generate the torch.save fixtures: test/fixtures/torch_save/ and the pytorch_model.bin model folders.

Usage (from the repository root, with Debian's torch 1.13; no `transformers` needed):

    /usr/bin/python3 scripts/gen_torch_save_fixtures.py           # write every file, print sizes
    /usr/bin/python3 scripts/gen_torch_save_fixtures.py --check   # exit 1 if any file would change

test/fixtures/torch_save/ (read by test/torch-save.test.ts):
- dtypes.pt: an OrderedDict state dict with one tensor per dtype torch.save writes (float32, float16, bfloat16,
  float64, int64, int32, int16, int8, uint8, bool), a 0-d and an empty tensor, and OrderedDict `_metadata`
  (what nn.Module.state_dict() carries; the pickle's BUILD).
- views.pt: tensors sharing one storage: the same tensor under two keys, a transpose, a row (storage offset), a
  column block (offset + non-contiguous), a strided slice, an expanded (stride 0) tensor, a transposed int64 and
  bfloat16 tensor, and an nn.Parameter (torch._utils._rebuild_parameter).
- nested.pt: a training checkpoint {'state_dict': ..., 'epoch': 7, 'hparams': {...}, 'optimizer': {...},
  'model': {'ema': {...}}} with int dict keys, lists and non-tensor values.
- legacy.pt: views.pt's object with `_use_new_zipfile_serialization=False` (the pre-1.6 format).
- protocol4.pt: dtypes.pt's object with `pickle_protocol=4` (FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL).
- zip64.pt: views.pt re-zipped by Python's zipfile with ZIP64 records forced everywhere (end record, locator,
  central and local extra fields) and unaligned data; torch.load reads it (checked here).
- big_endian.pt: views.pt as a big-endian machine writes it (torch >= 2.1): a `byteorder` record saying `big` and
  every storage byte-swapped.
- deflated.pt: views.pt re-zipped with deflate compression (torch never writes that; the reader must refuse it).
- os_system.pt: a real torch.save file whose object holds, next to a tensor, an object whose __reduce__ is
  os.system (the classic malicious pickle). Never loaded here; the reader must refuse 'posix.system' by name.
- int64_range.pt: an int64 tensor holding 2^40 (outside int32) next to one that fits.
- torchscript.pt: torch.jit.save of a scripted nn.Linear (a TorchScript archive, not a torch.save file).
- expected.safetensors: for every tensor of the files above, `<file>/<key>` = its values as torch.load returns
  them, made contiguous (floats as F32 after torch's own conversion, integers as I64, bool as BOOL).
  `__metadata__` holds `strides` (JSON: `<file>/<key>` → torch's strides of the loaded tensor) and `shares`
  (JSON: groups of keys whose tensors share one storage).

Model folders in test/fixtures/hf/ (read by test/torch-save-models.test.ts), made from the safetensors folders
written by gen_bert_fixtures.py, gen_gpt2_fixtures.py and gen_llama_fixtures.py, whose reference.json they are
tested against. Each is config.json + tokenizer files of its source folder + the weights as save_pretrained(...,
safe_serialization=False) writes them:
- bert-mlm-bin: pytorch_model.bin, the tied decoder weight the same tensor as the word embeddings (one storage).
- gpt2-tiny-bin-sharded: pytorch_model.bin.index.json + pytorch_model-0000{1,2}-of-00002.bin.
- llama3-bf16-tied-bin: pytorch_model.bin with bfloat16 storages, every projection weight stored as a transposed
  view (non-contiguous strides) of a [in, out] buffer.
This script checks that torch.load of each written file gives exactly the safetensors tensors, and reruns the
reference modules of the three generators on the loaded weights against their reference.json.

torch.save output is deterministic for a given torch version, so regenerating gives byte-identical files (the
legacy format after legacy_keys_renamed; torchscript.pt is compared by its record names only).
"""
import argparse
import collections
import io
import json
import os
import pickle
import struct
import sys
import tempfile
import zipfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_fixtures import ST_DTYPES, serialize_safetensors  # noqa: E402  (the project's safetensors writer)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / 'test' / 'fixtures' / 'torch_save'
HF = ROOT / 'test' / 'fixtures' / 'hf'
ST_TO_TORCH = {name: dtype for dtype, (name, _) in ST_DTYPES.items()}
ZIP_DATE = (2020, 1, 1, 0, 0, 0)


class Files:
    """Collects every output file's bytes, then writes them or compares them with the files on disk."""

    def __init__(self) -> None:
        self.files: dict[Path, bytes] = {}
        self.by_names: set[Path] = set()

    def add(self, path: Path, data: bytes, compare_names_only: bool = False) -> None:
        self.files[path] = data
        if compare_names_only:
            self.by_names.add(path)

    def same(self, path: Path, data: bytes) -> bool:
        if not path.exists():
            return False
        if path in self.by_names:
            return zipfile.ZipFile(path).namelist() == zipfile.ZipFile(io.BytesIO(data)).namelist()
        return path.read_bytes() == data

    def finish(self, check: bool) -> int:
        bad = []
        for path, data in self.files.items():
            if check:
                if not self.same(path, data):
                    bad.append(path)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            print(f'{len(data):>9}  {path.relative_to(ROOT)}')
        for path in bad:
            print(f'differs: {path.relative_to(ROOT)}', file=sys.stderr)
        return 1 if bad else 0


def saved(obj, name: str, **kw) -> bytes:
    """torch.save(obj) as written to a file called `name` (torch names the archive folder after the file's stem)."""
    with tempfile.TemporaryDirectory() as scratch:
        p = Path(scratch) / name
        torch.save(obj, p, **kw)
        return p.read_bytes()


LEGACY_ITEM_SIZES = {'FloatStorage': 4, 'DoubleStorage': 8, 'HalfStorage': 2, 'BFloat16Storage': 2, 'LongStorage': 8,
                     'IntStorage': 4, 'ShortStorage': 2, 'CharStorage': 1, 'ByteStorage': 1, 'BoolStorage': 1}


def legacy_keys_renamed(data: bytes) -> bytes:
    """A legacy file made reproducible. Its storage keys are str(storage._cdata), memory addresses that change on
    every run, and the storages follow the object in the sorted order of those keys. Here each key is renamed to
    its rank of first appearance in the object (zero-padded), and the key list and the storages are rewritten in
    the sorted order of the new keys, exactly as torch writes them; the bytes of the object and of each storage are
    torch's own."""
    pids = []

    class Dict(dict):
        pass

    class Reader(pickle.Unpickler):
        def find_class(self, module, name):
            if name.endswith('Storage'):
                return name
            return Dict if name == 'OrderedDict' else (lambda *args: None)

        def persistent_load(self, pid):
            pids.append(pid)
            return pid
    f = io.BytesIO(data)
    for _ in range(4):  # magic number, protocol version, system info, the object
        Reader(f).load()
    head_end = f.tell()
    keys = Reader(f).load()
    pos = f.tell()
    item = {pid[2]: LEGACY_ITEM_SIZES[pid[1]] for pid in pids}
    blobs = {}
    for key in keys:  # each storage: int64 element count, then the elements
        count = struct.unpack('<q', data[pos:pos + 8])[0]
        blobs[key] = data[pos:pos + 8 + count * item[key]]
        pos += 8 + count * item[key]
    assert pos == len(data)
    order = list(dict.fromkeys(pid[2] for pid in pids))
    width = len(str(len(order)))
    new = {old: str(i).zfill(width) for i, old in enumerate(order)}
    head = data[:head_end]
    for old, name in new.items():
        pattern = b'X' + struct.pack('<I', len(old)) + old.encode()
        assert head.count(pattern) >= 1, old
        head = head.replace(pattern, b'X' + struct.pack('<I', len(name)) + name.encode())
    renamed = sorted(new, key=lambda old: new[old])
    return head + pickle.dumps([new[old] for old in renamed], protocol=2) + b''.join(blobs[old] for old in renamed)


def load_bytes(data: bytes):
    return torch.load(io.BytesIO(data))


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (the fixtures' own format), as torch tensors of the stored dtype."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], 'little')
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        b, e = info['data_offsets']
        dtype = ST_TO_TORCH[info['dtype']]
        chunk = bytearray(data[b:e])
        t = torch.frombuffer(chunk, dtype=dtype) if chunk else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info['shape']).clone()
    return out


def rezip(data: bytes, compression: int = zipfile.ZIP_STORED, zip64: bool = False,
          replace: dict[str, bytes] | None = None, add: dict[str, bytes] | None = None) -> bytes:
    """The archive's records rewritten by Python's zipfile (no alignment padding), optionally ZIP64 throughout."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    saved_limits = (zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT)
    if zip64:
        # Python writes ZIP64 records only past the limits: lower them so every record and the end use ZIP64.
        zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT = 0, 0
    try:
        with zipfile.ZipFile(out, 'w', compression=compression) as dst:
            for info in src.infolist():
                body = (replace or {}).get(info.filename, src.read(info.filename))
                zi = zipfile.ZipInfo(info.filename, date_time=ZIP_DATE)
                zi.compress_type = compression
                with dst.open(zi, 'w', force_zip64=zip64) as f:
                    f.write(body)
            for name, body in (add or {}).items():
                zi = zipfile.ZipInfo(name, date_time=ZIP_DATE)
                zi.compress_type = compression
                with dst.open(zi, 'w', force_zip64=zip64) as f:
                    f.write(body)
    finally:
        zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT = saved_limits
    return out.getvalue()


def big_endian(data: bytes, obj: dict) -> bytes:
    """The archive as a big-endian machine writes it: each storage's elements byte-swapped, byteorder 'big'."""
    src = zipfile.ZipFile(io.BytesIO(data))
    prefix = src.namelist()[0].split('/')[0]
    # The storage key of each tensor comes from the pickle's persistent ids, in the order torch assigns them.
    keys: dict[int, str] = {}
    for t in obj.values():
        keys.setdefault(t.storage().data_ptr(), str(len(keys)))
    sizes = {keys[t.storage().data_ptr()]: t.element_size() for t in obj.values()}
    replace = {}
    for key, item in sizes.items():
        name = f'{prefix}/data/{key}'
        raw = src.read(name)
        replace[name] = b''.join(raw[i:i + item][::-1] for i in range(0, len(raw), item))
    return rezip(data, replace=replace, add={f'{prefix}/byteorder': b'big'})


class Evil:
    """A pickle that would run a shell command on load (the reader must refuse it unread)."""

    def __reduce__(self):
        return (os.system, ('echo attnode-must-never-run-this',))


def as_expected(t: torch.Tensor) -> torch.Tensor:
    """What attnode's reader returns for a loaded tensor, contiguous: floats as float32, ints as int64 (I64)."""
    t = t.detach().contiguous()
    if t.dtype in (torch.float16, torch.bfloat16, torch.float64):
        return t.float()
    if t.dtype in (torch.int32, torch.int16, torch.int8, torch.uint8):
        return t.long()
    return t


def unit_fixtures(files: Files) -> None:
    torch.manual_seed(0)
    dtypes = collections.OrderedDict()
    dtypes['f32'] = torch.randn(3, 4)
    dtypes['f16'] = torch.tensor([1.0, -2.5, 65504.0, 6.1e-5, 5.96e-8, float('inf'), -0.0, 0.1], dtype=torch.float16)
    dtypes['bf16'] = torch.tensor([1.0, -2.5, 3.0e38, 1e-38, float('-inf'), 0.1, 7.0, -0.0], dtype=torch.bfloat16)
    dtypes['f64'] = torch.tensor([1.0, 1 / 3, -1e300 * 0, 2.0 ** -149, 123456.789], dtype=torch.float64)
    dtypes['i64'] = torch.tensor([0, -1, 2 ** 31 - 1, -2 ** 31, 42], dtype=torch.int64)
    dtypes['i32'] = torch.tensor([[7, -8], [2 ** 31 - 1, -2 ** 31]], dtype=torch.int32)
    dtypes['i16'] = torch.tensor([-32768, 32767, 5], dtype=torch.int16)
    dtypes['i8'] = torch.tensor([-128, 127, 0], dtype=torch.int8)
    dtypes['u8'] = torch.tensor([0, 255, 17], dtype=torch.uint8)
    dtypes['bool'] = torch.tensor([True, False, True])
    dtypes['scalar'] = torch.tensor(2.5)
    dtypes['empty'] = torch.zeros(0, 3)
    dtypes._metadata = collections.OrderedDict({'': {'version': 1}, 'layer': {'version': 2}})

    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 8
    ids = torch.arange(12, dtype=torch.int64).reshape(3, 4) - 5
    half = torch.randn(3, 5).to(torch.bfloat16)
    views = collections.OrderedDict()
    views['w'] = base
    views['w_tied'] = base
    views['w_t'] = base.t()
    views['w_row'] = base[2]
    views['w_cols'] = base[:, 2:5]
    views['w_step'] = base[::2, ::3]
    views['expanded'] = torch.tensor([1.0, 2.0, 3.0]).expand(2, 3)
    views['ids_t'] = ids.t()
    views['bf16_t'] = half.t()
    views['param'] = torch.nn.Parameter(torch.randn(2, 2))

    nested = {
        'state_dict': collections.OrderedDict([('enc.weight', torch.randn(2, 3)), ('enc.bias', torch.randn(2))]),
        'epoch': 7,
        'hparams': {'lr': 0.001, 'name': 'tiny', 'layers': [2, 3], 'flags': (True, None)},
        'optimizer': {'state': {0: {'step': 10, 'exp_avg': torch.randn(2, 3)}}, 'param_groups': [{'params': [0], 'lr': 0.1}]},
        'model': {'ema': {'w': torch.randn(4)}},
        'history': [torch.tensor([0.5]), torch.tensor([0.25])],
    }

    written = {
        'dtypes.pt': (saved(dtypes, 'dtypes.pt'), dtypes),
        'views.pt': (saved(views, 'views.pt'), views),
        'nested.pt': (saved(nested, 'nested.pt'), nested),
        'legacy.pt': (legacy_keys_renamed(saved(views, 'legacy.pt', _use_new_zipfile_serialization=False)), views),
        'protocol4.pt': (saved(dtypes, 'protocol4.pt', pickle_protocol=4), dtypes),
    }
    v = written['views.pt'][0]
    written['zip64.pt'] = (rezip(v, zip64=True), views)
    written['big_endian.pt'] = (big_endian(v, views), views)
    written['deflated.pt'] = (rezip(v, compression=zipfile.ZIP_DEFLATED), None)
    written['os_system.pt'] = (saved({'w': torch.ones(2), 'payload': Evil()}, 'os_system.pt'), None)
    written['int64_range.pt'] = (saved({'ok': torch.tensor([1, -2]), 'big': torch.tensor([3, 2 ** 40, 5])}, 'int64_range.pt'), None)
    torch.manual_seed(1)
    script = io.BytesIO()
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), script)
    written['torchscript.pt'] = (script.getvalue(), None)

    expected: dict[str, torch.Tensor] = {}
    strides: dict[str, list[int]] = {}
    shares: list[list[str]] = []
    for fname, (data, obj) in written.items():
        # TorchScript's generated code varies between runs (module attributes in another order): --check compares
        # only its record names.
        files.add(OUT / fname, data, compare_names_only=fname == 'torchscript.pt')
        if obj is None or fname == 'big_endian.pt':  # torch 1.13 cannot read a big-endian archive
            continue
        loaded = load_bytes(data)
        flat: dict[str, torch.Tensor] = {}

        def walk(x, path: str) -> None:
            if isinstance(x, torch.Tensor):
                flat[path] = x
            elif isinstance(x, dict):
                for k, item in x.items():
                    walk(item, f'{path}.{k}' if path else str(k))
            elif isinstance(x, (list, tuple)):
                for i, item in enumerate(x):
                    walk(item, f'{path}.{i}' if path else str(i))
        walk(loaded, '')
        by_storage: dict[int, list[str]] = {}
        for key, t in flat.items():
            # torch.load must give back what was saved.
            src = obj
            for part in key.split('.') if fname != 'nested.pt' else []:
                src = src[part]
            if fname != 'nested.pt':
                assert torch.equal(src, t), (fname, key)
            expected[f'{fname}/{key}'] = as_expected(t)
            strides[f'{fname}/{key}'] = list(t.stride())
            by_storage.setdefault(t.storage().data_ptr(), []).append(f'{fname}/{key}')
        shares += [g for g in by_storage.values() if len(g) > 1]
    # The big-endian file holds views.pt's tensors.
    for key in list(expected):
        if key.startswith('views.pt/'):
            expected['big_endian.pt/' + key[len('views.pt/'):]] = expected[key]
            strides['big_endian.pt/' + key[len('views.pt/'):]] = strides[key]
    shares += [['big_endian.pt/' + k[len('views.pt/'):] for k in g] for g in shares if g[0].startswith('views.pt/')]
    files.add(OUT / 'expected.safetensors', serialize_safetensors(expected, {
        'strides': json.dumps(strides, sort_keys=True), 'shares': json.dumps(sorted(shares)),
        'producer': 'scripts/gen_torch_save_fixtures.py', 'torch_version': torch.__version__}))


def copy_folder_files(src: str, dst: str, files: Files) -> None:
    for p in sorted((HF / src).iterdir()):
        if p.is_file() and p.name not in ('model.safetensors', 'reference.json'):
            files.add(HF / dst / p.name, p.read_bytes())


def check_same(path: str, loaded: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert set(loaded) == set(want), (path, set(loaded) ^ set(want))
    for k, t in want.items():
        assert loaded[k].dtype == t.dtype and torch.equal(loaded[k], t), (path, k)


def close(got: torch.Tensor, want: list, what: str) -> None:
    diff = (got.reshape(-1) - torch.tensor(want).reshape(-1)).abs().max().item()
    assert diff < 1e-5, f'{what}: the reference module on the loaded weights differs from reference.json by {diff}'
    print(f'   {what}: reference.json reproduced from the saved weights (max diff {diff:.1e})')


def model_folders(files: Files) -> None:
    import gen_bert_fixtures as bert
    import gen_gpt2_fixtures as gpt2
    import gen_llama_fixtures as llama

    # BERT masked LM: the decoder weight is the word embedding tensor itself, as BertForMaskedLM.state_dict() has it.
    w = read_safetensors(HF / 'bert-mlm' / 'model.safetensors')
    assert torch.equal(w['cls.predictions.decoder.weight'], w['bert.embeddings.word_embeddings.weight'])
    w['cls.predictions.decoder.weight'] = w['bert.embeddings.word_embeddings.weight']
    sd = collections.OrderedDict(sorted(w.items()))
    data = saved(sd, 'pytorch_model.bin')
    loaded = load_bytes(data)
    check_same('bert-mlm-bin', loaded, read_safetensors(HF / 'bert-mlm' / 'model.safetensors'))
    assert loaded['cls.predictions.decoder.weight'].storage().data_ptr() == loaded['bert.embeddings.word_embeddings.weight'].storage().data_ptr()
    ref = json.loads((HF / 'bert-mlm' / 'reference.json').read_text())
    with torch.no_grad():
        h = bert.encode(loaded, 'bert.', 'bert', torch.tensor(ref['input_ids']), torch.tensor(ref['attention_mask']),
                        torch.tensor(ref['token_type_ids']), 0)
    close(h, ref['last_hidden_state'], 'bert-mlm-bin last_hidden_state')
    files.add(HF / 'bert-mlm-bin' / 'pytorch_model.bin', data)
    copy_folder_files('bert-mlm', 'bert-mlm-bin', files)

    # GPT-2 in two shards with their index, as save_pretrained(max_shard_size=...) writes them.
    w = read_safetensors(HF / 'gpt2-tiny' / 'model.safetensors')
    first = [k for k in sorted(w) if k.startswith(('transformer.wte', 'transformer.wpe', 'transformer.h.0.'))]
    second = [k for k in sorted(w) if k not in first]
    names = ['pytorch_model-00001-of-00002.bin', 'pytorch_model-00002-of-00002.bin']
    weight_map = {}
    total = 0
    all_loaded = {}
    for name, keys in zip(names, (first, second)):
        sd = collections.OrderedDict((k, w[k]) for k in keys)
        data = saved(sd, name)
        all_loaded.update(load_bytes(data))
        files.add(HF / 'gpt2-tiny-bin-sharded' / name, data)
        weight_map.update({k: name for k in keys})
        total += sum(t.numel() * t.element_size() for t in sd.values())
    check_same('gpt2-tiny-bin-sharded', all_loaded, w)
    index = {'metadata': {'total_size': total}, 'weight_map': dict(sorted(weight_map.items()))}
    files.add(HF / 'gpt2-tiny-bin-sharded' / 'pytorch_model.bin.index.json', (json.dumps(index, indent=2) + '\n').encode())
    copy_folder_files('gpt2-tiny', 'gpt2-tiny-bin-sharded', files)
    ref = json.loads((HF / 'gpt2-tiny' / 'reference.json').read_text())
    cfg = json.loads((HF / 'gpt2-tiny' / 'config.json').read_text())
    with torch.no_grad():
        logits = gpt2.gpt2_logits(all_loaded, cfg, torch.tensor([ref['input_ids']]), torch.ones(1, len(ref['input_ids']), dtype=torch.long))
    close(logits, ref['logits'], 'gpt2-tiny-bin-sharded logits')

    # Llama 3 in bfloat16 with a tied head; projection weights stored as transposed views (non-contiguous).
    w = read_safetensors(HF / 'llama3-bf16-tied' / 'model.safetensors')
    sd = collections.OrderedDict()
    for k in sorted(w):
        t = w[k]
        sd[k] = t.t().contiguous().t() if k.endswith('_proj.weight') else t
    assert any(not t.is_contiguous() for t in sd.values())
    data = saved(sd, 'pytorch_model.bin')
    loaded = load_bytes(data)
    check_same('llama3-bf16-tied-bin', loaded, w)
    assert all(t.dtype == torch.bfloat16 for t in loaded.values())
    ref = json.loads((HF / 'llama3-bf16-tied' / 'reference.json').read_text())
    cfg = json.loads((HF / 'llama3-bf16-tied' / 'config.json').read_text())
    with torch.no_grad():
        logits = llama.hf_llama_logits({k: v.float() for k, v in loaded.items()}, cfg, ref['input_ids'], False)
    close(logits, ref['logits'], 'llama3-bf16-tied-bin logits')
    files.add(HF / 'llama3-bf16-tied-bin' / 'pytorch_model.bin', data)
    copy_folder_files('llama3-bf16-tied', 'llama3-bf16-tied-bin', files)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--check', action='store_true', help='compare with the files on disk instead of writing')
    args = ap.parse_args()
    torch.set_num_threads(1)
    files = Files()
    unit_fixtures(files)
    model_folders(files)
    return files.finish(args.check)


if __name__ == '__main__':
    sys.exit(main())
