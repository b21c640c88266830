#!/usr/bin/python3
"""Generate test/fixtures/hf/llama-chat: a tiny random Llama chat model folder for the server tests.

Usage (from the repository root, with Debian's torch 1.13 and python3-jinja2):

    /usr/bin/python3 scripts/gen_serving_fixtures.py

The folder is what `save_pretrained` writes for a chat model: config.json
(`eos_token_id` the end-of-turn token), model.safetensors (random weights of
the published Llama architecture under Hugging Face's key names), and a
byte-level BPE tokenizer.json (GPT-2's, trained by scripts/gen_gpt2_fixtures.py,
plus the ChatML turn markers `<|im_start|>` and `<|im_end|>` as special added
tokens) with a tokenizer_config.json holding a ChatML chat template that
writes `bos_token` first and raises on roles it does not know.

reference.json holds what the server must reproduce, computed here
independently of attnode:

- `chat`: the messages, the prompt text the template renders (Jinja2, the
  engine transformers' apply_chat_template uses), its ids (special tokens split
  out first, then GPT-2's BPE on each piece), the greedy continuation
  (full recompute per step, stopping at eos) and its text;
- `completion`: a plain prompt, its ids, the greedy continuation and text.
"""
import json
import sys
from pathlib import Path

import jinja2
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_fixtures import serialize_safetensors  # noqa: E402
from gen_gpt2_fixtures import B2U, build_tokenizer, encode  # noqa: E402
from gen_llama_fixtures import hf_llama_logits, llama_weights  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / 'test' / 'fixtures' / 'hf' / 'llama-chat'
BOS, IM_START, IM_END = '<|endoftext|>', '<|im_start|>', '<|im_end|>'
TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('Conversation roles must be system, user or assistant, got ' + message['role']) }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
U2B = {c: b for b, c in B2U.items()}


def encode_with_specials(text: str, vocab: dict[str, int], merges: list, specials: dict[str, int]) -> list[int]:
    """Added tokens are matched in the raw text first (leftmost, longest); the pieces between are BPE-encoded."""
    ids: list[int] = []
    i = start = 0
    while i < len(text):
        hit = next((s for s in sorted(specials, key=len, reverse=True) if text.startswith(s, i)), None)
        if hit is None:
            i += 1
            continue
        if start < i:
            ids += encode(text[start:i], vocab, merges)
        ids.append(specials[hit])
        i = start = i + len(hit)
    if start < len(text):
        ids += encode(text[start:], vocab, merges)
    return ids


def decode(ids: list[int], inv: dict[int, str], special_ids: set[int]) -> str:
    """Byte-level decode without the special tokens; invalid UTF-8 becomes U+FFFD as in the JS engine."""
    data = bytes(U2B[c] for i in ids if i not in special_ids for c in inv[i])
    return data.decode('utf-8', errors='replace')


def greedy(w: dict, cfg: dict, ids: list[int], steps: int, eos: int) -> list[int]:
    seq, out = list(ids), []
    for _ in range(steps):
        t = int(hf_llama_logits(w, cfg, seq, False)[-1].argmax())
        out.append(t)
        if t == eos:
            break
        seq.append(t)
    return out


def main() -> int:
    tj, vocab, merges = build_tokenizer()
    base = len(vocab)
    specials = {BOS: base, IM_START: base + 1, IM_END: base + 2}
    tj['added_tokens'] = [{'id': i, 'content': s, 'single_word': False, 'lstrip': False, 'rstrip': False,
                           'normalized': False, 'special': True} for s, i in specials.items()]
    V = base + len(specials)
    cfg = {'model_type': 'llama', 'architectures': ['LlamaForCausalLM'], 'vocab_size': V, 'hidden_size': 32,
           'intermediate_size': 64, 'num_hidden_layers': 2, 'num_attention_heads': 4, 'num_key_value_heads': 2,
           'max_position_embeddings': 128, 'rms_norm_eps': 1e-5, 'rope_theta': 10000.0, 'tie_word_embeddings': False,
           'bos_token_id': specials[BOS], 'eos_token_id': specials[IM_END], 'torch_dtype': 'float32'}
    torch.manual_seed(2026)
    w = llama_weights(cfg, lambda *s: torch.randn(*s) * 0.3, False)

    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)  # transformers' settings

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)
    env.globals['raise_exception'] = raise_exception
    messages = [{'role': 'system', 'content': 'You are a cat.'}, {'role': 'user', 'content': 'The cat sat on the mat'}]
    rendered = env.from_string(TEMPLATE).render(messages=messages, add_generation_prompt=True, bos_token=BOS,
                                                eos_token=IM_END, unk_token=BOS)
    inv = {i: s for s, i in vocab.items()}
    inv.update({i: s for s, i in specials.items()})
    special_ids = set(specials.values())
    chat_ids = encode_with_specials(rendered, vocab, merges, specials)
    prompt = 'Once upon a time'
    prompt_ids = encode(prompt, vocab, merges)
    with torch.no_grad():
        chat_gen = greedy(w, cfg, chat_ids, 12, specials[IM_END])
        comp_gen = greedy(w, cfg, prompt_ids, 12, specials[IM_END])

    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / 'config.json').write_text(json.dumps(cfg, indent=2) + '\n')
    (OUT / 'model.safetensors').write_bytes(serialize_safetensors({k: v.contiguous() for k, v in w.items()}, {'format': 'pt'}))
    (OUT / 'tokenizer.json').write_text(json.dumps(tj, ensure_ascii=False) + '\n')
    (OUT / 'tokenizer_config.json').write_text(json.dumps({
        'tokenizer_class': 'GPT2Tokenizer', 'model_max_length': cfg['max_position_embeddings'], 'bos_token': BOS,
        'eos_token': IM_END, 'unk_token': BOS, 'pad_token': BOS, 'add_prefix_space': False, 'chat_template': TEMPLATE},
        indent=2) + '\n')
    ref = {
        'producer': 'scripts/gen_serving_fixtures.py', 'torch_version': torch.__version__, 'jinja2_version': jinja2.__version__,
        'chat': {'messages': messages, 'rendered': rendered, 'input_ids': chat_ids, 'greedy': chat_gen,
                 'text': decode(chat_gen, inv, special_ids)},
        'completion': {'prompt': prompt, 'input_ids': prompt_ids, 'greedy': comp_gen, 'text': decode(comp_gen, inv, special_ids)},
    }
    (OUT / 'reference.json').write_text(json.dumps(ref, ensure_ascii=False, indent=1) + '\n')
    for p in sorted(OUT.iterdir()):
        print(f'{p.stat().st_size:>9}  {p.relative_to(OUT.parent.parent)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
