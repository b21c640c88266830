#!/usr/bin/env python3
"""Generates the SentencePiece tokenizer fixtures under test/fixtures/spm/ with Debian's python3-sentencepiece,
an implementation independent of attnode's (Google's C++ library; attnode reads the model files in TypeScript).

1. Trains small models on the committed corpora (test/fixtures/spm/corpus.{en,de}.txt):
   - Marian-style Unigram models with nmt_nfkc normalisation (source: English, target: German/French), written
     as Helsinki-NLP/opus-mt folders: source.spm, target.spm, vocab.json (shared, "</s>" 0, "<unk>" 1, ...,
     "<pad>" last, with language codes and a few source pieces left out so they map to <unk>),
     tokenizer_config.json; and a separate_vocabs variant with target_vocab.json.
   - A Llama-style BPE model with byte fallback (identity normalisation, no whitespace removal, split digits,
     a user-defined symbol), written as tokenizer.model + tokenizer_config.json, legacy and non-legacy.
2. Records reference ids and decodes: sentencepiece's own encode/decode_pieces, with the tokenizer rules of
   transformers re-implemented here in Python from its source (MarianTokenizer: added-token split, language
   code, vocab.json mapping, </s>; LlamaTokenizerFast built by LlamaConverter: added-token split, legacy
   Prepend/Replace or Metaspace(prepend_scheme="first"), <s>, ByteFallback/Fuse/Strip decoding).

Run: /usr/bin/python3 scripts/gen_spm_refs.py   (needs python3-sentencepiece; writes test/fixtures/spm/)
"""
import json
import os
import random
import re
import shutil
import tempfile

import sentencepiece as spm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, 'test', 'fixtures', 'spm')
SPACE = '\u2581'

TEXTS = [
    'Hello world',
    'The quick brown fox jumps over the lazy dog.',
    'Café naïve résumé',
    'Cafe\u0301 nai\u0308ve re\u0301sume\u0301',
    'ＦＵＬＬ ｗｉｄｔｈ １２３ ＡＢＣ',
    'ﬁne ﬂow ﬀ ligatures',
    'x\u00a0y\u00a0\u00a0z',
    'Straße Œuvre Ångström A\u030a',
    '😀 🎉 👍🏽 👨\u200d👩\u200d👧 🇫🇷',
    '你好，世界。机器翻译',
    '日本語のテキスト 한국어',
    'Zürich ☃ ℃ ™ ½ ① Ⅻ',
    'unknown: Ω ψ ж א ǂ',
    '  leading spaces',
    'trailing spaces   ',
    'runs   of    spaces',
    'tabs\tand\nnewlines\r\nend',
    '',
    ' ',
    '   ',
    '\u3000ideographic\u3000space',
    'zero\u200bwidth\u200djoiner\ufeffbom',
    'ctrl\u0000\u0007\u001b chars',
    'Numbers 1999 3.14 1,000,000 +49',
    'Mixed English und Deutsch, et français !',
    'Der schnelle braune Fuchs springt über den Hund.',
    '>>fr<< Hello world',
    '>>de<<Guten Morgen',
    'Hello >>fr<< world',
    '>>xx<< an unknown code',
    '>>fr<< a >>de<< b',
    'special </s> in <unk> text <pad>',
    '<s>start and </s>',
    '<sep> user <sep>defined',
    '\u2581already\u2581marked \u2581',
    'e\u0301\u0301 stacked',
    'ｶﾞｷﾞ halfwidth ﾊﾟ',
    'line\u2028separator\u2029para',
    'CCC Cafe CQX',
]

TARGET_TEXTS = [
    'Guten Morgen, wie geht es dir?',
    'Der Zug fährt um halb zehn ab.',
    'Straße, Mädchen, Grüße, Œuvre.',
    'Bonjour le monde ! Ça va ?',
    'ＦＵＬＬ ｗｉｄｔｈ und ﬁ',
    '  Leerzeichen   überall  ',
    '>>fr<< Guten Tag',
    'unknown: Ω 你好 😀',
    '',
]


def words_of(path):
    with open(path, encoding='utf-8') as f:
        return f.read().split()


def random_texts(seed, words, n):
    """Random sentences of corpus words and a pool of awkward characters."""
    rnd = random.Random(seed)
    pool = list('abcXYZ éèüßæœ\t\n\u00a0\u3000\u2002\u200b\u200d\ufeff\u0301\u0308ﬁﬂ①Ⅻ１２ＡＢｶﾞﾟ™½…—“”«»¿¡😀👍🏽你好한\u0000\u0085\u00ad~`^¨´')
    pool += [' ', ' ', '  ', 'e\u0301', '<unk>', '</s>', '<s>', '>>fr<<', '<sep>']
    out = []
    for i in range(n):
        if i % 2 == 0:
            out.append(' '.join(rnd.choice(words) for _ in range(rnd.randint(1, 14))))
        else:
            out.append(''.join(rnd.choice(pool + words[:40]) for _ in range(rnd.randint(0, 14))))
    return out


