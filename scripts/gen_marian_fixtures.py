#!/usr/bin/python3
"""Generate the MarianMT Hugging Face folders in test/fixtures/hf/marian-*.

Usage (from the repository root, with Debian's torch 1.13 and numpy):

    /usr/bin/python3 scripts/gen_marian_fixtures.py

Each folder is what transformers' `save_pretrained` writes for a tiny random
`MarianMTModel` (config.json, model.safetensors, generation_config.json when
the model has one), with a Marian-style tokenizer: the Unigram + Metaspace
`tokenizer.json` of test/fixtures/tokenizers/marian-unigram (trained by Hugging
Face's Rust `tokenizers`; `</s>` = 0 appended to every source, `<unk>` = 1,
`<pad>` = 2, which Marian also uses as the decoder start token). The model
inputs are the ids that the Rust library computed for those texts
(test/fixtures/tokenizers/refs/marian-unigram.json), so nothing here depends
on attnode.

reference.json holds, for a right-padded batch of three source texts:

- `encoder_last_hidden_state` and `logits` for given decoder input ids (a
  full forward, causal decoder self-attention), and `masked_logits` for the
  same ids with a right-padding `decoder_attention_mask` (compare the token
  positions: what a padding query attends to differs between
  implementations, and its output is never used);
- `generate` cases: greedy and beam search the way transformers' `generate`
  runs an encoder-decoder (scripts/gen_beam_fixtures.py's `greedy_search` /
  `beam_search` and logits processors, over this script's decoder: the
  decoder starts with `decoder_start_token_id`, every row of an input reads
  its encoder output, `bad_words_ids` [[pad]] banned, `forced_eos_token_id`
  forced at the length limit, finished rows padded with `pad_token_id`),
  recomputing the whole decoder at every step (no cache, so independent of
  attnode's), for the padded batch and for each text alone, with explicit
  options and with the folder's own generation defaults. Each case is
  checked robust to logit noise of 2e-4.

The model is written here from the published architecture (transformers'
modeling_marian: sinusoidal positions with sin in the first half and cos in
the second half of each vector, no padding offset; embeddings scaled by
sqrt(d_model) when `scale_embedding`; post-norm encoder and decoder layers;
q scaled by head_dim^-0.5; additive masks filled with float32's minimum;
`lm_head` + `final_logits_bias`), not from attnode.

Folders:

- marian-tiny: swish, shared and tied embeddings, scale_embedding, 2 + 2
  layers, 4 heads; stores only `model.shared.weight` (what safetensors
  saving keeps of the tied copies) and no position tables (transformers
  leaves them out when saving); generation_config.json with num_beams 4 and
  max_length 20; final_logits_bias favours `</s>` so rows end at different
  steps.
- marian-tiny-bin: marian-tiny's model as pytorch_model.bin (torch.save, with
  every tied copy and the position tables, as transformers 4.x saved it),
  with its config files; the tests check it against marian-tiny's reference.
- marian-opus-spm: the layout of a real opus-mt folder, for the SentencePiece
  tokenizer of test/fixtures/spm/marian-en-de (source.spm, target.spm,
  vocab.json, which the tests put beside the model files; ids and target-side
  decodes from the sentencepiece library with MarianTokenizer's rules,
  scripts/gen_spm_refs.py), `<pad>` the last id (the
  decoder start and the bad word), max_length as large as the positions;
  reference.json adds `translations`, each case's outputs as the translation
  pipeline's texts.
- marian-gelu-unshared: gelu, separate encoder/decoder embeddings
  (`share_encoder_decoder_embeddings` false) and an untied `lm_head`
  (`tie_word_embeddings` false), no embedding scale, 3 encoder and 2 decoder
  layers with different heads and feed-forward sizes; stores the position
  tables (as older pytorch_model.bin files did); no generation_config.json
  (generation defaults come from config.json).
"""
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_fixtures import serialize_safetensors  # noqa: E402  (the project's safetensors writer)
from gen_beam_fixtures import beam_search, greedy_search  # noqa: E402  (transformers' generate, re-implemented)
from gen_spm_refs import Marian as MarianTokenizer  # noqa: E402  (transformers' MarianTokenizer over sentencepiece)

