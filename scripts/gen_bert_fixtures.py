#!/usr/bin/python3
"""Generate the BERT-family Hugging Face folders in test/fixtures/hf/{bert,roberta,distilbert}-*.

Usage (from the repository root, with Debian's torch 1.13; no `transformers` needed):

    /usr/bin/python3 scripts/gen_bert_fixtures.py

Each folder is what `save_pretrained` writes (config.json + model.safetensors
under the published key names) plus the trained tokenizer of
test/fixtures/tokenizers/ (BERT WordPiece or RoBERTa byte-level BPE), and a
`reference.json` with the outputs of a PyTorch implementation of the published
architectures, written here from the papers' and transformers' definitions
(not from attnode): embeddings (word + position + token type, LayerNorm;
RoBERTa's positions counted from padding_idx + 1 over non-padding ids),
post-norm encoder layers with an additive key mask of finfo.min, exact (erf)
GELU, BERT's tanh pooler, the MLM heads (dense, GELU, LayerNorm, decoder tied
to the word embeddings, bias) and the classification heads.

Token ids come from test/fixtures/tokenizers/refs/*.json (written by the Rust
`tokenizers` library), so the references do not depend on attnode's tokenizer.
The reference input is a right-padded batch of two sequences of different lengths.
"""
import json
import shutil
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_fixtures import serialize_safetensors  # noqa: E402  (the project's safetensors writer)

ROOT = Path(__file__).resolve().parent.parent
HF_OUT = ROOT / 'test' / 'fixtures' / 'hf'
TOK = ROOT / 'test' / 'fixtures' / 'tokenizers'
E, LAYERS, HEADS, INTER, MAXPOS, EPS = 32, 2, 4, 64, 64, 1e-12

BERT_NAMES = {'q': 'attention.self.query', 'k': 'attention.self.key', 'v': 'attention.self.value',
              'o': 'attention.output.dense', 'ln1': 'attention.output.LayerNorm', 'i': 'intermediate.dense',
              'out': 'output.dense', 'ln2': 'output.LayerNorm'}
DISTIL_NAMES = {'q': 'attention.q_lin', 'k': 'attention.k_lin', 'v': 'attention.v_lin', 'o': 'attention.out_lin',
                'ln1': 'sa_layer_norm', 'i': 'ffn.lin1', 'out': 'ffn.lin2', 'ln2': 'output_layer_norm'}


def refs(name: str) -> dict:
    return json.loads((TOK / 'refs' / f'{name}.json').read_text())


class Weights:
    """Random weights under HF key names; LayerNorm gains near 1."""

    def __init__(self, seed_name: str):
        torch.manual_seed(sum(seed_name.encode()))  # stable across runs (str hash() is salted per process)
        self.w: dict[str, torch.Tensor] = {}

    def lin(self, key: str, out_f: int, in_f: int) -> None:
        self.w[key + '.weight'] = torch.randn(out_f, in_f) * 0.2
        self.w[key + '.bias'] = torch.randn(out_f) * 0.1

    def ln(self, key: str, n: int = E) -> None:
        self.w[key + '.weight'] = 1 + 0.1 * torch.randn(n)
        self.w[key + '.bias'] = 0.1 * torch.randn(n)

    def emb(self, key: str, n: int) -> None:
        self.w[key + '.weight'] = torch.randn(n, E) * 0.5


def make_encoder(W: Weights, base: str, family: str, vocab: int, pad: int) -> None:
    if family == 'distilbert':
        W.emb(base + 'embeddings.word_embeddings', vocab)
        W.emb(base + 'embeddings.position_embeddings', MAXPOS)
        W.ln(base + 'embeddings.LayerNorm')
        names, layer = DISTIL_NAMES, base + 'transformer.layer.'
    else:
        W.emb(base + 'embeddings.word_embeddings', vocab)
        W.emb(base + 'embeddings.position_embeddings', MAXPOS + (pad + 1 if family == 'roberta' else 0))
        W.emb(base + 'embeddings.token_type_embeddings', 2 if family == 'bert' else 1)
        W.ln(base + 'embeddings.LayerNorm')
        names, layer = BERT_NAMES, base + 'encoder.layer.'
    # padding_idx rows are zeros in trained checkpoints (nn.Embedding(padding_idx=...)).
    W.w[base + 'embeddings.word_embeddings.weight'][pad] = 0
    for l in range(LAYERS):
        p = f'{layer}{l}.'
        for n in ('q', 'k', 'v', 'o'):
            W.lin(p + names[n], E, E)
        W.lin(p + names['i'], INTER, E)
        W.lin(p + names['out'], E, INTER)
        W.ln(p + names['ln1'])
        W.ln(p + names['ln2'])


