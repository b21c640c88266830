/** Hugging Face tokenizers for model folders: `AutoTokenizer.fromPretrained(dir)`. */
export {
  AutoTokenizer,
  createTokenizer,
  type PreTrainedTokenizer,
  type BatchEncoding,
  type CallOptions,
  type EncodeOptions,
  type DecodeOptions,
  type TokenizerCore,
} from './tokenizer';
export { readTokenizerFolder, type TokenizerFiles, type JsonTokenizerFiles, type MarianTokenizerFiles } from './load';
export { IncrementalDecoder, type DecodeFn } from './incremental-decoder';