ROOT = Path(__file__).resolve().parent.parent
HF_OUT = ROOT / 'test' / 'fixtures' / 'hf'
TOK_DIR = ROOT / 'test' / 'fixtures' / 'tokenizers' / 'marian-unigram'
TOK_REFS = ROOT / 'test' / 'fixtures' / 'tokenizers' / 'refs' / 'marian-unigram.json'
SPM_DIR = ROOT / 'test' / 'fixtures' / 'spm' / 'marian-en-de'

EOS, UNK, PAD = 0, 1, 2
# Source texts of the batch (their ids come from the Rust tokenizer's references).
TEXTS = ['The quick brown fox jumps over the lazy dog.', 'Hello world', 'Привет, мир!']
SPM_TEXTS = ['The quick brown fox jumps over the lazy dog.', 'Hello world', 'Der schnelle braune Fuchs springt über den Hund.']


class Tokenizer:
    """A tokenizer for a fixture folder: the files copied into it, the source ids of texts and (when an
    independent implementation exists) the text of output ids as the translation pipeline decodes them."""

    def __init__(self, files, texts, ids, decode=None):
        self.files, self.texts, self.ids, self.decode = files, texts, ids, decode


def unigram_tokenizer() -> Tokenizer:
    """The Unigram + Metaspace tokenizer.json, ids from the Rust library's references."""
    refs = {t['text']: t['ids'] for t in json.loads(TOK_REFS.read_text())['texts']}
    return Tokenizer([TOK_DIR / f for f in ('tokenizer.json', 'tokenizer_config.json')], TEXTS, lambda t: refs[t])


def spm_tokenizer() -> Tokenizer:
    """An opus-mt tokenizer folder (source.spm, target.spm, vocab.json), ids and target-side decodes from
    sentencepiece with MarianTokenizer's rules (scripts/gen_spm_refs.py)."""
    tok = MarianTokenizer(str(SPM_DIR), False)
    # Not copied (480 KB of .spm files twice): the tests assemble the folder with SPM_DIR's files beside.
    return Tokenizer([], SPM_TEXTS, tok.encode, lambda ids: tok.decode(ids, skip_special=True))
NEG = torch.finfo(torch.float32).min


