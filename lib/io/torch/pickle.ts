/**
 * A restricted pickle machine: it reads the opcodes torch.save emits
 * (protocol 2, and the framing/memo opcodes of protocol 4) and builds plain
 * values, and it never imports or calls anything by itself. Every GLOBAL is
 * handed to the caller's `global` hook, which returns a marker for the names
 * it allows and throws for every other one; REDUCE only reaches the caller's
 * `call` hook with such a marker. So `os.system`, `builtins.eval`,
 * `subprocess.Popen` or any class of the pickling program is refused by name
 * when the GLOBAL is read, before anything uses it.
 *
 * Values: None → null, bool → boolean, int → number (bigint beyond 2^53),
 * float → number, str → string, bytes → Uint8Array, list → array,
 * tuple → {@link PyTuple}, dict and OrderedDict → {@link PyDict}.
 *
 * Every opcode consumes at least one byte and creates at most one object, so
 * time and memory are linear in the pickle's length; lengths are checked
 * against the bytes left before anything is allocated.
 */
import { fail } from './reads';

/** A Python tuple. */
export class PyTuple {
  constructor(readonly items: readonly unknown[]) {}
}

/** A Python dict or OrderedDict, in insertion order. Keys of primitive types compare by value. */
export class PyDict {
  readonly map = new Map<unknown, unknown>();
}

/** What the machine asks of its caller. */
export interface PickleHooks {
  /** Resolves GLOBAL/STACK_GLOBAL `module.name` to a marker value, or throws to refuse it. */
  global(module: string, name: string): unknown;
  /** REDUCE: `func` is a value `global` returned; throws for what it does not call. */
  call(func: unknown, args: PyTuple): unknown;
  /** BINPERSID: the persistent id (torch: a storage reference). */
  persistentLoad(pid: unknown): unknown;
  /** BUILD: sets `state` on `obj` (a value `call` returned), or throws. */
  build(obj: unknown, state: unknown): void;
}

/** The RangeErrors thrown because the pickle runs past the bytes given (a caller with more of the file may retry). */
const truncations = new WeakSet<Error>();

/** Whether `e` says the pickle ran past the end of the bytes it was given. */
export function isPickleTruncated(e: unknown): boolean {
  return e instanceof RangeError && truncations.has(e);
}

function truncated(msg: string): RangeError {
  const e = new RangeError(msg);
  truncations.add(e);
  return e;
}

/** The result of {@link unpickle}. */
export interface Unpickled {
  value: unknown;
  /** Offset just after the STOP opcode. */
  end: number;
  /** Containers the pickle created (a bound for walking what it built). */
  objects: number;
}

const OP_NAMES: Record<number, string> = {
  0x28: 'MARK', 0x2e: 'STOP', 0x30: 'POP', 0x31: 'POP_MARK', 0x32: 'DUP', 0x42: 'BINBYTES', 0x43: 'SHORT_BINBYTES',
  0x46: 'FLOAT', 0x47: 'BINFLOAT', 0x49: 'INT', 0x4a: 'BININT', 0x4b: 'BININT1', 0x4c: 'LONG', 0x4d: 'BININT2',
  0x4e: 'NONE', 0x50: 'PERSID', 0x51: 'BINPERSID', 0x52: 'REDUCE', 0x53: 'STRING', 0x54: 'BINSTRING',
  0x55: 'SHORT_BINSTRING', 0x56: 'UNICODE', 0x58: 'BINUNICODE', 0x5d: 'EMPTY_LIST', 0x61: 'APPEND', 0x62: 'BUILD',
  0x63: 'GLOBAL', 0x64: 'DICT', 0x65: 'APPENDS', 0x67: 'GET', 0x68: 'BINGET', 0x69: 'INST', 0x6a: 'LONG_BINGET',
  0x6c: 'LIST', 0x6f: 'OBJ', 0x70: 'PUT', 0x71: 'BINPUT', 0x72: 'LONG_BINPUT', 0x73: 'SETITEM', 0x74: 'TUPLE',
  0x29: 'EMPTY_TUPLE', 0x75: 'SETITEMS', 0x7d: 'EMPTY_DICT', 0x80: 'PROTO', 0x81: 'NEWOBJ', 0x82: 'EXT1',
  0x83: 'EXT2', 0x84: 'EXT4', 0x85: 'TUPLE1', 0x86: 'TUPLE2', 0x87: 'TUPLE3', 0x88: 'NEWTRUE', 0x89: 'NEWFALSE',
  0x8a: 'LONG1', 0x8b: 'LONG4', 0x8c: 'SHORT_BINUNICODE', 0x8d: 'BINUNICODE8', 0x8e: 'BINBYTES8', 0x8f: 'EMPTY_SET',
  0x90: 'ADDITEMS', 0x91: 'FROZENSET', 0x92: 'NEWOBJ_EX', 0x93: 'STACK_GLOBAL', 0x94: 'MEMOIZE', 0x95: 'FRAME',
  0x96: 'BYTEARRAY8', 0x97: 'NEXT_BUFFER', 0x98: 'READONLY_BUFFER',
};