# The masked-LM heads: (dense, norm, bias) keys of BertOnlyMLMHead and RobertaLMHead.
BERT_HEAD = ('cls.predictions.transform.dense', 'cls.predictions.transform.LayerNorm', 'cls.predictions.bias')
ROBERTA_HEAD = ('lm_head.dense', 'lm_head.layer_norm', 'lm_head.bias')


def make_mlm_head(W: 'Weights', head: tuple, vocab: int) -> None:
    dense, norm, bias = head
    W.lin(dense, E, E)
    W.ln(norm)
    W.w[bias] = torch.randn(vocab) * 0.1


def mlm_logits(w: dict, h: torch.Tensor, head: tuple, words: str, act: str = 'gelu', eps: float = EPS) -> torch.Tensor:
    """dense, activation, LayerNorm, then the decoder tied to the word embeddings `words`, + bias."""
    dense, norm, bias = head
    t = F.layer_norm(ACT[act](h @ w[dense + '.weight'].T + w[dense + '.bias']), (E,), w[norm + '.weight'], w[norm + '.bias'], eps)
    return t @ w[words].T + w[bias]


ACT = {'gelu': F.gelu, 'gelu_new': lambda x: F.gelu(x, approximate='tanh'), 'relu': F.relu, 'silu': F.silu}


def encode(w: dict, base: str, family: str, ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor, pad: int,
           *, E: int = E, LAYERS: int = LAYERS, HEADS: int = HEADS, EPS: float = EPS, act: str = 'gelu') -> torch.Tensor:
    """last_hidden_state [B, L, E] of BertModel / RobertaModel / DistilBertModel (sizes default to the fixtures';
    bench/embeddings/make_model.py passes MiniLM-L6's)."""
    B, L = ids.shape
    x = w[base + 'embeddings.word_embeddings.weight'][ids]
    if family == 'roberta':
        # transformers' create_position_ids_from_input_ids: padding keeps padding_idx, tokens count from padding_idx + 1.
        m = (ids != pad).int()
        pos = (torch.cumsum(m, dim=1) * m + pad).long()
    else:
        pos = torch.arange(L).expand(B, L)
    x = x + w[base + 'embeddings.position_embeddings.weight'][pos]
    if family != 'distilbert':
        x = x + w[base + 'embeddings.token_type_embeddings.weight'][types]
    x = F.layer_norm(x, (E,), w[base + 'embeddings.LayerNorm.weight'], w[base + 'embeddings.LayerNorm.bias'], EPS)
    names, layer = (DISTIL_NAMES, base + 'transformer.layer.') if family == 'distilbert' else (BERT_NAMES, base + 'encoder.layer.')
    hd = E // HEADS
    add = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    lin = lambda h, k: h @ w[k + '.weight'].T + w[k + '.bias']  # noqa: E731
    for l in range(LAYERS):
        p = f'{layer}{l}.'
        heads = lambda t: t.view(B, L, HEADS, hd).transpose(1, 2)  # noqa: E731
        q, k, v = (heads(lin(x, p + names[n])) for n in ('q', 'k', 'v'))
        a = torch.softmax(q @ k.transpose(-1, -2) / hd ** 0.5 + add, dim=-1) @ v
        a = lin(a.transpose(1, 2).reshape(B, L, E), p + names['o'])
        x = F.layer_norm(a + x, (E,), w[p + names['ln1'] + '.weight'], w[p + names['ln1'] + '.bias'], EPS)
        h = lin(ACT[act](lin(x, p + names['i'])), p + names['out'])
        x = F.layer_norm(h + x, (E,), w[p + names['ln2'] + '.weight'], w[p + names['ln2'] + '.bias'], EPS)
    return x


def r7(t: torch.Tensor) -> list:
    return [round(float(v), 7) for v in t.reshape(-1)]


def padded(seqs: list[list[int]], pad: int, types: list[list[int]] | None = None):
    L = max(len(s) for s in seqs)
    ids = torch.tensor([s + [pad] * (L - len(s)) for s in seqs])
    mask = torch.tensor([[1] * len(s) + [0] * (L - len(s)) for s in seqs])
    tt = torch.tensor([t + [0] * (L - len(t)) for t in types]) if types else torch.zeros_like(ids)
    return ids, mask, tt


