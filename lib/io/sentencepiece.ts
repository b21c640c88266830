/**
 * SentencePiece model files (`tokenizer.model`, Marian's `source.spm` / `target.spm`): the serialised
 * `sentencepiece.ModelProto` protobuf message, read field by field from the wire format.
 *
 * Only the fields a tokenizer needs are kept (sentencepiece_model.proto numbers):
 *
 * | message        | field                                                                         |
 * | -------------- | ----------------------------------------------------------------------------- |
 * | ModelProto     | 1 pieces (repeated), 2 trainer_spec, 3 normalizer_spec, 5 denormalizer_spec   |
 * | SentencePiece  | 1 piece, 2 score (float), 3 type (enum, default NORMAL)                        |
 * | TrainerSpec    | 3 model_type, 4 vocab_size, 24 treat_whitespace_as_suffix, 35 byte_fallback,   |
 * |                | 40–43 unk/bos/eos/pad_id, 44 unk_surface, 45–48 unk/bos/eos/pad_piece          |
 * | NormalizerSpec | 1 name, 2 precompiled_charsmap, 3 add_dummy_prefix, 4 remove_extra_whitespaces,|
 * |                | 5 escape_whitespaces                                                          |
 *
 * Every other field is skipped by its wire type, as protobuf readers do. Missing fields take the proto2
 * defaults the .proto file declares. The reader is our own (about a hundred lines of varint and
 * length-delimited decoding) rather than a protobuf package: a generic reader (protobufjs, @bufbuild/protobuf,
 * pbf) would still need this schema written out, and its errors say "index out of range" where a user needs the
 * file and the field that is broken. Here every truncation or malformed value is a RangeError that names both.
 */
import { readFileSync } from 'node:fs';

/** `SentencePiece.Type`: how a piece takes part in encoding. */
export type PieceType = 'normal' | 'unknown' | 'control' | 'user_defined' | 'unused' | 'byte';

const PIECE_TYPES: Record<number, PieceType> = { 1: 'normal', 2: 'unknown', 3: 'control', 4: 'user_defined', 5: 'unused', 6: 'byte' };

/** One vocabulary entry; its id is its index in {@link SentencePieceModel.pieces}. */
export interface SentencePiece {
  piece: string;
  /** float32 log probability (Unigram) or merge priority (BPE). */
  score: number;
  type: PieceType;
}

/** `TrainerSpec.ModelType` values a tokenizer can run. */
export type SentencePieceModelType = 'unigram' | 'bpe' | 'word' | 'char';

const MODEL_TYPES: Record<number, SentencePieceModelType> = { 1: 'unigram', 2: 'bpe', 3: 'word', 4: 'char' };

/** The fields of `TrainerSpec` that tokenizing depends on (proto2 defaults when absent). */
export interface TrainerSpec {
  modelType: SentencePieceModelType;
  vocabSize: number;
  unkId: number;
  /** -1 when disabled; not checked against the vocabulary (tokenizers take bos/eos/pad from their config). */
  bosId: number;
  eosId: number;
  padId: number;
  unkPiece: string;
  bosPiece: string;
  eosPiece: string;
  padPiece: string;
  /** What decoding prints for the unknown piece (" ⁇ " by default). */
  unkSurface: string;
  byteFallback: boolean;
  treatWhitespaceAsSuffix: boolean;
}

/** `NormalizerSpec`: the text normalisation run before the model. */
export interface NormalizerSpec {
  name: string;
  /** The compiled normalisation rules (a double-array trie plus replacement strings); empty for `identity`. */
  precompiledCharsmap: Uint8Array;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
}

/** A parsed SentencePiece model. */
export interface SentencePieceModel {
  pieces: SentencePiece[];
  trainerSpec: TrainerSpec;
  normalizerSpec: NormalizerSpec;
  /** Present when the file has a denormalizer (applied after decoding by SentencePiece; rarely used). */
  denormalizerSpec: NormalizerSpec | null;
  /** The file name, for error messages of later stages. */
  file: string;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** A cursor over one message's bytes; `path` names the message for errors ("trainer_spec", "pieces[3]"). */
class WireReader {
  pos: number;