def train(prefix, inputs, **kw):
    spm.SentencePieceTrainer.train(input=','.join(inputs), model_prefix=prefix, num_threads=1, minloglevel=2, **kw)
    return prefix + '.model'


def split_added(text, added):
    """transformers' added-token split: at each position the longest added token, else a character."""
    parts, start, i = [], 0, 0
    ordered = sorted(added, key=len, reverse=True)
    while i < len(text):
        hit = next((t for t in ordered if text.startswith(t, i)), None)
        if hit is None:
            i += 1
            continue
        parts += [text[start:i], hit]
        i += len(hit)
        start = i
    parts.append(text[start:])
    return parts


# ---------------------------------------------------------------- Marian

LANG = re.compile('>>.+<<')


class Marian:
    """transformers 4.x MarianTokenizer rules over the sentencepiece library."""

    def __init__(self, folder, separate):
        self.src = spm.SentencePieceProcessor(model_file=os.path.join(folder, 'source.spm'))
        self.tgt = spm.SentencePieceProcessor(model_file=os.path.join(folder, 'target.spm'))
        with open(os.path.join(folder, 'vocab.json'), encoding='utf-8') as f:
            self.encoder = json.load(f)
        self.target_encoder = self.encoder
        if separate:
            with open(os.path.join(folder, 'target_vocab.json'), encoding='utf-8') as f:
                self.target_encoder = json.load(f)
        self.decoder = {v: k for k, v in self.target_encoder.items()}
        self.specials = ['</s>', '<unk>', '<pad>']
        self.special_ids = {self.encoder[t] for t in self.specials}

    def encode(self, text, target=False, add_special=True):
        sp, enc = (self.tgt, self.target_encoder) if target else (self.src, self.encoder)
        ids = []
        for part in split_added(text, self.specials):
            if part in self.specials:
                ids.append(self.encoder[part])
                continue
            if not part:
                continue
            m = LANG.match(part)
            code = [m.group(0)] if m else []
            pieces = code + sp.encode(LANG.sub('', part), out_type=str)
            ids += [self.encoder[p] if p in self.specials else enc.get(p, enc['<unk>']) for p in pieces]
        return ids + ([self.encoder['</s>']] if add_special else [])

    def decode(self, ids, skip_special=False, use_source=False):
        sp = self.src if use_source else self.tgt
        tokens = [self.decoder.get(i, '<unk>') for i in ids if not (skip_special and i in self.special_ids)]
        out, cur = '', []
        for t in tokens:
            if t in self.specials:
                out += sp.decode_pieces(cur) + t + ' '
                cur = []
            else:
                cur.append(t)
        out += sp.decode_pieces(cur)
        return out.replace(SPACE, ' ').strip()


def marian_vocab(src_model, tgt_model, drop_every, codes):
    """A Marian-style joint vocabulary: </s> 0, <unk> 1, source then target pieces, language codes, <pad> last."""
    vocab = {'</s>': 0, '<unk>': 1}
    for model, drop in ((src_model, drop_every), (tgt_model, 0)):
        sp = spm.SentencePieceProcessor(model_file=model)
        for i in range(sp.vocab_size()):
            if sp.is_control(i) or sp.is_unknown(i):
                continue
            piece = sp.id_to_piece(i)
            # Marian's vocabulary comes from its training data, so some pieces of the model can be missing.
            if drop and i % drop == 0:
                continue
            vocab.setdefault(piece, len(vocab))
    for c in codes:
        vocab.setdefault(c, len(vocab))
    vocab['<pad>'] = len(vocab)
    return vocab


def write_json(path, obj):
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(obj, f, ensure_ascii=False, indent=1 if path.endswith('config.json') or 'special_tokens' in path else None)
        f.write('\n')


