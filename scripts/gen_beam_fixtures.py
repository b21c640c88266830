#!/usr/bin/python3
"""Generate test/fixtures/beam_search.json: Hugging Face generation references.

Usage (from the repository root, with Debian's torch 1.13):

    /usr/bin/python3 scripts/gen_beam_fixtures.py           # write the file
    /usr/bin/python3 scripts/gen_beam_fixtures.py --check   # fail if it would change

No `transformers` package exists here, so this script re-implements, in
PyTorch, what transformers' `generate` does (the 4.36+ code, with the
decoder-prompt-aware length counting of its BeamSearchScorer):

- `_beam_search`: inputs repeated per beam, beam scores starting
  [0, -1e9, ...], per step log_softmax of the last logits, the logits
  processors, plus the beam scores, top max(2, 1 + #eos) * num_beams
  candidates over each input's beams (torch.topk), then
  `BeamSearchScorer.process` / `.finalize` and `BeamHypotheses` (length
  penalty over the generated length, early_stopping False / True / "never");
- `_greedy_search`: the processors on the raw logits, arg-max, finished rows
  padded;
- the logits processors RepetitionPenalty, NoRepeatNGram, NoBadWords
  (SequenceBias with -inf), MinNewTokensLength and ForcedEOS, in
  `_get_logits_processor`'s order, then LogitNormalization when the options
  set `renormalizeLogits` (renormalize_logits), written after transformers'
  tensor code.

The models are the committed tiny folders test/fixtures/hf/gpt2-tiny (GPT-2,
via scripts/gen_gpt2_fixtures.py's `gpt2_logits`) and
test/fixtures/hf/llama-gqa (a batched, masked form of
scripts/gen_llama_fixtures.py's `hf_llama_logits`, checked equal to it on an
unpadded row), loaded from their safetensors. Every step recomputes the whole
sequence (no KV cache), with transformers' left-padding conventions
(position ids cumsum(mask) - 1, padded keys masked), so the reference is
independent of attnode's cache and of its beam reordering.

Each case is checked to be robust: decoding again with the logits perturbed
by uniform noise of +-2e-4 (a few seeds) must give the same sequences, so
float32 differences between PyTorch and attnode (~1e-6) cannot flip a
decision.

The JSON holds, per case: the model folder, input_ids and attention_mask,
the options (attnode's camelCase names), and the expected `sequences`
(prompt + new tokens, [batch * num_return_sequences, width]) and, for beam
search, `sequences_scores`.
"""
import argparse
import json
import math
import struct
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_gpt2_fixtures import gpt2_logits  # noqa: E402
from gen_llama_fixtures import hf_llama_logits, rotate_half  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HF = ROOT / 'test' / 'fixtures' / 'hf'
OUT = ROOT / 'test' / 'fixtures' / 'beam_search.json'


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """F32 tensors of a safetensors file (the format: u64 header length, JSON header, raw little-endian data)."""
    raw = path.read_bytes()
    n = struct.unpack('<Q', raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        assert info['dtype'] == 'F32', f'{path}: {name} is {info["dtype"]}'
        a, b = info['data_offsets']
        out[name] = torch.frombuffer(bytearray(data[a:b]), dtype=torch.float32).reshape(info['shape'])
    return out


# ---------------------------------------------------------------------------
# Models: logits [B, T, V] of ids [B, T] with attention mask [B, T] (1 = token)

def llama_logits(w: dict, cfg: dict, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """hf_llama_logits batched, with transformers' left-padding positions and additive mask (finfo.min)."""
    B, T = ids.shape
    E, H, KV = cfg['hidden_size'], cfg['num_attention_heads'], cfg['num_key_value_heads']
    hd, eps = E // H, cfg['rms_norm_eps']
    inv = 1.0 / (cfg['rope_theta'] ** (torch.arange(0, hd, 2).float() / hd))
    pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    freqs = pos[..., None].float() * inv  # [B, T, hd/2]
    emb = torch.cat([freqs, freqs], dim=-1)[:, None]  # [B, 1, T, hd]
    cos, sin = emb.cos(), emb.sin()
    norm = lambda x, g: g * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))  # noqa: E731
    allowed = torch.tril(torch.ones(T, T, dtype=torch.bool))[None, None] & (mask[:, None, None, :] == 1)
    bias = torch.zeros(B, 1, T, T).masked_fill(~allowed, torch.finfo(torch.float32).min)
    x = w['model.embed_tokens.weight'][ids]
    for l in range(cfg['num_hidden_layers']):
        p = f'model.layers.{l}.'
        h = norm(x, w[p + 'input_layernorm.weight'])
        proj = lambda n: h @ w[p + f'self_attn.{n}.weight'].T  # noqa: E731
        q = proj('q_proj').view(B, T, H, hd).transpose(1, 2)
        k = proj('k_proj').view(B, T, KV, hd).transpose(1, 2)
        v = proj('v_proj').view(B, T, KV, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // KV, dim=1)
        v = v.repeat_interleave(H // KV, dim=1)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + bias, dim=-1) @ v
        x = x + a.transpose(1, 2).reshape(B, T, E) @ w[p + 'self_attn.o_proj.weight'].T
        h = norm(x, w[p + 'post_attention_layernorm.weight'])
        g = h @ w[p + 'mlp.gate_proj.weight'].T
        x = x + (torch.nn.functional.silu(g) * (h @ w[p + 'mlp.up_proj.weight'].T)) @ w[p + 'mlp.down_proj.weight'].T
    head = w['model.embed_tokens.weight'] if cfg['tie_word_embeddings'] else w['lm_head.weight']
    return norm(x, w['model.norm.weight']) @ head.T


def load_model(name: str):
    cfg = json.loads((HF / name / 'config.json').read_text())
    w = read_safetensors(HF / name / 'model.safetensors')
    if cfg['model_type'] == 'gpt2':
        return cfg, lambda ids, mask: gpt2_logits(w, cfg, ids, mask)
    ids = [3, 17, 42, 5, 88, 1, 60]
    with torch.no_grad():
        single = hf_llama_logits(w, cfg, ids, False)
        batched = llama_logits(w, cfg, torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))[0]
    assert (single - batched).abs().max() < 1e-5, 'batched llama_logits differs from hf_llama_logits'
    return cfg, lambda ids, mask: llama_logits(w, cfg, ids, mask)


# ---------------------------------------------------------------------------
# Logits processors (transformers.generation.logits_process)

def repetition_penalty(input_ids, scores, penalty):
    score = torch.gather(scores, 1, input_ids)
    score = torch.where(score < 0, score * penalty, score / penalty)
    return scores.scatter(1, input_ids, score)


def no_repeat_ngram(input_ids, scores, n):
    num_hypos, cur_len = scores.shape[0], input_ids.shape[-1]
    if cur_len + 1 < n:
        return scores
    scores = scores.clone()
    for idx in range(num_hypos):
        gen_tokens = input_ids[idx].tolist()
        generated = {}
        for ngram in zip(*[gen_tokens[i:] for i in range(n)]):
            generated[tuple(ngram[:-1])] = generated.get(tuple(ngram[:-1]), []) + [ngram[-1]]
        banned = generated.get(tuple(gen_tokens[cur_len + 1 - n:cur_len]), [])
        scores[idx, banned] = -float('inf')
    return scores


def no_bad_words(input_ids, scores, bad_words_ids, eos):
    seqs = [s for s in bad_words_ids if all(s != [i] for i in eos)]
    bias = torch.zeros_like(scores)
    for s in seqs:
        if len(s) == 1:
            bias[:, s[0]] = -float('inf')
    for s in seqs:
        if len(s) == 1 or len(s) > input_ids.shape[1]:
            continue
        prefix = len(s) - 1
        matching = torch.eq(input_ids[:, -prefix:], torch.tensor(s[:-1])).prod(dim=1)
        bias[:, s[-1]] += torch.where(matching.bool(), torch.tensor(-float('inf')), torch.tensor(0.0))
    return scores + bias


def min_new_tokens(input_ids, scores, prompt_len, minimum, eos):
    if input_ids.shape[-1] - prompt_len < minimum:
        scores = scores.clone()
        for i in eos:
            scores[:, i] = -float('inf')
    return scores


def forced_eos(input_ids, scores, max_length, forced):
    if input_ids.shape[-1] == max_length - 1:
        scores = torch.full_like(scores, -float('inf'))
        scores[:, forced] = 0
    return scores


def processors(o: dict, prompt_len: int, max_length: int):
    eos = o.get('eosTokenId')
    eos = [] if eos is None else [eos] if isinstance(eos, int) else eos

    def apply(input_ids, scores):
        if o.get('repetitionPenalty', 1.0) != 1.0:
            scores = repetition_penalty(input_ids, scores, o['repetitionPenalty'])
        if o.get('noRepeatNgramSize', 0) > 0:
            scores = no_repeat_ngram(input_ids, scores, o['noRepeatNgramSize'])
        if o.get('badWordsIds'):
            scores = no_bad_words(input_ids, scores, o['badWordsIds'], eos)
        if o.get('minNewTokens', 0) > 0 and eos:
            scores = min_new_tokens(input_ids, scores, prompt_len, o['minNewTokens'], eos)
        if o.get('forcedEosTokenId') is not None:
            f = o['forcedEosTokenId']
            scores = forced_eos(input_ids, scores, max_length, [f] if isinstance(f, int) else f)
        if o.get('renormalizeLogits'):
            # LogitNormalization, which _get_logits_processor appends after every other processor.
            scores = torch.log_softmax(scores, dim=-1)
        return scores
    return apply, eos


# ---------------------------------------------------------------------------
# Beam search (transformers.generation.beam_search + utils._beam_search)

class BeamHypotheses:
    def __init__(self, num_beams, length_penalty, early_stopping, max_length):
        self.length_penalty, self.early_stopping = length_penalty, early_stopping
        self.max_length, self.num_beams = max_length, num_beams
        self.beams = []
        self.worst_score = 1e9

    def __len__(self):
        return len(self.beams)

    def add(self, hyp, sum_logprobs, generated_len):
        score = sum_logprobs / (generated_len ** self.length_penalty)
        if len(self) < self.num_beams or score > self.worst_score:
            self.beams.append((score, hyp))
            if len(self) > self.num_beams:
                sorted_next_scores = sorted([(s, idx) for idx, (s, _) in enumerate(self.beams)])
                del self.beams[sorted_next_scores[0][1]]
                self.worst_score = sorted_next_scores[1][0]
            else:
                self.worst_score = min(score, self.worst_score)

    def is_done(self, best_sum_logprobs, cur_len, decoder_prompt_len):
        if len(self) < self.num_beams:
            return False
        if self.early_stopping is True:
            return True
        if self.early_stopping is False:
            return self.worst_score >= best_sum_logprobs / (cur_len - decoder_prompt_len) ** self.length_penalty
        if self.length_penalty > 0.0:
            highest = best_sum_logprobs / (self.max_length - decoder_prompt_len) ** self.length_penalty
        else:
            highest = best_sum_logprobs / (cur_len - decoder_prompt_len) ** self.length_penalty
        return self.worst_score >= highest


class BeamSearchScorer:
    def __init__(self, batch_size, num_beams, length_penalty, early_stopping, num_beam_hyps_to_keep, max_length):
        self.num_beams, self.group_size = num_beams, num_beams
        self.num_beam_hyps_to_keep = num_beam_hyps_to_keep
        self._beam_hyps = [BeamHypotheses(num_beams, length_penalty, early_stopping, max_length) for _ in range(batch_size)]
        self._done = [False] * batch_size

    @property
    def is_done(self):
        return all(self._done)

    def process(self, input_ids, next_scores, next_tokens, next_indices, pad_token_id, eos_token_id, decoder_prompt_len):
        cur_len = input_ids.shape[-1] + 1
        batch_size = len(self._beam_hyps)
        next_beam_scores = torch.zeros((batch_size, self.group_size), dtype=next_scores.dtype)
        next_beam_tokens = torch.zeros((batch_size, self.group_size), dtype=next_tokens.dtype)
        next_beam_indices = torch.zeros((batch_size, self.group_size), dtype=next_indices.dtype)
        for batch_idx in range(batch_size):
            if self._done[batch_idx]:
                next_beam_scores[batch_idx, :] = 0
                next_beam_tokens[batch_idx, :] = pad_token_id
                next_beam_indices[batch_idx, :] = 0
                continue
            beam_idx = 0
            for beam_token_rank, (next_token, next_score, next_index) in enumerate(
                    zip(next_tokens[batch_idx], next_scores[batch_idx], next_indices[batch_idx])):
                batch_beam_idx = batch_idx * self.group_size + next_index
                if eos_token_id and next_token.item() in eos_token_id:
                    if beam_token_rank >= self.group_size:
                        continue
                    self._beam_hyps[batch_idx].add(input_ids[batch_beam_idx].clone(), next_score.item(),
                                                   generated_len=cur_len - decoder_prompt_len)
                else:
                    next_beam_scores[batch_idx, beam_idx] = next_score
                    next_beam_tokens[batch_idx, beam_idx] = next_token
                    next_beam_indices[batch_idx, beam_idx] = batch_beam_idx
                    beam_idx += 1
                if beam_idx == self.group_size:
                    break
            assert beam_idx == self.group_size
            self._done[batch_idx] = self._done[batch_idx] or self._beam_hyps[batch_idx].is_done(
                next_scores[batch_idx].max().item(), cur_len, decoder_prompt_len)
        return next_beam_scores.view(-1), next_beam_tokens.view(-1), next_beam_indices.view(-1)

    def finalize(self, input_ids, final_beam_scores, max_length, pad_token_id, eos_token_id, decoder_prompt_len):
        batch_size = len(self._beam_hyps)
        for batch_idx, beam_hyp in enumerate(self._beam_hyps):
            if self._done[batch_idx]:
                continue
            for beam_id in range(self.num_beams):
                batch_beam_idx = batch_idx * self.num_beams + beam_id
                final_tokens = input_ids[batch_beam_idx]
                beam_hyp.add(final_tokens, final_beam_scores[batch_beam_idx].item(),
                             generated_len=final_tokens.shape[-1] - decoder_prompt_len)
        sent_lengths = input_ids.new(batch_size * self.num_beam_hyps_to_keep)
        best, best_scores = [], torch.zeros(batch_size * self.num_beam_hyps_to_keep, dtype=torch.float32)
        for i, beam_hyp in enumerate(self._beam_hyps):
            sorted_hyps = sorted(beam_hyp.beams, key=lambda x: x[0])
            for j in range(self.num_beam_hyps_to_keep):
                score, hyp = sorted_hyps.pop()
                sent_lengths[self.num_beam_hyps_to_keep * i + j] = len(hyp)
                best.append(hyp)
                best_scores[i * self.num_beam_hyps_to_keep + j] = score
        sent_max_len = min(sent_lengths.max().item() + 1, max_length)
        decoded = input_ids.new(batch_size * self.num_beam_hyps_to_keep, sent_max_len)
        if sent_lengths.min().item() != sent_lengths.max().item():
            decoded.fill_(pad_token_id)
        for i, hypo in enumerate(best):
            decoded[i, :sent_lengths[i]] = hypo
            if sent_lengths[i] < sent_max_len:
                decoded[i, sent_lengths[i]] = eos_token_id[0]
        return decoded, best_scores


def beam_search(logits_fn, input_ids, attention_mask, o: dict, noise=None):
    num_beams = o['numBeams']
    batch_size = input_ids.shape[0]
    input_ids = input_ids.repeat_interleave(num_beams, dim=0)
    attention_mask = attention_mask.repeat_interleave(num_beams, dim=0)
    decoder_prompt_len = input_ids.shape[-1]
    max_length = decoder_prompt_len + o['maxNewTokens']
    process_logits, eos = processors(o, decoder_prompt_len, max_length)
    pad = o.get('padTokenId', eos[0] if eos else 0)
    scorer = BeamSearchScorer(batch_size, num_beams, o.get('lengthPenalty', 1.0), o.get('earlyStopping', False),
                              o.get('numReturnSequences', 1), max_length)
    beam_scores = torch.zeros((batch_size, num_beams), dtype=torch.float)
    beam_scores[:, 1:] = -1e9
    beam_scores = beam_scores.view((batch_size * num_beams,))
    while True:
        logits = logits_fn(input_ids, attention_mask)[:, -1, :]
        if noise is not None:
            logits = logits + (torch.rand(logits.shape, generator=noise) - 0.5) * 4e-4
        next_token_scores = torch.nn.functional.log_softmax(logits, dim=-1)
        next_token_scores = process_logits(input_ids, next_token_scores)
        next_token_scores = next_token_scores + beam_scores[:, None].expand_as(next_token_scores)
        vocab_size = next_token_scores.shape[-1]
        next_token_scores = next_token_scores.view(batch_size, num_beams * vocab_size)
        next_token_scores, next_tokens = torch.topk(next_token_scores, max(2, 1 + len(eos)) * num_beams, dim=1,
                                                    largest=True, sorted=True)
        next_indices = torch.div(next_tokens, vocab_size, rounding_mode='floor')
        next_tokens = next_tokens % vocab_size
        beam_scores, beam_next_tokens, beam_idx = scorer.process(input_ids, next_token_scores, next_tokens,
                                                                 next_indices, pad, eos, decoder_prompt_len)
        input_ids = torch.cat([input_ids[beam_idx, :], beam_next_tokens.unsqueeze(-1)], dim=-1)
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((attention_mask.shape[0], 1))], dim=-1)
        if scorer.is_done or input_ids.shape[-1] >= max_length:
            break
    return scorer.finalize(input_ids, beam_scores, max_length, pad, eos, decoder_prompt_len)


