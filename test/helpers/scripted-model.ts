/**
 * Test models and token tables shared by the generation tests: a causal LM that emits a fixed script of tokens
 * (one-hot logits), and the byte-level BPE id of every byte of a GPT-2-style tokenizer.
 */
import type { CausalModel } from '../../lib/models/generation';
import type { PreTrainedTokenizer } from '../../lib/tokenizers';
import { SelfAttentionCache } from '../../lib/nn/kv-cache';
import { getBackend } from '../../lib/backend/registry';
import { Tensor } from '../../lib/tensor';

/** A CausalModel that emits `script` token by token (one-hot logits), counting its forward calls. */
export function scripted(script: number[], vocabSize: number): CausalModel & { calls: number } {
  let promptLen = 0;
  const m = {
    calls: 0,
    config: { vocabSize, maxPositionEmbeddings: 1024 },
    backend: getBackend('js'),
    createCache: () => new SelfAttentionCache([]),
    forward(inputIds: Tensor<'int32'>, o: { cache: SelfAttentionCache }): Tensor<'float32'> {
      if (o.cache.length === 0) promptLen = inputIds.shape[1]!;
      o.cache.advanceEmpty(inputIds.shape[1]!);
      const step = o.cache.length - promptLen;
      m.calls++;
      const logits = new Float32Array(vocabSize);
      logits[script[step] ?? 0] = 10;
      return new Tensor(logits, [1, 1, vocabSize], 'float32');
    },
  };
  return m;
}

/** The byte-level BPE id of every byte (GPT-2's bytes_to_unicode). */
export function byteLevelIds(tok: PreTrainedTokenizer): number[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n++); }
  const out: number[] = new Array(256);
  bs.forEach((b, i) => (out[b] = tok.tokenToId(String.fromCharCode(cs[i]!))!));
  return out;
}