def build_marian(tmp, words):
    en = os.path.join(OUT, 'corpus.en.txt')
    de = os.path.join(OUT, 'corpus.de.txt')
    src = train(os.path.join(tmp, 'src'), [en], model_type='unigram', vocab_size=300, character_coverage=0.98,
                hard_vocab_limit=False)
    tgt = train(os.path.join(tmp, 'tgt'), [de], model_type='unigram', vocab_size=300, character_coverage=0.995,
                hard_vocab_limit=False)
    refs = {}
    for name, separate in (('marian-en-de', False), ('marian-separate-vocabs', True)):
        folder = os.path.join(OUT, name)
        os.makedirs(folder, exist_ok=True)
        shutil.copy(src, os.path.join(folder, 'source.spm'))
        shutil.copy(tgt, os.path.join(folder, 'target.spm'))
        config = {'source_lang': 'en', 'target_lang': 'de', 'model_max_length': 512, 'separate_vocabs': separate,
                  'tokenizer_class': 'MarianTokenizer'}
        if separate:
            # Source and target ids overlap; decoding reads target_vocab.json.
            write_json(os.path.join(folder, 'vocab.json'), marian_vocab(src, src, 0, []))
            write_json(os.path.join(folder, 'target_vocab.json'), marian_vocab(tgt, tgt, 0, []))
        else:
            write_json(os.path.join(folder, 'vocab.json'), marian_vocab(src, tgt, 37, ['>>de<<', '>>fr<<']))
        write_json(os.path.join(folder, 'tokenizer_config.json'), config)
        write_json(os.path.join(folder, 'special_tokens_map.json'), {'eos_token': '</s>', 'unk_token': '<unk>', 'pad_token': '<pad>'})
        m = Marian(folder, separate)
        texts = TEXTS + random_texts(7, words, 160)
        cases = []
        for t in texts:
            ids = m.encode(t)
            cases.append({
                'text': t, 'ids': ids, 'idsNoSpecial': m.encode(t, add_special=False),
                'pieces': m.src.encode(t, out_type=str),
                'decoded': m.decode(ids), 'decodedSkipSpecial': m.decode(ids, skip_special=True),
                'decodedSource': m.decode(ids, skip_special=True, use_source=True),
            })
        target_cases = []
        for t in TARGET_TEXTS + random_texts(11, words_of(de), 40):
            ids = m.encode(t, target=True)
            target_cases.append({'text': t, 'ids': ids, 'decodedSkipSpecial': m.decode(ids, skip_special=True)})
        # Arbitrary id sequences: pieces of either side, specials, codes, decoded by the target model.
        rnd = random.Random(3)
        n = max(m.decoder) + 1
        id_decodes = []
        for _ in range(60):
            ids = [rnd.randrange(n) for _ in range(rnd.randint(0, 12))]
            id_decodes.append({'ids': ids, 'decoded': m.decode(ids), 'decodedSkipSpecial': m.decode(ids, skip_special=True)})
        refs[name] = {
            'generator': f'scripts/gen_spm_refs.py with sentencepiece {spm.__version__} (MarianTokenizer rules of transformers 4.x)',
            'folder': name, 'texts': cases, 'targetTexts': target_cases, 'idDecodes': id_decodes,
            'eosId': m.encoder['</s>'], 'padId': m.encoder['<pad>'], 'unkId': m.encoder['<unk>'],
            'vocabSize': len(m.encoder),
        }
    return refs


# ---------------------------------------------------------------- Llama

BYTE = re.compile(r'^<0x([0-9A-F]{2})>$')


class LlamaFast:
    """LlamaTokenizerFast as LlamaConverter builds it from tokenizer.model, re-implemented on sentencepiece."""

    def __init__(self, model, legacy, add_bos, add_eos):
        self.sp = spm.SentencePieceProcessor(model_file=model)
        self.legacy, self.add_bos, self.add_eos = legacy, add_bos, add_eos
        n = self.sp.vocab_size()
        # Added tokens: control pieces (special), user-defined pieces (not special), the unk token (special).
        self.added = {self.sp.id_to_piece(i): i for i in range(n) if self.sp.is_control(i) or self.sp.is_unknown(i)}
        self.special = set(self.added.values())
        self.user = {}
        for i in range(n):
            p = self.sp.id_to_piece(i)
            if not (self.sp.is_control(i) or self.sp.is_unknown(i) or self.sp.is_byte(i)) and p == '<sep>':
                self.user[p] = i
        self.added.update(self.user)
        self.unk_pieces = self.sp.encode('<unk>', out_type=str)

    def segment(self, s, first):
        """One text between added tokens, as the fast tokenizer's normalizer/pre-tokenizer and BPE treat it."""
        if self.legacy:
            return self.sp.encode(s)  # Prepend('▁') + Replace(' ', '▁') is SentencePiece's own identity rule
        norm = s.replace(' ', SPACE)
        if first and not norm.startswith(SPACE):
            norm = SPACE + norm
        # transformers' slow non-legacy trick: encode "<unk>" + text and drop the "<unk>" pieces.
        pieces = self.sp.encode('<unk>' + norm, out_type=str)
        assert pieces[:len(self.unk_pieces)] == self.unk_pieces, (s, pieces)
        return [self.sp.piece_to_id(p) for p in pieces[len(self.unk_pieces):]]

    def encode(self, text, add_special=True, pair=None):
        def one(t):
            ids = []
            offset = 0
            for part in split_added(t, list(self.added)):
                if part in self.added:
                    ids.append(self.added[part])
                elif part:
                    ids += self.segment(part, offset == 0)
                offset += len(part)
            return ids
        a = one(text)
        bos, eos = [self.sp.bos_id()] if self.add_bos else [], [self.sp.eos_id()] if self.add_eos else []
        if not add_special:
            return a if pair is None else a + one(pair)
        out = bos + a + eos
        if pair is not None:
            out += bos + one(pair) + eos
        return out

    def decode(self, ids, skip_special=False):
        """Replace('▁', ' '), ByteFallback, Fuse, Strip(' ', 1, 0) — the Rust decoders."""
        tokens = [self.sp.id_to_piece(i) for i in ids if not (skip_special and i in self.special)]
        out, run = [], []

        def flush():
            if run:
                b = bytes(run)
                try:
                    out.append(b.decode('utf-8'))
                except UnicodeDecodeError:
                    out.append('\ufffd' * len(b))
                run.clear()
        for t in tokens:
            m = BYTE.match(t)
            if m:
                run.append(int(m.group(1), 16))
                continue
            flush()
            out.append(t.replace(SPACE, ' '))
        flush()
        text = ''.join(out)
        return text[1:] if text.startswith(' ') else text