  constructor(
    readonly buf: Uint8Array,
    readonly file: string,
    readonly path: string,
    readonly start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  fail(field: string, what: string): RangeError {
    const name = this.path ? `${this.path}.${field}` : field;
    return new RangeError(`${this.file}: field '${name}' ${what} (byte ${this.pos} of ${this.buf.byteLength}); the file is truncated or not a SentencePiece model`);
  }

  /** A varint as [low 32 bits, high 32 bits] (unsigned). */
  varint(field: string): [number, number] {
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw this.fail(field, 'ends inside a varint');
      const b = this.buf[this.pos++]!;
      const bits = b & 0x7f;
      if (i < 4) lo |= bits << (7 * i);
      else if (i === 4) {
        lo |= (bits & 0x0f) << 28;
        hi |= bits >> 4;
      } else hi |= bits << (7 * i - 32);
      if ((b & 0x80) === 0) {
        if (i === 9 && b > 1) throw this.fail(field, 'is a varint longer than 64 bits');
        return [lo >>> 0, hi >>> 0];
      }
    }
    throw this.fail(field, 'is a varint longer than 10 bytes');
  }

  /** proto `int32` (negative values are sign-extended to 64 bits on the wire). */
  int32(field: string): number {
    return this.varint(field)[0] | 0;
  }

  uint32(field: string): number {
    const [lo, hi] = this.varint(field);
    if (hi !== 0) throw this.fail(field, `must fit in 32 bits, got ${hi} * 2^32 + ${lo}`);
    return lo;
  }

  bool(field: string): boolean {
    const [lo, hi] = this.varint(field);
    return lo !== 0 || hi !== 0;
  }

  float(field: string): number {
    if (this.end - this.pos < 4) throw this.fail(field, 'ends inside a 4-byte float');
    const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 4).getFloat32(0, true);
    this.pos += 4;
    return v;
  }

  /** The [begin, end) of a length-delimited field's payload. */
  span(field: string): [number, number] {
    const len = this.uint32(field);
    if (len > this.end - this.pos) throw this.fail(field, `declares ${len} bytes but only ${this.end - this.pos} remain`);
    const begin = this.pos;
    this.pos += len;
    return [begin, this.pos];
  }

  bytes(field: string): Uint8Array {
    const [b, e] = this.span(field);
    return this.buf.subarray(b, e);
  }

  string(field: string): string {
    const [b, e] = this.span(field);
    try {
      return utf8.decode(this.buf.subarray(b, e));
    } catch {
      this.pos = b;
      throw this.fail(field, 'is not valid UTF-8');
    }
  }

  /** A nested message's reader. */
  message(field: string, path: string): WireReader {
    const [b, e] = this.span(field);
    return new WireReader(this.buf, this.file, path, b, e);
  }

  /** Iterates the fields of this message: calls `visit(fieldNumber, wireType)`, which reads or returns false to skip. */
  fields(visit: (field: number, wire: number) => boolean): void {
    while (this.pos < this.end) {
      const tagAt = this.pos;
      const tag = this.uint32('<tag>');
      const field = tag >>> 3;
      const wire = tag & 7;
      if (field === 0) {
        this.pos = tagAt;
        throw this.fail('<tag>', 'has field number 0, which protobuf does not allow');
      }
      if (visit(field, wire)) continue;
      this.skip(field, wire);
    }
  }

  /** Requires `wire` for a known field (a file whose field has another wire type is not this schema). */
  expect(name: string, wire: number, want: number): void {
    if (wire !== want) throw this.fail(name, `has wire type ${wire}, expected ${want}`);
  }

  skip(field: number, wire: number): void {
    const name = `#${field}`;
    switch (wire) {
      case 0: this.varint(name); return;
      case 1:
        if (this.end - this.pos < 8) throw this.fail(name, 'ends inside an 8-byte value');
        this.pos += 8;
        return;
      case 2: this.span(name); return;
      case 5:
        if (this.end - this.pos < 4) throw this.fail(name, 'ends inside a 4-byte value');
        this.pos += 4;
        return;
      default:
        throw this.fail(name, `has wire type ${wire}, which SentencePiece files do not use (groups or a corrupt tag)`);
    }
  }
}