def greedy_search(logits_fn, input_ids, attention_mask, o: dict, noise=None):
    prompt_len = input_ids.shape[-1]
    max_length = prompt_len + o['maxNewTokens']
    process_logits, eos = processors(o, prompt_len, max_length)
    pad = o.get('padTokenId', eos[0] if eos else 0)
    unfinished = torch.ones(input_ids.shape[0], dtype=torch.long)
    while input_ids.shape[-1] < max_length:
        logits = logits_fn(input_ids, attention_mask)[:, -1, :]
        if noise is not None:
            logits = logits + (torch.rand(logits.shape, generator=noise) - 0.5) * 4e-4
        next_tokens = torch.argmax(process_logits(input_ids, logits), dim=-1)
        if eos:
            next_tokens = next_tokens * unfinished + pad * (1 - unfinished)
        input_ids = torch.cat([input_ids, next_tokens[:, None]], dim=-1)
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((attention_mask.shape[0], 1))], dim=-1)
        if eos:
            unfinished = unfinished & ~torch.isin(next_tokens, torch.tensor(eos))
            if unfinished.max() == 0:
                break
    return input_ids, None


# ---------------------------------------------------------------------------
# Cases

PROMPTS = {
    # gpt2-tiny ids ('The dog ran to the park' / 'Once upon a time there', left-padded) from its reference.json.
    'gpt2-tiny': None,
    'llama-gqa': {'input_ids': [[0, 0, 7, 31, 64, 12, 90], [55, 3, 18, 77, 2, 41, 9]],
                  'attention_mask': [[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]]},
}