def write_folder(name: str, cfg: dict, w: dict, tokenizer: str, ref: dict, extra: dict | None = None) -> None:
    d = HF_OUT / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    (d / 'config.json').write_text(json.dumps(cfg, indent=2) + '\n')
    (d / 'model.safetensors').write_bytes(serialize_safetensors({k: v.contiguous() for k, v in w.items()}, {'format': 'pt'}))
    for f in (TOK / tokenizer).iterdir():
        shutil.copy(f, d / f.name)
    for rel, content in (extra or {}).items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(json.dumps(content, indent=2) + '\n')
    (d / 'reference.json').write_text(json.dumps({'producer': 'scripts/gen_bert_fixtures.py', 'torch_version': torch.__version__, **ref}) + '\n')


def bert_cfg(arch: str, vocab: int, **kw) -> dict:
    return {'architectures': [arch], 'model_type': 'bert', 'vocab_size': vocab, 'hidden_size': E, 'num_hidden_layers': LAYERS,
            'num_attention_heads': HEADS, 'intermediate_size': INTER, 'hidden_act': 'gelu', 'max_position_embeddings': MAXPOS,
            'type_vocab_size': 2, 'layer_norm_eps': EPS, 'pad_token_id': 0, 'torch_dtype': 'float32', **kw}


def roberta_cfg(arch: str, model_type: str, vocab: int, **kw) -> dict:
    return {**bert_cfg(arch, vocab), 'model_type': model_type, 'max_position_embeddings': MAXPOS + 2, 'type_vocab_size': 1,
            'pad_token_id': 1, 'bos_token_id': 0, 'eos_token_id': 2, **kw}


def distil_cfg(arch: str, vocab: int, **kw) -> dict:
    return {'architectures': [arch], 'model_type': 'distilbert', 'vocab_size': vocab, 'dim': E, 'n_layers': LAYERS, 'n_heads': HEADS,
            'hidden_dim': INTER, 'activation': 'gelu', 'max_position_embeddings': MAXPOS, 'sinusoidal_pos_embds': False,
            'pad_token_id': 0, 'torch_dtype': 'float32', **kw}


LABELS = {'0': 'negative', '1': 'neutral', '2': 'positive'}