function readPiece(r: WireReader): SentencePiece {
  let piece: string | undefined;
  let score = 0;
  let type: PieceType = 'normal';
  r.fields((field, wire) => {
    if (field === 1) {
      r.expect('piece', wire, 2);
      piece = r.string('piece');
    } else if (field === 2) {
      r.expect('score', wire, 5);
      score = r.float('score');
      if (Number.isNaN(score)) throw r.fail('score', 'is NaN');
    } else if (field === 3) {
      r.expect('type', wire, 0);
      const t = r.int32('type');
      const name = PIECE_TYPES[t];
      if (name === undefined) throw r.fail('type', `must be 1..6 (NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE), got ${t}`);
      type = name;
    } else return false;
    return true;
  });
  if (piece === undefined || piece === '') throw r.fail('piece', piece === undefined ? 'is missing' : 'is empty');
  return { piece, score, type };
}

function readTrainerSpec(r: WireReader): TrainerSpec {
  const spec: TrainerSpec = {
    modelType: 'unigram', vocabSize: 8000, unkId: 0, bosId: 1, eosId: 2, padId: -1,
    unkPiece: '<unk>', bosPiece: '<s>', eosPiece: '</s>', padPiece: '<pad>', unkSurface: ' \u2047 ',
    byteFallback: false, treatWhitespaceAsSuffix: false,
  };
  const ints: Record<number, keyof TrainerSpec> = { 4: 'vocabSize', 40: 'unkId', 41: 'bosId', 42: 'eosId', 43: 'padId' };
  const strings: Record<number, keyof TrainerSpec> = { 44: 'unkSurface', 45: 'unkPiece', 46: 'bosPiece', 47: 'eosPiece', 48: 'padPiece' };
  const bools: Record<number, keyof TrainerSpec> = { 24: 'treatWhitespaceAsSuffix', 35: 'byteFallback' };
  const set = spec as unknown as Record<string, unknown>;
  const snake = (k: string) => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
  r.fields((field, wire) => {
    if (field === 3) {
      r.expect('model_type', wire, 0);
      const t = r.int32('model_type');
      const name = MODEL_TYPES[t];
      if (name === undefined) throw r.fail('model_type', `must be 1..4 (UNIGRAM, BPE, WORD, CHAR), got ${t}`);
      spec.modelType = name;
    } else if (ints[field]) {
      const k = ints[field];
      r.expect(snake(k), wire, 0);
      set[k] = r.int32(snake(k));
    } else if (strings[field]) {
      const k = strings[field];
      r.expect(snake(k), wire, 2);
      set[k] = r.string(snake(k));
    } else if (bools[field]) {
      const k = bools[field];
      r.expect(snake(k), wire, 0);
      set[k] = r.bool(snake(k));
    } else return false;
    return true;
  });
  return spec;
}

function readNormalizerSpec(r: WireReader): NormalizerSpec {
  const spec: NormalizerSpec = {
    name: '', precompiledCharsmap: new Uint8Array(0), addDummyPrefix: true, removeExtraWhitespaces: true, escapeWhitespaces: true,
  };
  r.fields((field, wire) => {
    switch (field) {
      case 1: r.expect('name', wire, 2); spec.name = r.string('name'); return true;
      case 2: r.expect('precompiled_charsmap', wire, 2); spec.precompiledCharsmap = r.bytes('precompiled_charsmap'); return true;
      case 3: r.expect('add_dummy_prefix', wire, 0); spec.addDummyPrefix = r.bool('add_dummy_prefix'); return true;
      case 4: r.expect('remove_extra_whitespaces', wire, 0); spec.removeExtraWhitespaces = r.bool('remove_extra_whitespaces'); return true;
      case 5: r.expect('escape_whitespaces', wire, 0); spec.escapeWhitespaces = r.bool('escape_whitespaces'); return true;
      default: return false;
    }
  });
  return spec;
}