def sinusoidal(n_pos: int, dim: int) -> torch.Tensor:
    """MarianSinusoidalPositionalEmbedding._init_weight: sin in the first half, cos in the second."""
    enc = np.array([[pos / np.power(10000, 2 * (j // 2) / dim) for j in range(dim)] for pos in range(n_pos)])
    out = torch.empty(n_pos, dim)
    sentinel = dim // 2 if dim % 2 == 0 else dim // 2 + 1
    out[:, 0:sentinel] = torch.FloatTensor(np.sin(enc[:, 0::2]))
    out[:, sentinel:] = torch.FloatTensor(np.cos(enc[:, 1::2]))
    return out


def act(x: torch.Tensor, name: str) -> torch.Tensor:
    if name in ('swish', 'silu'):
        return x * torch.sigmoid(x)
    if name == 'gelu':
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    if name == 'relu':
        return torch.relu(x)
    raise ValueError(name)


class Marian:
    """MarianMTModel's forward from its weights (HF key names) and config."""

    def __init__(self, w: dict, cfg: dict) -> None:
        self.w, self.cfg = w, cfg
        self.E = cfg['d_model']
        self.scale = math.sqrt(self.E) if cfg['scale_embedding'] else 1.0
        self.pos = sinusoidal(cfg['max_position_embeddings'], self.E)
        shared = cfg['share_encoder_decoder_embeddings']
        self.enc_emb = w['model.shared.weight'] if shared else w['model.encoder.embed_tokens.weight']
        self.dec_emb = w['model.shared.weight'] if shared else w['model.decoder.embed_tokens.weight']
        self.head = self.dec_emb if cfg['tie_word_embeddings'] else w['lm_head.weight']

    def lin(self, x, p):
        return x @ self.w[p + '.weight'].T + self.w[p + '.bias']

    def ln(self, x, p):
        return torch.nn.functional.layer_norm(x, (self.E,), self.w[p + '.weight'], self.w[p + '.bias'], 1e-5)

    def attention(self, p, x, kv, mask, heads):
        """MarianAttention: q scaled by head_dim^-0.5, additive mask [B, 1, T, S]."""
        B, T, _ = x.shape
        S = kv.shape[1]
        hd = self.E // heads
        q = (self.lin(x, p + '.q_proj') * hd ** -0.5).view(B, T, heads, hd).transpose(1, 2)
        k = self.lin(kv, p + '.k_proj').view(B, S, heads, hd).transpose(1, 2)
        v = self.lin(kv, p + '.v_proj').view(B, S, heads, hd).transpose(1, 2)
        scores = q @ k.transpose(-1, -2)
        if mask is not None:
            scores = scores + mask
        a = torch.softmax(scores, dim=-1) @ v
        return self.lin(a.transpose(1, 2).reshape(B, T, self.E), p + '.out_proj')

    def ffn(self, p, h):
        return self.lin(act(self.lin(h, p + '.fc1'), self.cfg['activation_function']), p + '.fc2')

    def encode(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, S = ids.shape
        h = self.enc_emb[ids] * self.scale + self.pos[:S]
        add = torch.where(mask[:, None, None, :] == 0, torch.tensor(NEG), torch.tensor(0.0)).expand(B, 1, S, S)
        for l in range(self.cfg['encoder_layers']):
            p = f'model.encoder.layers.{l}'
            h = self.ln(h + self.attention(p + '.self_attn', h, h, add, self.cfg['encoder_attention_heads']), p + '.self_attn_layer_norm')
            h = self.ln(h + self.ffn(p, h), p + '.final_layer_norm')
        return h

    def decode(self, dec_ids, enc, enc_mask, dec_mask=None) -> torch.Tensor:
        """Logits [B, T, V] of a full (uncached) decoder pass, causal."""
        B, T = dec_ids.shape
        S = enc.shape[1]
        h = self.dec_emb[dec_ids] * self.scale + self.pos[:T]
        allowed = torch.tril(torch.ones(T, T, dtype=torch.bool))[None, None].expand(B, 1, T, T)
        if dec_mask is not None:
            allowed = allowed & (dec_mask[:, None, None, :] == 1)
        self_mask = torch.where(allowed, torch.tensor(0.0), torch.tensor(NEG))
        cross = torch.where(enc_mask[:, None, None, :] == 0, torch.tensor(NEG), torch.tensor(0.0)).expand(B, 1, T, S)
        heads = self.cfg['decoder_attention_heads']
        for l in range(self.cfg['decoder_layers']):
            p = f'model.decoder.layers.{l}'
            h = self.ln(h + self.attention(p + '.self_attn', h, h, self_mask, heads), p + '.self_attn_layer_norm')
            h = self.ln(h + self.attention(p + '.encoder_attn', h, enc, cross, heads), p + '.encoder_attn_layer_norm')
            h = self.ln(h + self.ffn(p, h), p + '.final_layer_norm')
        return h @ self.head.T + self.w['final_logits_bias']


def random_weights(cfg: dict, seed: int) -> dict:
    torch.manual_seed(seed)
    E, V, DV = cfg['d_model'], cfg['vocab_size'], cfg['decoder_vocab_size']
    r = lambda *s: torch.randn(*s) * 0.2  # noqa: E731
    big = lambda *s: torch.randn(*s) * 0.35  # noqa: E731  (projections: enough for the context to steer the tokens)
    w = {}
    if cfg['share_encoder_decoder_embeddings']:
        w['model.shared.weight'] = r(V, E) * 2
    else:
        w['model.encoder.embed_tokens.weight'] = r(V, E) * 2
        w['model.decoder.embed_tokens.weight'] = r(DV, E) * 2
    if not cfg['tie_word_embeddings']:
        w['lm_head.weight'] = r(DV if not cfg['share_encoder_decoder_embeddings'] else V, E)

    def attn(p):
        for n in ('k_proj', 'v_proj', 'q_proj', 'out_proj'):
            w[f'{p}.{n}.weight'] = big(E, E)
            w[f'{p}.{n}.bias'] = 0.1 * r(E)

    def norm(p):
        w[p + '.weight'] = 1 + 0.1 * r(E)
        w[p + '.bias'] = 0.1 * r(E)

    for side in ('encoder', 'decoder'):
        F = cfg[f'{side}_ffn_dim']
        for l in range(cfg[f'{side}_layers']):
            p = f'model.{side}.layers.{l}'
            attn(p + '.self_attn')
            norm(p + '.self_attn_layer_norm')
            if side == 'decoder':
                attn(p + '.encoder_attn')
                norm(p + '.encoder_attn_layer_norm')
            w[p + '.fc1.weight'], w[p + '.fc1.bias'] = big(F, E), 0.1 * r(F)
            w[p + '.fc2.weight'], w[p + '.fc2.bias'] = big(E, F), 0.1 * r(E)
            norm(p + '.final_layer_norm')
    w['final_logits_bias'] = 0.1 * r(1, DV if not cfg['share_encoder_decoder_embeddings'] else V)
    return w


def generate(m: Marian, cfg: dict, ids: list, mask: list, o: dict, noise=None):
    """transformers' generate for an encoder-decoder: the decoder prompt is the start token, each row of an input
    (its beams) reads that input's encoder output."""
    src_ids, src_mask = torch.tensor(ids), torch.tensor(mask)
    with torch.no_grad():
        enc = m.encode(src_ids, src_mask)

        def logits_fn(dec_ids, _dec_mask):
            k = dec_ids.shape[0] // src_ids.shape[0]
            return m.decode(dec_ids, enc.repeat_interleave(k, 0), src_mask.repeat_interleave(k, 0))

        start = torch.full((len(ids), 1), cfg['decoder_start_token_id'], dtype=torch.long)
        search = beam_search if o.get('numBeams', 1) > 1 else greedy_search
        return search(logits_fn, start, torch.ones_like(start), o, noise)


def folder(name: str, cfg: dict, gen_cfg: dict | None, store_positions: bool, eos_bias: float, seed: int,
           nrs_beams: int, length_penalty: float, pad_bias: float, torch_bin: bool = False, tok: Tokenizer | None = None) -> None:
    tok = tok or unigram_tokenizer()
    eos_id, pad_id = cfg['eos_token_id'], cfg['pad_token_id']
    ids = [tok.ids(t) for t in tok.texts]
    width = max(len(x) for x in ids)
    padded = [x + [pad_id] * (width - len(x)) for x in ids]
    mask = [[1] * len(x) + [0] * (width - len(x)) for x in ids]
    w = random_weights(cfg, seed)
    # A bias towards </s> makes greedy rows end at different steps (the eos handling is then exercised); one
    # towards <pad> gives the banned pad real probability mass, so bad_words_ids and renormalize_logits matter.
    w['final_logits_bias'][0, eos_id] += eos_bias
    w['final_logits_bias'][0, pad_id] += pad_bias
    m = Marian(w, cfg)
    gen = {**{k: cfg[k] for k in ('decoder_start_token_id', 'pad_token_id', 'eos_token_id', 'bad_words_ids',
                                   'forced_eos_token_id', 'max_length', 'num_beams')}, **(gen_cfg or {})}
    # Decoder inputs for the forward check: the start token, then ids that are not padding.
    g = torch.Generator().manual_seed(seed + 1)
    dec = [[cfg['decoder_start_token_id']] + [3 if t == pad_id else t for t in
                                               torch.randint(3, cfg['decoder_vocab_size'], (6,), generator=g).tolist()]
           for _ in tok.texts]
    with torch.no_grad():
        t_ids, t_mask = torch.tensor(padded), torch.tensor(mask)
        enc = m.encode(t_ids, t_mask)
        logits = m.decode(torch.tensor(dec), enc, t_mask)
        # Right-padded decoder inputs (as in training batches): the last positions of some rows are padding.
        dec_mask = [[1] * (len(dec[0]) - cut) + [0] * cut for cut in (0, 2, 3)]
        masked_logits = m.decode(torch.tensor(dec), enc, t_mask, torch.tensor(dec_mask))
    # The folder's defaults as generate's options (transformers: max_length counts the start token).
    defaults = {'maxNewTokens': gen['max_length'] - 1, 'numBeams': gen['num_beams'], 'eosTokenId': gen['eos_token_id'],
                'padTokenId': gen['pad_token_id'], 'badWordsIds': gen['bad_words_ids'],
                'forcedEosTokenId': gen['forced_eos_token_id'], 'renormalizeLogits': gen.get('renormalize_logits', False)}
    # What a call inherits from the folder besides its own options.
    processors = {k: defaults[k] for k in ('eosTokenId', 'padTokenId', 'badWordsIds', 'forcedEosTokenId', 'renormalizeLogits')}
    cases = []
    for case_name, rows, call, o in [
        ('greedy', 'batch', {'numBeams': 1, 'maxNewTokens': 12}, {**processors, 'maxNewTokens': 12}),
        ('greedy_single', 'single', {'numBeams': 1, 'maxNewTokens': 12}, {**processors, 'maxNewTokens': 12}),
        ('beams3', 'batch', {'numBeams': 3, 'maxNewTokens': 10}, {**processors, 'numBeams': 3, 'maxNewTokens': 10}),
        # Longer than the decoder caches' first allocation (32 positions): they grow between beam reorders.
        ('beams2_long', 'batch', {'numBeams': 2, 'maxNewTokens': 40}, {**processors, 'numBeams': 2, 'maxNewTokens': 40}),
        ('beams_nrs2_lp', 'batch', {'numBeams': nrs_beams, 'maxNewTokens': 10, 'numReturnSequences': 2, 'lengthPenalty': length_penalty},
         {**processors, 'numBeams': nrs_beams, 'maxNewTokens': 10, 'numReturnSequences': 2, 'lengthPenalty': length_penalty}),
        ('folder_defaults', 'batch', {}, defaults),
        # The same search without renormalize_logits: other scores (the banned pad's mass stays in the log-softmax).
        ('beams_not_renormalized', 'batch', {'numBeams': 4, 'maxNewTokens': 10, 'renormalizeLogits': False},
         {**processors, 'numBeams': 4, 'maxNewTokens': 10, 'renormalizeLogits': False}),
    ]:
        for r, (row_ids, row_mask) in enumerate([(padded, mask)] if rows == 'batch' else [([x], [[1] * len(x)]) for x in ids]):
            seqs, scores = generate(m, cfg, row_ids, row_mask, o)
            for seed in range(3):
                again, _ = generate(m, cfg, row_ids, row_mask, o, torch.Generator().manual_seed(seed))
                if not torch.equal(again, seqs):
                    raise SystemExit(f'{name} {case_name}: not robust to logit noise of 2e-4 (seed {seed}); pick other settings')
            case = {'name': case_name if rows == 'batch' else f'{case_name}_{r}', 'input_ids': row_ids,
                    'attention_mask': row_mask, 'call': call, 'sequences': seqs.tolist()}
            if scores is not None:
                case['sequences_scores'] = [round(float(x), 6) for x in scores]
            cases.append(case)
    stored = dict(w)
    if store_positions:
        stored['model.encoder.embed_positions.weight'] = m.pos.clone()
        stored['model.decoder.embed_positions.weight'] = m.pos.clone()
    d = HF_OUT / name
    d.mkdir(parents=True, exist_ok=True)
    (d / 'config.json').write_text(json.dumps(cfg, indent=2) + '\n')
    if gen_cfg is not None:
        (d / 'generation_config.json').write_text(json.dumps(gen_cfg, indent=2) + '\n')
    (d / 'model.safetensors').write_bytes(serialize_safetensors({k: v.contiguous() for k, v in stored.items()}, {'format': 'pt'}))
    for f in tok.files:
        shutil.copyfile(f, d / f.name)
    if torch_bin:
        # The same model as transformers 4.x wrote pytorch_model.bin: every tied copy (one storage) and the
        # position tables, in `{name}-bin` beside a copy of the configs (the tests reuse this folder's reference).
        b = HF_OUT / f'{name}-bin'
        b.mkdir(parents=True, exist_ok=True)
        for f in ('config.json', 'generation_config.json'):
            shutil.copyfile(d / f, b / f)
        full = dict(stored)
        shared = full['model.shared.weight']
        full.update({'model.encoder.embed_tokens.weight': shared, 'model.decoder.embed_tokens.weight': shared,
                     'lm_head.weight': shared, 'model.encoder.embed_positions.weight': m.pos.clone(),
                     'model.decoder.embed_positions.weight': m.pos.clone()})
        torch.save(dict(sorted(full.items())), b / 'pytorch_model.bin')
    r7 = lambda t: [round(float(v), 6) for v in t.flatten()]  # noqa: E731
    ref = {
        'producer': 'scripts/gen_marian_fixtures.py', 'torch_version': torch.__version__,
        'texts': tok.texts, 'input_ids': padded, 'attention_mask': mask,
        'decoder_input_ids': dec,
        'encoder_last_hidden_state': {'shape': list(enc.shape), 'data': r7(enc)},
        'logits': {'shape': list(logits.shape), 'data': r7(logits)},
        'decoder_attention_mask': dec_mask,
        'masked_logits': {'shape': list(masked_logits.shape), 'data': r7(masked_logits)},
        'generate': cases,
    }
    if tok.decode:
        # The pipeline's texts: each case's output rows decoded on the target side without special tokens.
        ref['translations'] = {c['name']: [tok.decode(row) for row in c['sequences']] for c in cases}
    (d / 'reference.json').write_text(json.dumps(ref) + '\n')


def main() -> int:
    torch.set_num_threads(1)
    vocab = len(json.loads((TOK_DIR / 'tokenizer.json').read_text())['model']['vocab'])
    base = {
        'model_type': 'marian', 'architectures': ['MarianMTModel'], 'vocab_size': vocab, 'decoder_vocab_size': vocab,
        'd_model': 32, 'encoder_layers': 2, 'decoder_layers': 2, 'encoder_attention_heads': 4,
        'decoder_attention_heads': 4, 'encoder_ffn_dim': 64, 'decoder_ffn_dim': 64, 'max_position_embeddings': 64,
        'activation_function': 'swish', 'scale_embedding': True, 'share_encoder_decoder_embeddings': True,
        'tie_word_embeddings': True, 'static_position_embeddings': True, 'normalize_embedding': False,
        'normalize_before': False, 'add_bias_logits': False, 'add_final_layer_norm': False,
        'pad_token_id': PAD, 'eos_token_id': EOS, 'bos_token_id': 0, 'decoder_start_token_id': PAD,
        'forced_eos_token_id': EOS, 'bad_words_ids': [[PAD]], 'num_beams': 4, 'max_length': 20,
        'is_encoder_decoder': True, 'dropout': 0.1, 'attention_dropout': 0.0, 'activation_dropout': 0.0,
        'init_std': 0.02, 'use_cache': True, 'torch_dtype': 'float32', 'transformers_version': '4.40.0',
    }
    gen_cfg = {'bad_words_ids': [[PAD]], 'bos_token_id': 0, 'decoder_start_token_id': PAD, 'eos_token_id': EOS,
               'forced_eos_token_id': EOS, 'max_length': 20, 'num_beams': 4, 'pad_token_id': PAD,
               'renormalize_logits': True, 'transformers_version': '4.40.0'}
    folder('marian-tiny', base, gen_cfg, store_positions=False, eos_bias=6.6, seed=1401, nrs_beams=4, length_penalty=0.6, pad_bias=6.0, torch_bin=True)
    unshared = {**base, 'activation_function': 'gelu', 'share_encoder_decoder_embeddings': False,
                'tie_word_embeddings': False, 'scale_embedding': False, 'encoder_layers': 3, 'decoder_layers': 2,
                'encoder_attention_heads': 4, 'decoder_attention_heads': 2, 'encoder_ffn_dim': 48,
                'decoder_ffn_dim': 80, 'max_position_embeddings': 48, 'num_beams': 3, 'max_length': 16}
    folder('marian-gelu-unshared', unshared, None, store_positions=True, eos_bias=0.0, seed=1402, nrs_beams=5, length_penalty=1.5, pad_bias=0.0)
    # The layout of a real opus-mt folder: SentencePiece tokenizer files, <pad> the last id (decoder start and
    # bad word), max_length up to the positions (every default generation runs to the forced </s> or an earlier one).
    spm_vocab = max(json.loads((SPM_DIR / 'vocab.json').read_text()).values()) + 1
    spm_pad = spm_vocab - 1
    opus = {**base, 'vocab_size': spm_vocab, 'decoder_vocab_size': spm_vocab, 'pad_token_id': spm_pad,
            'decoder_start_token_id': spm_pad, 'bad_words_ids': [[spm_pad]], 'max_length': 48, 'num_beams': 4,
            'max_position_embeddings': 48}
    opus_gen = {**gen_cfg, 'bad_words_ids': [[spm_pad]], 'decoder_start_token_id': spm_pad, 'pad_token_id': spm_pad,
                'max_length': 48}
    folder('marian-opus-spm', opus, opus_gen, store_positions=False, eos_bias=3.3, seed=1403, nrs_beams=4,
           length_penalty=1.0, pad_bias=2.0, tok=spm_tokenizer())
    for p in sorted(HF_OUT.glob('marian-*/*')):
        print(f'{p.stat().st_size:>9}  {p.relative_to(HF_OUT.parent)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