def sinusoidal(n_pos: int, dim: int) -> torch.Tensor:
    """transformers' create_sinusoidal_embeddings (DistilBERT's sinusoidal_pos_embds)."""
    enc = torch.tensor([[pos / (10000 ** (2 * (j // 2) / dim)) for j in range(dim)] for pos in range(n_pos)], dtype=torch.float64)
    out = torch.zeros(n_pos, dim)
    out[:, 0::2] = torch.sin(enc[:, 0::2]).float()
    out[:, 1::2] = torch.cos(enc[:, 1::2]).float()
    return out


def conformance(bref, rref, bvocab, rvocab, bids, bmask, dids, dmask, rids, rmask, batch) -> None:
    """Folders whose config.json sets fields real checkpoints use and that change the outputs."""
    zeros = torch.zeros_like
    # bert-silu-mlm: hidden_act 'silu' (in the layers and the MLM head's transform), layer_norm_eps 1e-5, one token type.
    W = Weights('bert-silu-mlm')
    make_encoder(W, 'bert.', 'bert', bvocab, 0)
    W.w['bert.embeddings.token_type_embeddings.weight'] = W.w['bert.embeddings.token_type_embeddings.weight'][:1].clone()
    make_mlm_head(W, BERT_HEAD, bvocab)
    w = W.w
    h = encode(w, 'bert.', 'bert', dids, dmask, zeros(dids), 0, EPS=1e-5, act='silu')
    logits = mlm_logits(w, h, BERT_HEAD, 'bert.embeddings.word_embeddings.weight', act='silu', eps=1e-5)
    write_folder('bert-silu-mlm', bert_cfg('BertForMaskedLM', bvocab, hidden_act='silu', layer_norm_eps=1e-5, type_vocab_size=1,
                                           position_embedding_type='absolute', classifier_dropout=None),
                 w, 'bert-wordpiece', {**batch(dids, dmask, zeros(dids)), 'last_hidden_state': r7(h), 'logits': r7(logits)})

    # roberta-gelu-new-mlm: hidden_act 'gelu_new' in the layers; RobertaLMHead's activation is exact GELU regardless.
    W = Weights('roberta-gelu-new-mlm')
    make_encoder(W, 'roberta.', 'roberta', rvocab, 1)
    make_mlm_head(W, ROBERTA_HEAD, rvocab)
    w = W.w
    h = encode(w, 'roberta.', 'roberta', rids, rmask, zeros(rids), 1, act='gelu_new')
    logits = mlm_logits(w, h, ROBERTA_HEAD, 'roberta.embeddings.word_embeddings.weight')
    write_folder('roberta-gelu-new-mlm', roberta_cfg('RobertaForMaskedLM', 'roberta', rvocab, hidden_act='gelu_new'), w, 'roberta-bpe', {
        **batch(rids, rmask, zeros(rids)), 'last_hidden_state': r7(h), 'logits': r7(logits)})

    # distilbert-sinusoidal: sinusoidal_pos_embds with the table left out of the file (transformers computes it), ReLU.
    W = Weights('distilbert-sinusoidal')
    make_encoder(W, '', 'distilbert', bvocab, 0)
    w = W.w
    del w['embeddings.position_embeddings.weight']
    full = {**w, 'embeddings.position_embeddings.weight': sinusoidal(MAXPOS, E)}
    h = encode(full, '', 'distilbert', dids, dmask, zeros(dids), 0, act='relu')
    write_folder('distilbert-sinusoidal', distil_cfg('DistilBertModel', bvocab, sinusoidal_pos_embds=True, activation='relu'), w,
                 'bert-wordpiece', {**batch(dids, dmask, zeros(dids)), 'last_hidden_state': r7(h)})


def main() -> int:
    bref, rref = refs('bert-wordpiece'), refs('roberta-bpe')
    bvocab = len(json.loads((TOK / 'bert-wordpiece' / 'tokenizer.json').read_text())['model']['vocab'])
    rvocab = len(json.loads((TOK / 'roberta-bpe' / 'tokenizer.json').read_text())['model']['vocab'])
    # BERT: a sentence pair (token types 0 and 1) padded against a longer pair.
    bids, bmask, btypes = padded([bref['pairs'][1]['ids'], bref['pairs'][0]['ids']], 0,
                                 [bref['pairs'][1]['typeIds'], bref['pairs'][0]['typeIds']])
    # RoBERTa / DistilBERT: two single texts of different lengths.
    rids, rmask, rtypes = padded([rref['texts'][0]['ids'], rref['texts'][1]['ids']], 1)
    dids, dmask, dtypes = padded([bref['texts'][0]['ids'], bref['texts'][1]['ids']], 0)
    batch = lambda ids, mask, types: {'input_ids': ids.tolist(), 'attention_mask': mask.tolist(), 'token_type_ids': types.tolist()}  # noqa: E731
    pipe_texts = [bref['texts'][i]['text'] for i in (0, 1, 2, 6, 9, 24)]
    pipe_ids = [bref['texts'][i]['ids'] for i in (0, 1, 2, 6, 9, 24)]

    with torch.no_grad():
        # bert-st: a bare BertModel (keys without prefix) packaged as a sentence-transformers model (mean pooling, normalized).
        W = Weights('bert-st')
        make_encoder(W, '', 'bert', bvocab, 0)
        W.lin('pooler.dense', E, E)
        w = W.w
        h = encode(w, '', 'bert', bids, bmask, btypes, 0)
        pooled = torch.tanh(h[:, 0] @ w['pooler.dense.weight'].T + w['pooler.dense.bias'])
        pids, pmask, ptypes = padded(pipe_ids, 0)
        ph = encode(w, '', 'bert', pids, pmask, ptypes, 0)
        m = pmask[..., None].float()
        mean = (ph * m).sum(1) / m.sum(1).clamp(min=1e-9)
        # sentence-transformers' other Pooling modes (models/Pooling.py): max over tokens (padding set to -1e9),
        # the sum over sqrt(token count), the last token of each row (right padding: index len - 1).
        mx = ph.masked_fill(m == 0, -1e9).max(1).values
        sqrt_len = (ph * m).sum(1) / torch.sqrt(m.sum(1).clamp(min=1e-9))
        last = ph[torch.arange(ph.shape[0]), pmask.sum(1) - 1]
        # max_seq_length 5 in sentence_bert_config.json: the tokenizer keeps [CLS] + 3 tokens + [SEP].
        tids = [s[:4] + [3] if len(s) > 5 else s for s in pipe_ids]
        tids_, tmask, ttypes = padded(tids, 0)
        th = encode(w, '', 'bert', tids_, tmask, ttypes, 0)
        tm = tmask[..., None].float()
        tmean = (th * tm).sum(1) / tm.sum(1).clamp(min=1e-9)
        write_folder('bert-st', bert_cfg('BertModel', bvocab), w, 'bert-wordpiece', {
            **batch(bids, bmask, btypes), 'last_hidden_state': r7(h), 'pooler_output': r7(pooled),
            'pipeline': {'texts': pipe_texts, 'mean': r7(mean), 'mean_normalized': r7(F.normalize(mean, dim=-1)), 'cls': r7(ph[:, 0]),
                         'max': r7(mx), 'mean_sqrt_len': r7(sqrt_len), 'lasttoken': r7(last),
                         'truncated_5_mean': r7(tmean), 'truncated_5_ids': tids},
        }, {
            'modules.json': [{'idx': 0, 'name': '0', 'path': '', 'type': 'sentence_transformers.models.Transformer'},
                             {'idx': 1, 'name': '1', 'path': '1_Pooling', 'type': 'sentence_transformers.models.Pooling'},
                             {'idx': 2, 'name': '2', 'path': '2_Normalize', 'type': 'sentence_transformers.models.Normalize'}],
            '1_Pooling/config.json': {'word_embedding_dimension': E, 'pooling_mode_cls_token': False, 'pooling_mode_mean_tokens': True,
                                      'pooling_mode_max_tokens': False, 'pooling_mode_mean_sqrt_len_tokens': False},
        })

        # bert-mlm: BertForMaskedLM (prefix bert., no pooler), the tied decoder weight stored too, as older conversions do.
        W = Weights('bert-mlm')
        make_encoder(W, 'bert.', 'bert', bvocab, 0)
        make_mlm_head(W, BERT_HEAD, bvocab)
        w = W.w
        w['cls.predictions.decoder.weight'] = w['bert.embeddings.word_embeddings.weight']

        def bert_mlm(ids, mask, types):
            h = encode(w, 'bert.', 'bert', ids, mask, types, 0)
            return h, mlm_logits(w, h, BERT_HEAD, 'bert.embeddings.word_embeddings.weight')
        h, logits = bert_mlm(bids, bmask, btypes)
        # fill-mask: "hello [MASK]" = [CLS] hello [MASK] [SEP].
        fm_ids = [2, bref['texts'][0]['ids'][1], 4, 3]
        _, fm_logits = bert_mlm(torch.tensor([fm_ids]), torch.ones(1, 4, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long))
        probs = torch.softmax(fm_logits[0, 2], dim=-1)
        top = torch.topk(probs, 5)
        write_folder('bert-mlm', bert_cfg('BertForMaskedLM', bvocab), w, 'bert-wordpiece', {
            **batch(bids, bmask, btypes), 'last_hidden_state': r7(h), 'logits': r7(logits),
            'fill_mask': {'text': 'hello [MASK]', 'input_ids': fm_ids, 'top_ids': top.indices.tolist(), 'top_scores': r7(top.values)},
        })

        # bert-cls: BertForSequenceClassification (pooler + classifier), three labels.
        W = Weights('bert-cls')
        make_encoder(W, 'bert.', 'bert', bvocab, 0)
        W.lin('bert.pooler.dense', E, E)
        W.lin('classifier', 3, E)
        w = W.w

        def bert_cls(ids, mask, types):
            h = encode(w, 'bert.', 'bert', ids, mask, types, 0)
            p = torch.tanh(h[:, 0] @ w['bert.pooler.dense.weight'].T + w['bert.pooler.dense.bias'])
            return h, p, p @ w['classifier.weight'].T + w['classifier.bias']
        h, pooled, logits = bert_cls(bids, bmask, btypes)
        _, _, plogits = bert_cls(pids, pmask, ptypes)
        write_folder('bert-cls', bert_cfg('BertForSequenceClassification', bvocab, id2label=LABELS,
                                          label2id={v: int(k) for k, v in LABELS.items()}), w, 'bert-wordpiece', {
            **batch(bids, bmask, btypes), 'last_hidden_state': r7(h), 'pooler_output': r7(pooled), 'logits': r7(logits),
            'pipeline': {'texts': pipe_texts, 'probs': r7(torch.softmax(plogits, dim=-1))},
        })

        # roberta-mlm: RobertaForMaskedLM (prefix roberta., lm_head with lower-case layer_norm; the tied decoder not stored).
        W = Weights('roberta-mlm')
        make_encoder(W, 'roberta.', 'roberta', rvocab, 1)
        make_mlm_head(W, ROBERTA_HEAD, rvocab)
        w = W.w
        h = encode(w, 'roberta.', 'roberta', rids, rmask, rtypes, 1)
        logits = mlm_logits(w, h, ROBERTA_HEAD, 'roberta.embeddings.word_embeddings.weight')
        write_folder('roberta-mlm', roberta_cfg('RobertaForMaskedLM', 'roberta', rvocab), w, 'roberta-bpe', {
            **batch(rids, rmask, rtypes), 'last_hidden_state': r7(h), 'logits': r7(logits)})

        # roberta-xlmr-cls: an XLM-R style XLMRobertaForSequenceClassification (dense, tanh, out_proj on <s>).
        W = Weights('roberta-xlmr-cls')
        make_encoder(W, 'roberta.', 'roberta', rvocab, 1)
        W.lin('classifier.dense', E, E)
        W.lin('classifier.out_proj', 2, E)
        w = W.w
        h = encode(w, 'roberta.', 'roberta', rids, rmask, rtypes, 1)
        logits = torch.tanh(h[:, 0] @ w['classifier.dense.weight'].T + w['classifier.dense.bias']) @ w['classifier.out_proj.weight'].T \
            + w['classifier.out_proj.bias']
        write_folder('roberta-xlmr-cls', roberta_cfg('XLMRobertaForSequenceClassification', 'xlm-roberta', rvocab,
                                                     id2label={'0': 'NEG', '1': 'POS'}), w, 'roberta-bpe', {
            **batch(rids, rmask, rtypes), 'last_hidden_state': r7(h), 'logits': r7(logits)})

        # distilbert-mlm: DistilBertForMaskedLM (vocab_transform, GELU, vocab_layer_norm, vocab_projector tied).
        W = Weights('distilbert-mlm')
        make_encoder(W, 'distilbert.', 'distilbert', bvocab, 0)
        W.lin('vocab_transform', E, E)
        W.ln('vocab_layer_norm')
        W.w['vocab_projector.bias'] = torch.randn(bvocab) * 0.1
        w = W.w
        h = encode(w, 'distilbert.', 'distilbert', dids, dmask, dtypes, 0)
        t = F.layer_norm(F.gelu(h @ w['vocab_transform.weight'].T + w['vocab_transform.bias']), (E,),
                         w['vocab_layer_norm.weight'], w['vocab_layer_norm.bias'], EPS)
        logits = t @ w['distilbert.embeddings.word_embeddings.weight'].T + w['vocab_projector.bias']
        write_folder('distilbert-mlm', distil_cfg('DistilBertForMaskedLM', bvocab), w, 'bert-wordpiece', {
            **batch(dids, dmask, dtypes), 'last_hidden_state': r7(h), 'logits': r7(logits)})

        # distilbert-cls: DistilBertForSequenceClassification (pre_classifier, ReLU, classifier on [CLS]).
        W = Weights('distilbert-cls')
        make_encoder(W, 'distilbert.', 'distilbert', bvocab, 0)
        W.lin('pre_classifier', E, E)
        W.lin('classifier', 3, E)
        w = W.w
        h = encode(w, 'distilbert.', 'distilbert', dids, dmask, dtypes, 0)
        logits = torch.relu(h[:, 0] @ w['pre_classifier.weight'].T + w['pre_classifier.bias']) @ w['classifier.weight'].T + w['classifier.bias']
        write_folder('distilbert-cls', distil_cfg('DistilBertForSequenceClassification', bvocab, id2label=LABELS), w, 'bert-wordpiece', {
            **batch(dids, dmask, dtypes), 'last_hidden_state': r7(h), 'logits': r7(logits)})

        conformance(bref, rref, bvocab, rvocab, bids, bmask, dids, dmask, rids, rmask, batch)

    for p in sorted(HF_OUT.glob('*bert*/**/*')):
        if p.is_file():
            print(f'{p.stat().st_size:>9}  {p.relative_to(ROOT)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