def prompts(model: str, rows: str) -> tuple[list[list[int]], list[list[int]]]:
    if model == 'gpt2-tiny':
        ref = json.loads((HF / 'gpt2-tiny' / 'reference.json').read_text())
        batch = (ref['batch']['input_ids'], ref['batch']['attention_mask'])
        single = ([ref['input_ids']], [[1] * len(ref['input_ids'])])
    else:
        p = PROMPTS[model]
        batch = (p['input_ids'], p['attention_mask'])
        single = ([p['input_ids'][1]], [p['attention_mask'][1]])
    return batch if rows == 'batch' else single


# (name, model, prompt rows, options): eos ids are tokens these random models actually reach, so hypotheses
# finish early; each option of the brief appears at least once.
CASES = [
    ('beams2', 'gpt2-tiny', 'single', {'numBeams': 2, 'maxNewTokens': 8}),
    ('beams4_batch_nrs2', 'gpt2-tiny', 'batch', {'numBeams': 4, 'numReturnSequences': 2, 'maxNewTokens': 8}),
    ('beams4_eos_lp1', 'gpt2-tiny', 'batch', {'numBeams': 4, 'maxNewTokens': 10, 'eosTokenId': 194, 'numReturnSequences': 2,
                                              'padTokenId': 316}),
    ('beams4_eos_lp06', 'gpt2-tiny', 'batch', {'numBeams': 4, 'maxNewTokens': 10, 'eosTokenId': 194, 'lengthPenalty': 0.6}),
    ('beams4_eos_lp2', 'gpt2-tiny', 'batch', {'numBeams': 4, 'maxNewTokens': 10, 'eosTokenId': 194, 'lengthPenalty': 2.0,
                                              'numReturnSequences': 3}),
    ('beams3_eos_early_true', 'gpt2-tiny', 'batch', {'numBeams': 3, 'maxNewTokens': 10, 'eosTokenId': 194,
                                                     'earlyStopping': True, 'numReturnSequences': 2, 'padTokenId': 0}),
    ('beams3_eos_early_never', 'gpt2-tiny', 'batch', {'numBeams': 3, 'maxNewTokens': 10, 'eosTokenId': 194,
                                                      'earlyStopping': 'never', 'lengthPenalty': 1.5}),
    ('beams4_two_eos_pad', 'gpt2-tiny', 'batch', {'numBeams': 4, 'maxNewTokens': 9, 'eosTokenId': [194, 313],
                                                  'padTokenId': 316, 'numReturnSequences': 2}),
    ('beams4_processors', 'gpt2-tiny', 'batch', {'numBeams': 4, 'maxNewTokens': 10, 'eosTokenId': 194,
                                                 'repetitionPenalty': 1.3, 'noRepeatNgramSize': 2,
                                                 'badWordsIds': [[81], [300, 284]], 'minNewTokens': 4}),
    ('beams2_forced_eos', 'gpt2-tiny', 'batch', {'numBeams': 2, 'maxNewTokens': 6, 'eosTokenId': 316,
                                                 'forcedEosTokenId': 316}),
    ('greedy_processors', 'gpt2-tiny', 'batch', {'maxNewTokens': 10, 'eosTokenId': 194, 'repetitionPenalty': 1.2,
                                                 'noRepeatNgramSize': 2, 'badWordsIds': [[81], [262, 302]],
                                                 'minNewTokens': 3, 'forcedEosTokenId': 194}),
    ('llama_beams4', 'llama-gqa', 'batch', {'numBeams': 4, 'maxNewTokens': 8, 'numReturnSequences': 2}),
    ('llama_beams3_eos_early', 'llama-gqa', 'batch', {'numBeams': 3, 'maxNewTokens': 10, 'eosTokenId': 25,
                                                      'lengthPenalty': 0.6, 'earlyStopping': True, 'padTokenId': 0}),
    ('llama_beams4_eos_nrs2', 'llama-gqa', 'batch', {'numBeams': 4, 'maxNewTokens': 10, 'eosTokenId': 28,
                                                     'numReturnSequences': 2, 'padTokenId': 0}),
]