/** Why an opcode is not run, for those that exist but are refused. */
const REFUSED: Record<number, string> = {
  0x69: 'creates an instance of a named class', 0x6f: 'creates an instance of a class', 0x81: 'creates an instance of a class',
  0x92: 'creates an instance of a class', 0x82: 'uses the extension registry', 0x83: 'uses the extension registry',
  0x84: 'uses the extension registry', 0x50: 'is a text persistent id (protocol 0)', 0x49: 'is protocol 0 text',
  0x4c: 'is protocol 0 text', 0x46: 'is protocol 0 text', 0x53: 'is protocol 0 text', 0x56: 'is protocol 0 text',
  0x67: 'is protocol 0 text', 0x70: 'is protocol 0 text', 0x8f: 'builds a set', 0x90: 'builds a set', 0x91: 'builds a set',
  0x96: 'is an out-of-band buffer (protocol 5)', 0x97: 'is an out-of-band buffer (protocol 5)',
  0x98: 'is an out-of-band buffer (protocol 5)',
};

/** The longest LONG4 integer read (bytes); torch writes none longer than a few. */
const MAX_LONG_BYTES = 1024;

function opName(op: number): string {
  return OP_NAMES[op] ?? `0x${op.toString(16).padStart(2, '0')}`;
}

/** Two's-complement little-endian integer of `bytes`. */
function decodeLong(bytes: Uint8Array): number | bigint {
  if (bytes.length === 0) return 0;
  let v = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]!);
  if (bytes[bytes.length - 1]! & 0x80) v -= 1n << BigInt(8 * bytes.length);
  return toInt(v);
}

