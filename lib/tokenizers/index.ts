/** Hugging Face tokenizers for model folders: `AutoTokenizer.fromPretrained(dir)`. */
export {
  AutoTokenizer,
  createTokenizer,
  type PreTrainedTokenizer,
  type BatchEncoding,
  type CallOptions,
  type EncodeOptions,
  type DecodeOptions,
} from './tokenizer';
export { readTokenizerFolder, type TokenizerFiles } from './load';
export { IncrementalDecoder, type DecodeFn } from './incremental-decoder';
