#!/usr/bin/python3
"""Write a MiniLM-L6-shaped BERT with random weights as a Hugging Face / sentence-transformers folder.

Usage (repository root, Debian's torch 1.13; no `transformers` package needed):

    /usr/bin/python3 bench/embeddings/make_model.py [--out bench/models/minilm-l6-random]

Shape of sentence-transformers/all-MiniLM-L6-v2: hidden 384, 6 layers, 12 heads, intermediate 1536,
512 positions, 2 token types, vocab 30522. The weights are random (seeded). The encoder is the BERT reference
implementation of scripts/gen_bert_fixtures.py (post-norm layers, erf GELU, additive key mask of finfo.min),
generalised to this shape, wrapped in an nn.Module for torch.onnx.export.

The folder holds:
  config.json (model_type bert), model.safetensors (HF key names, BertModel without prefix, with pooler),
  tokenizer.json + tokenizer_config.json (a WordPiece vocabulary of 30522 entries built here, see below),
  modules.json + 1_Pooling/config.json (mean pooling) + 2_Normalize (sentence-transformers layout),
  onnx/model.onnx (opset 17, dynamic batch and sequence axes; inputs input_ids, attention_mask,
  token_type_ids; output last_hidden_state): the layout transformers.js loads with dtype 'fp32'.

Tokenizer: no real BERT vocabulary is available offline, and the trained fixture tokenizer of
test/fixtures/tokenizers/bert-wordpiece has only 562 entries, so this builds a BERT-uncased-style WordPiece
tokenizer: the special tokens, punctuation, digits, letters and their ## continuations, the ~1000 words of
bench/embeddings/words.txt (whole-word tokens, as common words are in BERT's vocabulary), the syllables the
sentence generator uses for rare words (each as a word start and as a ## continuation, so rare words split
into several pieces) and a few suffixes, padded with [unusedN] entries to 30522 (as BERT's vocabulary has
[unusedN] entries). Normalizer, pre-tokenizer, post-processor and decoder are those of bert-base-uncased.
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / 'scripts'))
from gen_fixtures import serialize_safetensors  # noqa: E402  (the project's safetensors writer)
from gen_bert_fixtures import BERT_NAMES as NAMES, encode as encode_family  # noqa: E402  (the BERT reference)

VOCAB, E, LAYERS, HEADS, INTER, MAXPOS, TYPES, EPS = 30522, 384, 6, 12, 1536, 512, 2, 1e-12
SPECIALS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
# Keep in sync with SYLLABLES in sentences.ts (rare words are built from these).
SYLLABLES = ['ka', 'lo', 'mi', 'ren', 'tor', 'vel', 'dra', 'sin', 'quo', 'bar', 'zel', 'nim', 'pra', 'thu', 'gor', 'fen']
SUFFIXES = ['s', 'es', 'ed', 'ing', 'ly', 'er', 'est', 'ness']
PUNCT = list('!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~')


def words() -> list[str]:
    out: list[str] = []
    for line in (HERE / 'words.txt').read_text().splitlines():
        if not line.startswith('#'):
            out.extend(w for w in line.split() if w)
    return out


def build_vocab() -> dict[str, int]:
    toks: list[str] = list(SPECIALS)
    toks += PUNCT + [str(d) for d in range(10)] + [chr(c) for c in range(ord('a'), ord('z') + 1)]
    toks += ['##' + str(d) for d in range(10)] + ['##' + chr(c) for c in range(ord('a'), ord('z') + 1)]
    toks += words()
    toks += SYLLABLES + ['##' + s for s in SYLLABLES] + ['##' + s for s in SUFFIXES]
    seen: dict[str, int] = {}
    for t in toks:
        if t not in seen:
            seen[t] = len(seen)
    i = 0
    while len(seen) < VOCAB:
        seen[f'[unused{i}]'] = len(seen)
        i += 1
    return seen


def tokenizer_json(vocab: dict[str, int]) -> dict:
    added = [{'id': vocab[t], 'content': t, 'single_word': False, 'lstrip': False, 'rstrip': False, 'normalized': False, 'special': True}
             for t in SPECIALS]
    return {
        'version': '1.0', 'truncation': None, 'padding': None, 'added_tokens': added,
        'normalizer': {'type': 'BertNormalizer', 'clean_text': True, 'handle_chinese_chars': True, 'strip_accents': None, 'lowercase': True},
        'pre_tokenizer': {'type': 'BertPreTokenizer'},
        'post_processor': {
            'type': 'TemplateProcessing',
            'single': [{'SpecialToken': {'id': '[CLS]', 'type_id': 0}}, {'Sequence': {'id': 'A', 'type_id': 0}},
                       {'SpecialToken': {'id': '[SEP]', 'type_id': 0}}],
            'pair': [{'SpecialToken': {'id': '[CLS]', 'type_id': 0}}, {'Sequence': {'id': 'A', 'type_id': 0}},
                     {'SpecialToken': {'id': '[SEP]', 'type_id': 0}}, {'Sequence': {'id': 'B', 'type_id': 1}},
                     {'SpecialToken': {'id': '[SEP]', 'type_id': 1}}],
            'special_tokens': {t: {'id': t, 'ids': [vocab[t]], 'tokens': [t]} for t in ('[CLS]', '[SEP]')},
        },
        'decoder': {'type': 'WordPiece', 'prefix': '##', 'cleanup': True},
        'model': {'type': 'WordPiece', 'unk_token': '[UNK]', 'continuing_subword_prefix': '##', 'max_input_chars_per_word': 100,
                  'vocab': vocab},
    }


def make_weights(seed: int) -> dict[str, torch.Tensor]:
    """Random weights under HF BertModel key names (no prefix), scaled so activations stay O(1) (like a trained model)."""
    g = torch.Generator().manual_seed(seed)
    w: dict[str, torch.Tensor] = {}

    def lin(key: str, out_f: int, in_f: int) -> None:
        w[key + '.weight'] = torch.randn(out_f, in_f, generator=g) * (1.0 / in_f ** 0.5)
        w[key + '.bias'] = torch.randn(out_f, generator=g) * 0.02

    def ln(key: str) -> None:
        w[key + '.weight'] = 1 + 0.05 * torch.randn(E, generator=g)
        w[key + '.bias'] = 0.05 * torch.randn(E, generator=g)

    w['embeddings.word_embeddings.weight'] = torch.randn(VOCAB, E, generator=g) * 0.5
    w['embeddings.word_embeddings.weight'][0] = 0  # padding_idx row, as in trained checkpoints
    w['embeddings.position_embeddings.weight'] = torch.randn(MAXPOS, E, generator=g) * 0.1
    w['embeddings.token_type_embeddings.weight'] = torch.randn(TYPES, E, generator=g) * 0.1
    ln('embeddings.LayerNorm')
    for l in range(LAYERS):
        p = f'encoder.layer.{l}.'
        for n in ('q', 'k', 'v', 'o'):
            lin(p + NAMES[n], E, E)
        lin(p + NAMES['i'], INTER, E)
        lin(p + NAMES['out'], E, INTER)
        ln(p + NAMES['ln1'])
        ln(p + NAMES['ln2'])
    lin('pooler.dense', E, E)
    return w


def encode(w: dict, ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
    """last_hidden_state [B, L, E] of BertModel at this shape: scripts/gen_bert_fixtures.py's reference."""
    return encode_family(w, '', 'bert', ids, mask, types, 0, E=E, LAYERS=LAYERS, HEADS=HEADS, EPS=EPS)