def run(logits_fn, o, ids, mask, noise=None):
    with torch.no_grad():
        fn = beam_search if o.get('numBeams', 1) > 1 else greedy_search
        return fn(logits_fn, torch.tensor(ids), torch.tensor(mask), o, noise)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument('--check', action='store_true', help='fail if the file would change')
    args = ap.parse_args()
    torch.set_num_threads(1)
    models = {}
    cases = []
    for name, model, rows, o in CASES:
        if model not in models:
            models[model] = load_model(model)
        _, logits_fn = models[model]
        ids, mask = prompts(model, rows)
        seqs, scores = run(logits_fn, o, ids, mask)
        for seed in range(3):
            again, _ = run(logits_fn, o, ids, mask, torch.Generator().manual_seed(seed))
            if not torch.equal(again, seqs):
                raise SystemExit(f'case {name}: not robust to logit noise of 2e-4 (seed {seed}); pick other settings')
        case = {'name': name, 'model': model, 'input_ids': ids, 'attention_mask': mask, 'options': o,
                'sequences': seqs.tolist()}
        if scores is not None:
            case['sequences_scores'] = [round(float(s), 6) for s in scores]
        prompt_len = len(ids[0])
        eos = o.get('eosTokenId')
        eos = [] if eos is None else [eos] if isinstance(eos, int) else eos
        finished = sum(1 for row in seqs.tolist() if any(t in eos for t in row[prompt_len:]))
        print(f'{name:28} {list(seqs.shape)}  rows ending in eos: {finished}')
        cases.append(case)
    text = json.dumps({'producer': 'scripts/gen_beam_fixtures.py', 'torch_version': torch.__version__,
                       'cases': cases}) + '\n'
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f'{OUT.relative_to(ROOT)} would change')
            return 1
        return 0
    OUT.write_text(text)
    print(f'{OUT.stat().st_size:>9}  {OUT.relative_to(ROOT)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