def build_llama(tmp, words):
    en = os.path.join(OUT, 'corpus.en.txt')
    de = os.path.join(OUT, 'corpus.de.txt')
    cjk = os.path.join(tmp, 'cjk.txt')
    with open(cjk, 'w', encoding='utf-8') as f:
        f.write('你好，世界。我们正在学习机器翻译。\n机器翻译和自然语言处理。\n你好 世界 你好\n')
    model = train(os.path.join(tmp, 'llama'), [en, de, cjk], model_type='bpe', vocab_size=600, character_coverage=0.995,
                  byte_fallback=True, normalization_rule_name='identity', add_dummy_prefix=True,
                  remove_extra_whitespaces=False, split_digits=True, allow_whitespace_only_pieces=True,
                  user_defined_symbols=['<sep>'], unk_id=0, bos_id=1, eos_id=2, pad_id=-1, hard_vocab_limit=False)
    refs = {}
    for name, legacy, add_eos in (('llama-bpe', True, False), ('llama-bpe-nonlegacy', False, True)):
        folder = os.path.join(OUT, name)
        os.makedirs(folder, exist_ok=True)
        shutil.copy(model, os.path.join(folder, 'tokenizer.model'))
        config = {'tokenizer_class': 'LlamaTokenizer', 'add_bos_token': True, 'add_eos_token': add_eos,
                  'bos_token': '<s>', 'eos_token': '</s>', 'unk_token': '<unk>', 'pad_token': None,
                  'model_max_length': 64, 'padding_side': 'left', 'clean_up_tokenization_spaces': False}
        if not legacy:
            config['legacy'] = False
        write_json(os.path.join(folder, 'tokenizer_config.json'), config)
        tok = LlamaFast(model, legacy, True, add_eos)
        cases = []
        for t in TEXTS + random_texts(5, words, 160):
            ids = tok.encode(t)
            cases.append({
                'text': t, 'ids': ids, 'idsNoSpecial': tok.encode(t, add_special=False),
                'spmIds': tok.sp.encode(t), 'decoded': tok.decode(ids), 'decodedSkipSpecial': tok.decode(ids, True),
            })
        pairs = [{'a': a, 'b': b, 'ids': tok.encode(a, pair=b)} for a, b in
                 (('How old are you?', 'I am six.'), ('Café', ' naïve 你好'), ('', 'only b'))]
        rnd = random.Random(4)
        id_decodes = []
        for _ in range(60):
            ids = [rnd.randrange(tok.sp.vocab_size()) for _ in range(rnd.randint(0, 12))]
            id_decodes.append({'ids': ids, 'decoded': tok.decode(ids), 'decodedSkipSpecial': tok.decode(ids, True)})
        refs[name] = {
            'generator': f'scripts/gen_spm_refs.py with sentencepiece {spm.__version__} (LlamaTokenizerFast rules of transformers 4.x)',
            'folder': name, 'texts': cases, 'pairs': pairs, 'idDecodes': id_decodes, 'vocabSize': tok.sp.vocab_size(),
        }
    return refs


def main():
    os.makedirs(os.path.join(OUT, 'refs'), exist_ok=True)
    words = words_of(os.path.join(OUT, 'corpus.en.txt')) + words_of(os.path.join(OUT, 'corpus.de.txt'))
    with tempfile.TemporaryDirectory() as tmp:
        refs = {**build_marian(tmp, words), **build_llama(tmp, words)}
    for name, r in refs.items():
        path = os.path.join(OUT, 'refs', f'{name}.json')
        with open(path, 'w', encoding='utf-8') as f:
            json.dump(r, f, ensure_ascii=False)
            f.write('\n')
        print('wrote', os.path.relpath(path, ROOT), len(r['texts']), 'texts')


if __name__ == '__main__':
    main()