class Bert(torch.nn.Module):
    def __init__(self, w: dict[str, torch.Tensor]):
        super().__init__()
        self.keys = list(w)
        for i, k in enumerate(self.keys):
            self.register_buffer(f'w{i}', w[k])

    def forward(self, input_ids, attention_mask, token_type_ids):
        w = {k: getattr(self, f'w{i}') for i, k in enumerate(self.keys)}
        return encode(w, input_ids, attention_mask, token_type_ids)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default=str(ROOT / 'bench' / 'models' / 'minilm-l6-random'))
    ap.add_argument('--seed', type=int, default=384)
    args = ap.parse_args()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    (out / 'onnx').mkdir(parents=True)
    (out / '1_Pooling').mkdir()
    (out / '2_Normalize').mkdir()

    vocab = build_vocab()
    assert len(vocab) == VOCAB
    (out / 'tokenizer.json').write_text(json.dumps(tokenizer_json(vocab), ensure_ascii=False) + '\n')
    (out / 'tokenizer_config.json').write_text(json.dumps({
        'tokenizer_class': 'BertTokenizer', 'do_lower_case': True, 'model_max_length': MAXPOS, 'padding_side': 'right',
        'pad_token': '[PAD]', 'unk_token': '[UNK]', 'cls_token': '[CLS]', 'sep_token': '[SEP]', 'mask_token': '[MASK]',
        'clean_up_tokenization_spaces': True, 'tokenize_chinese_chars': True, 'strip_accents': None}, indent=2) + '\n')
    (out / 'config.json').write_text(json.dumps({
        'architectures': ['BertModel'], 'model_type': 'bert', 'vocab_size': VOCAB, 'hidden_size': E, 'num_hidden_layers': LAYERS,
        'num_attention_heads': HEADS, 'intermediate_size': INTER, 'hidden_act': 'gelu', 'hidden_dropout_prob': 0.1,
        'attention_probs_dropout_prob': 0.1, 'max_position_embeddings': MAXPOS, 'type_vocab_size': TYPES, 'initializer_range': 0.02,
        'layer_norm_eps': EPS, 'pad_token_id': 0, 'position_embedding_type': 'absolute', 'torch_dtype': 'float32',
        'transformers_version': '4.8.2'}, indent=2) + '\n')
    (out / 'modules.json').write_text(json.dumps([
        {'idx': 0, 'name': '0', 'path': '', 'type': 'sentence_transformers.models.Transformer'},
        {'idx': 1, 'name': '1', 'path': '1_Pooling', 'type': 'sentence_transformers.models.Pooling'},
        {'idx': 2, 'name': '2', 'path': '2_Normalize', 'type': 'sentence_transformers.models.Normalize'}], indent=2) + '\n')
    (out / '1_Pooling' / 'config.json').write_text(json.dumps({
        'word_embedding_dimension': E, 'pooling_mode_cls_token': False, 'pooling_mode_mean_tokens': True,
        'pooling_mode_max_tokens': False, 'pooling_mode_mean_sqrt_len_tokens': False}, indent=2) + '\n')

    w = make_weights(args.seed)
    (out / 'model.safetensors').write_bytes(serialize_safetensors({k: v.contiguous() for k, v in w.items()}, {'format': 'pt'}))

    model = Bert({k: v for k, v in w.items() if not k.startswith('pooler.')}).eval()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 1000, (2, 9), generator=g)
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 6:] = 0
    ids[1, 6:] = 0
    types = torch.zeros(2, 9, dtype=torch.long)
    with torch.no_grad():
        torch.onnx.export(model, (ids, mask, types), str(out / 'onnx' / 'model.onnx'), opset_version=17,
                          input_names=['input_ids', 'attention_mask', 'token_type_ids'], output_names=['last_hidden_state'],
                          dynamic_axes={'input_ids': {0: 'batch_size', 1: 'sequence_length'},
                                        'attention_mask': {0: 'batch_size', 1: 'sequence_length'},
                                        'token_type_ids': {0: 'batch_size', 1: 'sequence_length'},
                                        'last_hidden_state': {0: 'batch_size', 1: 'sequence_length'}},
                          do_constant_folding=True)
        # A PyTorch reference at another shape than the export's (for checking the dynamic axes by hand; run.ts compares the two peers).
        ids2 = torch.randint(5, 1000, (3, 17), generator=g)
        mask2 = torch.ones(3, 17, dtype=torch.long)
        mask2[2, 11:] = 0
        ids2[2, 11:] = 0
        h2 = model(ids2, mask2, torch.zeros_like(ids2))
    (out / 'reference.json').write_text(json.dumps({
        'producer': 'bench/embeddings/make_model.py', 'torch_version': torch.__version__, 'seed': args.seed,
        'input_ids': ids2.tolist(), 'attention_mask': mask2.tolist(), 'last_hidden_state': [round(float(v), 6) for v in h2.reshape(-1)],
    }) + '\n')
    for p in sorted(out.rglob('*')):
        if p.is_file():
            print(f'{p.stat().st_size:>10}  {p}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