function toInt(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/**
 * Runs the pickle that starts at `start` of `bytes` until its STOP.
 * `what` names it in errors (e.g. `'archive/data.pkl'`).
 * @throws SyntaxError for malformed pickles (unknown opcode, stack or mark
 *   underflow, a missing memo entry); TypeError for refused opcodes and what
 *   the hooks refuse; RangeError when the bytes end before STOP
 *   ({@link isPickleTruncated} tells it from the others).
 */
export function unpickle(bytes: Uint8Array, start: number, what: string, hooks: PickleHooks): Unpickled {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const utf8 = new TextDecoder('utf-8');
  const memo = new Map<number, unknown>();
  let stack: unknown[] = [];
  const marks: unknown[][] = [];
  let pos = start;
  let op = 0;
  let opAt = start;
  let objects = 0;

  const bad = (msg: string, Cls: new (m: string) => Error = SyntaxError): never =>
    fail(Cls, `${what}: ${opName(op)} at offset ${opAt}: ${msg}`);
  const need = (n: number): number => {
    if (n > bytes.byteLength - pos) {
      throw truncated(`torch checkpoint: ${what}: ${opName(op)} at offset ${opAt} needs ${n} bytes, only ${bytes.byteLength - pos} left (truncated file?)`);
    }
    const at = pos;
    pos += n;
    return at;
  };
  const u8 = (): number => bytes[need(1)]!;
  const u16 = (): number => view.getUint16(need(2), true);
  const u32 = (): number => view.getUint32(need(4), true);
  const u64 = (): number => {
    const v = view.getBigUint64(need(8), true);
    if (v > BigInt(bytes.byteLength)) bad(`length ${v} exceeds the pickle`, RangeError);
    return Number(v);
  };
  const take = (n: number): Uint8Array => {
    const at = need(n);
    return bytes.subarray(at, at + n);
  };
  const pop = (): unknown => {
    if (stack.length === 0) bad('the stack is empty (malformed pickle)');
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0) bad('the stack is empty (malformed pickle)');
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const items = stack;
    const prev = marks.pop();
    if (prev === undefined) bad('no MARK to pop to (malformed pickle)');
    stack = prev!;
    return items;
  };
  const push = (v: unknown): void => {
    stack.push(v);
  };
  const created = <T>(v: T): T => {
    objects++;
    return v;
  };
  const line = (): string => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) {
      throw truncated(`torch checkpoint: ${what}: ${opName(op)} at offset ${opAt}: no end of line (truncated file?)`);
    }
    const s = utf8.decode(bytes.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const dictOf = (target: unknown): PyDict => {
    if (!(target instanceof PyDict)) bad(`sets items on ${typeName(target)}, not a dict`, TypeError);
    return target as PyDict;
  };
  const listOf = (target: unknown): unknown[] => {
    if (!Array.isArray(target)) bad(`appends to ${typeName(target)}, not a list`, TypeError);
    return target as unknown[];
  };
  const setItems = (d: PyDict, items: unknown[]): void => {
    if (items.length % 2 !== 0) bad('an odd number of items (malformed pickle)');
    for (let i = 0; i < items.length; i += 2) d.map.set(items[i], items[i + 1]);
  };

  for (;;) {
    opAt = pos;
    op = 0;
    op = u8();
    if (op in REFUSED) bad(`not supported: this opcode ${REFUSED[op]}, which a torch.save state dict never needs`, TypeError);
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) bad('protocol above 5');
        break;
      case 0x95: // FRAME: a length hint only
        need(8);
        break;
      case 0x2e: // STOP
        if (marks.length !== 0) bad('a MARK is still open (malformed pickle)');
        if (stack.length !== 1) bad(`the stack holds ${stack.length} values, expected 1 (malformed pickle)`);
        return { value: stack[0], end: pos, objects };
      case 0x28: // MARK
        marks.push(stack);
        stack = [];
        break;
      case 0x30: // POP
        if (stack.length === 0) popMark();
        else stack.pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        push(top());
        break;
      case 0x4e:
        push(null);
        break;
      case 0x88:
        push(true);
        break;
      case 0x89:
        push(false);
        break;
      case 0x4a: // BININT
        push(view.getInt32(need(4), true));
        break;
      case 0x4b: // BININT1
        push(u8());
        break;
      case 0x4d: // BININT2
        push(u16());
        break;
      case 0x8a: // LONG1
        push(decodeLong(take(u8())));
        break;
      case 0x8b: { // LONG4
        const n = view.getInt32(need(4), true);
        if (n < 0 || n > MAX_LONG_BYTES) bad(`an integer of ${n} bytes (more than ${MAX_LONG_BYTES})`, RangeError);
        push(decodeLong(take(n)));
        break;
      }
      case 0x47: // BINFLOAT (big-endian)
        push(view.getFloat64(need(8), false));
        break;
      case 0x58: // BINUNICODE
        push(utf8.decode(take(u32())));
        break;
      case 0x8c: // SHORT_BINUNICODE
        push(utf8.decode(take(u8())));
        break;
      case 0x8d: // BINUNICODE8
        push(utf8.decode(take(u64())));
        break;
      case 0x55: // SHORT_BINSTRING: a Python 2 str, read as Latin-1 text (torch's own fields are ASCII)
        push(latin1(take(u8())));
        break;
      case 0x54: { // BINSTRING
        const n = view.getInt32(need(4), true);
        if (n < 0) bad(`negative length ${n}`, RangeError);
        push(latin1(take(n)));
        break;
      }
      case 0x43: // SHORT_BINBYTES
        push(take(u8()).slice());
        break;
      case 0x42: // BINBYTES
        push(take(u32()).slice());
        break;
      case 0x8e: // BINBYTES8
        push(take(u64()).slice());
        break;
      case 0x29: // EMPTY_TUPLE
        push(created(new PyTuple([])));
        break;
      case 0x85: // TUPLE1
        push(created(new PyTuple([pop()])));
        break;
      case 0x86: { // TUPLE2
        const b = pop();
        const a = pop();
        push(created(new PyTuple([a, b])));
        break;
      }
      case 0x87: { // TUPLE3
        const c = pop();
        const b = pop();
        const a = pop();
        push(created(new PyTuple([a, b, c])));
        break;
      }
      case 0x74: // TUPLE
        push(created(new PyTuple(popMark())));
        break;
      case 0x5d: // EMPTY_LIST
        push(created([]));
        break;
      case 0x6c: // LIST
        push(created(popMark()));
        break;
      case 0x7d: // EMPTY_DICT
        push(created(new PyDict()));
        break;
      case 0x64: { // DICT
        const d = created(new PyDict());
        setItems(d, popMark());
        push(d);
        break;
      }
      case 0x61: { // APPEND
        const v = pop();
        listOf(top()).push(v);
        break;
      }
      case 0x65: { // APPENDS
        const items = popMark();
        const list = listOf(top());
        for (const v of items) list.push(v);
        break;
      }
      case 0x73: { // SETITEM
        const v = pop();
        const k = pop();
        dictOf(top()).map.set(k, v);
        break;
      }
      case 0x75: { // SETITEMS
        const items = popMark();
        setItems(dictOf(top()), items);
        break;
      }
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // BINGET
      case 0x6a: { // LONG_BINGET
        const i = op === 0x68 ? u8() : u32();
        if (!memo.has(i)) bad(`memo entry ${i} was never stored (malformed pickle)`);
        push(memo.get(i));
        break;
      }
      case 0x63: { // GLOBAL
        const module = line();
        const name = line();
        push(created(hooks.global(module, name)));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') bad('module and name must be strings', TypeError);
        push(created(hooks.global(module as string, name as string)));
        break;
      }
      case 0x52: { // REDUCE
        const args = pop();
        const func = pop();
        if (!(args instanceof PyTuple)) bad(`the arguments are ${typeName(args)}, not a tuple`, TypeError);
        push(created(hooks.call(func, args as PyTuple)));
        break;
      }
      case 0x62: { // BUILD
        const state = pop();
        hooks.build(top(), state);
        break;
      }
      case 0x51: // BINPERSID
        push(created(hooks.persistentLoad(pop())));
        break;
      default:
        bad(`unknown opcode 0x${op.toString(16).padStart(2, '0')} (not a pickle, or a corrupt one)`);
    }
  }
}

function latin1(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]!);
  return s;
}

/** A short Python-style type name of a value, for messages. */
export function typeName(v: unknown): string {
  if (v === null) return 'None';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  if (typeof v === 'bigint') return 'int';
  if (typeof v === 'string') return 'str';
  if (v instanceof Uint8Array) return 'bytes';
  if (Array.isArray(v)) return 'list';
  if (v instanceof PyTuple) return 'tuple';
  if (v instanceof PyDict) return 'dict';
  const named = (v as { pyType?: unknown }).pyType;
  return typeof named === 'string' ? named : 'object';
}