/**
 * Parses a serialised `ModelProto`.
 *
 * @param bytes the file's contents.
 * @param file the name used in error messages.
 * @throws RangeError naming the file and the field for truncated or malformed data: a varint or a
 *   length-delimited field running past its message, an unknown wire type, a piece type or model type outside the
 *   enum, a piece that is missing, empty, not UTF-8 or defined twice, no pieces at all, an `unk_id` outside the
 *   vocabulary, or a `bos_id` / `eos_id` / `pad_id` below -1.
 */
export function parseSentencePieceModel(bytes: Uint8Array, file = 'SentencePiece model'): SentencePieceModel {
  if (!(bytes instanceof Uint8Array)) {
    throw new TypeError(`parseSentencePieceModel: argument 'bytes' must be a Uint8Array, got ${bytes === null ? 'null' : typeof bytes}`);
  }
  const top = new WireReader(bytes, file, '', 0, bytes.byteLength);
  const pieces: SentencePiece[] = [];
  let trainerSpec: TrainerSpec | null = null;
  let normalizerSpec: NormalizerSpec | null = null;
  let denormalizerSpec: NormalizerSpec | null = null;
  top.fields((field, wire) => {
    if (field === 1) {
      top.expect('pieces', wire, 2);
      pieces.push(readPiece(top.message('pieces', `pieces[${pieces.length}]`)));
    } else if (field === 2) {
      top.expect('trainer_spec', wire, 2);
      trainerSpec = readTrainerSpec(top.message('trainer_spec', 'trainer_spec'));
    } else if (field === 3) {
      top.expect('normalizer_spec', wire, 2);
      normalizerSpec = readNormalizerSpec(top.message('normalizer_spec', 'normalizer_spec'));
    } else if (field === 5) {
      top.expect('denormalizer_spec', wire, 2);
      denormalizerSpec = readNormalizerSpec(top.message('denormalizer_spec', 'denormalizer_spec'));
    } else return false;
    return true;
  });
  if (pieces.length === 0) throw new RangeError(`${file}: field 'pieces' is empty; a SentencePiece model lists its vocabulary there (the file is truncated or not a SentencePiece model)`);
  const seen = new Map<string, number>();
  pieces.forEach((p, i) => {
    const prev = seen.get(p.piece);
    if (prev !== undefined) throw new RangeError(`${file}: field 'pieces[${i}].piece' ${JSON.stringify(p.piece)} is already pieces[${prev}]`);
    seen.set(p.piece, i);
  });
  const trainer: TrainerSpec = trainerSpec ?? readTrainerSpec(new WireReader(bytes, file, 'trainer_spec', 0, 0));
  const n = pieces.length;
  if (trainer.unkId < 0 || trainer.unkId >= n) {
    throw new RangeError(`${file}: field 'trainer_spec.unk_id' must be in [0, ${n}) (the number of pieces), got ${trainer.unkId}`);
  }
  // bos/eos/pad ids are informational (tokenizers take these tokens from their configuration); -1 disables one.
  for (const [key, name] of [['bosId', 'bos_id'], ['eosId', 'eos_id'], ['padId', 'pad_id']] as const) {
    if (trainer[key] < -1) throw new RangeError(`${file}: field 'trainer_spec.${name}' must be -1 or a piece id, got ${trainer[key]}`);
  }
  return {
    pieces,
    trainerSpec: trainer,
    normalizerSpec: normalizerSpec ?? readNormalizerSpec(new WireReader(bytes, file, 'normalizer_spec', 0, 0)),
    denormalizerSpec,
    file,
  };
}

/** Reads and parses a SentencePiece model file; errors name the file. */
export function readSentencePieceModel(path: string): SentencePieceModel {
  if (typeof path !== 'string') throw new TypeError(`readSentencePieceModel: argument 'path' must be a string, got ${typeof path}`);
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new Error(`${path}: cannot read (${(e as Error).message})`);
  }
  return parseSentencePieceModel(bytes, path);
}
