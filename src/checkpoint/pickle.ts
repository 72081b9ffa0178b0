/**
 * A data-only unpickler (protocols 0-5). Nothing is ever executed: globals are looked up in a
 * table of known constructors (OrderedDict, torch's tensor rebuild functions, ...) and every
 * other class becomes an inert placeholder, so checkpoints that pickle argparse Namespaces,
 * yacs CfgNodes, numpy scalars or optimizer state still load.
 *
 * Python values map to: None → null, bool → boolean, int → number (bigint beyond 2^53),
 * float → number, str → string, bytes → Uint8Array, list/tuple/set → array, dict → a
 * null-prototype object (non-string keys are stringified), unknown instance → a null-prototype
 * object tagged with PY_CLASS (and PY_ARGS, PY_STATE, PY_ITEMS as the pickle supplies them).
 */
import { UserError } from '../errors.js';

export const PY_CLASS = Symbol.for('qkscope.pickle.class'); // 'module.name' of a placeholder
export const PY_ARGS = Symbol.for('qkscope.pickle.args'); // constructor arguments
export const PY_STATE = Symbol.for('qkscope.pickle.state'); // what BUILD set (Python __setstate__)
export const PY_ITEMS = Symbol.for('qkscope.pickle.items'); // items appended to a list subclass

export type PyDict = { [key: string]: unknown };

/** A global reference (module.name); `call` is set for the constructors we know. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
    readonly call?: (args: unknown[]) => unknown,
  ) {}
  get fullName(): string {
    return `${this.module}.${this.name}`;
  }
}

export interface UnpickleOptions {
  /** Used in error messages (the file, and the entry inside it). */
  location: string;
  /** Extra known constructors by 'module.name'; they override the built-in table. */
  globals?: Record<string, (args: unknown[]) => unknown>;
  persistentLoad?: (pid: unknown) => unknown;
}

export function newDict(): PyDict {
  return Object.create(null) as PyDict;
}

export function isDict(x: unknown): x is PyDict {
  return typeof x === 'object' && x !== null && !Array.isArray(x) && Object.getPrototypeOf(x) === null;
}

/** A placeholder for an instance of a class we do not model. */
export function placeholder(cls: string, args: unknown[] = []): PyDict {
  const o = newDict();
  Object.defineProperty(o, PY_CLASS, { value: cls, enumerable: false });
  Object.defineProperty(o, PY_ARGS, { value: args, enumerable: false });
  return o;
}

export function pyClassOf(x: unknown): string | undefined {
  return typeof x === 'object' && x !== null ? ((x as Record<symbol, unknown>)[PY_CLASS] as string | undefined) : undefined;
}

/** Python's `obj.__dict__` after unpickling (BUILD state), if any. */
export function pyState(x: unknown): unknown {
  return typeof x === 'object' && x !== null ? (x as Record<symbol, unknown>)[PY_STATE] : undefined;
}

function keyOf(k: unknown): string {
  if (typeof k === 'string') return k;
  if (typeof k === 'number' || typeof k === 'bigint') return String(k);
  if (k === null) return 'None';
  if (typeof k === 'boolean') return k ? 'True' : 'False';
  try {
    return JSON.stringify(k, (_, v) => (typeof v === 'bigint' ? String(v) : v));
  } catch {
    return String(k);
  }
}

function setItem(target: unknown, k: unknown, v: unknown): void {
  if (isDict(target)) {
    Object.defineProperty(target, keyOf(k), { value: v, enumerable: true, writable: true, configurable: true });
  }
  // Anything else (a rebuilt tensor, a number) cannot hold items: ignore, as a placeholder would.
}

function appendItems(target: unknown, items: unknown[]): void {
  if (Array.isArray(target)) {
    for (const it of items) target.push(it);
  } else if (typeof target === 'object' && target !== null) {
    const t = target as Record<symbol, unknown>;
    if (!t[PY_ITEMS]) Object.defineProperty(t, PY_ITEMS, { value: [], enumerable: false });
    (t[PY_ITEMS] as unknown[]).push(...items);
  }
}

function latin1(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
  return out;
}

function numpyScalar(args: unknown[]): unknown {
  // numpy.core.multiarray.scalar(dtype, raw bytes): decode the common numeric kinds.
  const [dt, raw] = args;
  const code = dt && typeof dt === 'object' ? ((dt as Record<symbol, unknown>)[PY_ARGS] as unknown[] | undefined)?.[0] : undefined;
  const bytes = typeof raw === 'string' ? latin1(raw) : raw instanceof Uint8Array ? raw : undefined;
  if (typeof code !== 'string' || !bytes) return placeholder('numpy.core.multiarray.scalar', args);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (code) {
    case 'f8': return v.getFloat64(0, true);
    case 'f4': return v.getFloat32(0, true);
    case 'i8': return Number(v.getBigInt64(0, true));
    case 'i4': return v.getInt32(0, true);
    case 'u8': return Number(v.getBigUint64(0, true));
    case 'b1': return bytes[0] !== 0;
    default: return placeholder('numpy.core.multiarray.scalar', args);
  }
}

function orderedDict(args: unknown[]): PyDict {
  const d = newDict();
  // OrderedDict([(k, v), ...]) in old protocols; OrderedDict() then SETITEMS in new ones.
  if (Array.isArray(args[0])) for (const kv of args[0]) if (Array.isArray(kv) && kv.length === 2) setItem(d, kv[0], kv[1]);
  return d;
}

const BUILTIN_GLOBALS: Record<string, (args: unknown[]) => unknown> = {
  'collections.OrderedDict': orderedDict,
  'builtins.dict': orderedDict,
  'builtins.list': (a) => (Array.isArray(a[0]) ? [...a[0]] : []),
  'builtins.tuple': (a) => (Array.isArray(a[0]) ? [...a[0]] : []),
  'builtins.set': (a) => (Array.isArray(a[0]) ? [...a[0]] : []),
  'builtins.frozenset': (a) => (Array.isArray(a[0]) ? [...a[0]] : []),
  'builtins.bytearray': (a) => (typeof a[0] === 'string' ? latin1(a[0]) : a[0] instanceof Uint8Array ? a[0] : new Uint8Array()),
  'builtins.bytes': (a) => (typeof a[0] === 'string' ? latin1(a[0]) : new Uint8Array()),
  '_codecs.encode': (a) => (typeof a[0] === 'string' ? latin1(a[0]) : new Uint8Array()),
  'copyreg._reconstructor': reconstructor,
  'copyreg.__newobj__': (a) => instantiate(a[0], a.slice(1)),
  'numpy.core.multiarray.scalar': numpyScalar,
  'numpy._core.multiarray.scalar': numpyScalar,
};

/** copyreg._reconstructor(cls, base, state): protocols 0-1 save list/dict subclasses this way. */
function reconstructor(a: unknown[]): unknown {
  const obj = instantiate(a[0], []);
  const base = a[1] instanceof PyGlobal ? a[1].fullName : '';
  if (base === 'builtins.list' && Array.isArray(a[2])) appendItems(obj, a[2]);
  else if (base === 'builtins.dict' && isDict(a[2])) for (const [k, v] of Object.entries(a[2])) setItem(obj, k, v);
  return obj;
}

// Protocols 0-2 write Python 2 module names (pickle's fix_imports).
const PY2_MODULES: Record<string, string> = { __builtin__: 'builtins', copy_reg: 'copyreg' };

function instantiate(cls: unknown, args: unknown[]): unknown {
  if (cls instanceof PyGlobal) {
    if (!cls.call) return placeholder(cls.fullName, args);
    try {
      return cls.call(args);
    } catch (e) {
      if (e instanceof UserError) throw e;
      throw new Fail(`${cls.fullName}: ${(e as Error).message}`);
    }
  }
  return placeholder(pyClassOf(cls) ?? 'unknown', args);
}

class Fail extends Error {}

/** Unpickles `data`; any malformed input is a UserError naming `opts.location`. */
export function unpickle(data: Uint8Array, opts: UnpickleOptions): unknown {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const table = { ...BUILTIN_GLOBALS, ...(opts.globals ?? {}) };
  let pos = 0;
  const stack: unknown[] = [];
  const marks: number[] = [];
  const memo = new Map<number, unknown>();

  const need = (n: number) => {
    if (pos + n > buf.length) throw new Fail('unexpected end of data');
  };
  const u8 = () => (need(1), buf[pos++]);
  const u16 = () => (need(2), (pos += 2), buf.readUInt16LE(pos - 2));
  const u32 = () => (need(4), (pos += 4), buf.readUInt32LE(pos - 4));
  const i32 = () => (need(4), (pos += 4), buf.readInt32LE(pos - 4));
  const u64 = () => (need(8), (pos += 8), Number(buf.readBigUInt64LE(pos - 8)));
  const bytes = (n: number) => (need(n), (pos += n), buf.subarray(pos - n, pos));
  const line = () => {
    const end = buf.indexOf(0x0a, pos);
    if (end < 0) throw new Fail('unterminated text field');
    const s = buf.toString('latin1', pos, end);
    pos = end + 1;
    return s;
  };
  const pop = () => {
    if (stack.length === 0 || (marks.length && stack.length <= marks[marks.length - 1])) throw new Fail('stack underflow');
    return stack.pop();
  };
  const top = () => {
    if (stack.length === 0) throw new Fail('stack underflow');
    return stack[stack.length - 1];
  };
  const popMark = () => {
    const k = marks.pop();
    if (k === undefined) throw new Fail('MARK expected');
    return stack.splice(k);
  };
  const global = (module: string, name: string) => {
    const m = PY2_MODULES[module] ?? module;
    return new PyGlobal(m, name, table[`${m}.${name}`]);
  };
  const long = (b: Buffer): number | bigint => {
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const persistent = (pid: unknown) => {
    if (!opts.persistentLoad) throw new Fail('persistent id without a loader');
    return opts.persistentLoad(pid);
  };

  try {
    for (;;) {
      const op = u8();
      switch (op) {
        case 0x80: u8(); break; // PROTO
        case 0x95: u64(); break; // FRAME: frames are only a read-ahead hint
        case 0x2e: return top(); // STOP
        case 0x28: marks.push(stack.length); break; // MARK
        case 0x30: pop(); break; // POP
        case 0x31: popMark(); break; // POP_MARK
        case 0x32: stack.push(top()); break; // DUP
        case 0x4e: stack.push(null); break; // NONE
        case 0x88: stack.push(true); break; // NEWTRUE
        case 0x89: stack.push(false); break; // NEWFALSE
        case 0x4a: stack.push(i32()); break; // BININT
        case 0x4b: stack.push(u8()); break; // BININT1
        case 0x4d: stack.push(u16()); break; // BININT2
        case 0x8a: stack.push(long(bytes(u8()))); break; // LONG1
        case 0x8b: stack.push(long(bytes(u32()))); break; // LONG4
        case 0x49: { // INT (text); I01/I00 are the protocol-0 booleans
          const s = line();
          stack.push(s === '01' ? true : s === '00' ? false : parseTextInt(s));
          break;
        }
        case 0x4c: stack.push(parseTextInt(line().replace(/L$/, ''))); break; // LONG (text)
        case 0x46: stack.push(parseFloat(line())); break; // FLOAT (text)
        case 0x47: need(8); stack.push(buf.readDoubleBE(pos)); pos += 8; break; // BINFLOAT
        case 0x58: stack.push(bytes(u32()).toString('utf8')); break; // BINUNICODE
        case 0x8c: stack.push(bytes(u8()).toString('utf8')); break; // SHORT_BINUNICODE
        case 0x8d: stack.push(bytes(u64()).toString('utf8')); break; // BINUNICODE8
        case 0x56: stack.push(rawUnicodeEscape(line())); break; // UNICODE (text)
        case 0x53: stack.push(pyStringLiteral(line())); break; // STRING (text, quoted)
        case 0x54: stack.push(bytes(i32()).toString('latin1')); break; // BINSTRING: py2 str
        case 0x55: stack.push(bytes(u8()).toString('latin1')); break; // SHORT_BINSTRING
        case 0x42: stack.push(new Uint8Array(bytes(u32()))); break; // BINBYTES
        case 0x43: stack.push(new Uint8Array(bytes(u8()))); break; // SHORT_BINBYTES
        case 0x8e: stack.push(new Uint8Array(bytes(u64()))); break; // BINBYTES8
        case 0x96: stack.push(new Uint8Array(bytes(u64()))); break; // BYTEARRAY8
        case 0x97: throw new Fail('out-of-band buffers (NEXT_BUFFER) are not supported');
        case 0x98: break; // READONLY_BUFFER: no-op for us
        case 0x29: stack.push([]); break; // EMPTY_TUPLE
        case 0x85: stack.push([pop()]); break; // TUPLE1
        case 0x86: { const b = pop(); const a = pop(); stack.push([a, b]); break; } // TUPLE2
        case 0x87: { const c = pop(); const b = pop(); const a = pop(); stack.push([a, b, c]); break; } // TUPLE3
        case 0x74: stack.push(popMark()); break; // TUPLE
        case 0x5d: stack.push([]); break; // EMPTY_LIST
        case 0x6c: stack.push(popMark()); break; // LIST
        case 0x7d: stack.push(newDict()); break; // EMPTY_DICT
        case 0x64: { // DICT
          const items = popMark();
          const d = newDict();
          for (let i = 0; i + 1 < items.length; i += 2) setItem(d, items[i], items[i + 1]);
          stack.push(d);
          break;
        }
        case 0x8f: stack.push([]); break; // EMPTY_SET
        case 0x90: { const items = popMark(); appendItems(top(), items); break; } // ADDITEMS
        case 0x91: stack.push(popMark()); break; // FROZENSET
        case 0x61: { const v = pop(); appendItems(top(), [v]); break; } // APPEND
        case 0x65: { const items = popMark(); appendItems(top(), items); break; } // APPENDS
        case 0x73: { const v = pop(); const k = pop(); setItem(top(), k, v); break; } // SETITEM
        case 0x75: { // SETITEMS
          const items = popMark();
          const d = top();
          for (let i = 0; i + 1 < items.length; i += 2) setItem(d, items[i], items[i + 1]);
          break;
        }
        case 0x70: memo.set(parseTextInt(line()) as number, top()); break; // PUT
        case 0x71: memo.set(u8(), top()); break; // BINPUT
        case 0x72: memo.set(u32(), top()); break; // LONG_BINPUT
        case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
        case 0x67: stack.push(memoGet(memo, parseTextInt(line()) as number)); break; // GET
        case 0x68: stack.push(memoGet(memo, u8())); break; // BINGET
        case 0x6a: stack.push(memoGet(memo, u32())); break; // LONG_BINGET
        case 0x63: { const m = line(); const n = line(); stack.push(global(m, n)); break; } // GLOBAL
        case 0x93: { // STACK_GLOBAL
          const n = pop();
          const m = pop();
          if (typeof m !== 'string' || typeof n !== 'string') throw new Fail('STACK_GLOBAL needs two strings');
          stack.push(global(m, n));
          break;
        }
        case 0x52: { // REDUCE
          const args = pop();
          const fn = pop();
          stack.push(instantiate(fn, Array.isArray(args) ? args : [args]));
          break;
        }
        case 0x81: { // NEWOBJ
          const args = pop();
          const cls = pop();
          stack.push(instantiate(cls, Array.isArray(args) ? args : []));
          break;
        }
        case 0x92: { // NEWOBJ_EX
          pop(); // kwargs
          const args = pop();
          const cls = pop();
          stack.push(instantiate(cls, Array.isArray(args) ? args : []));
          break;
        }
        case 0x69: { // INST (protocol 0)
          const m = line();
          const n = line();
          stack.push(instantiate(global(m, n), popMark()));
          break;
        }
        case 0x6f: { // OBJ (protocol 1)
          const items = popMark();
          stack.push(instantiate(items[0], items.slice(1)));
          break;
        }
        case 0x62: { // BUILD
          const state = pop();
          const obj = top();
          if (typeof obj === 'object' && obj !== null && !Object.isFrozen(obj)) {
            Object.defineProperty(obj, PY_STATE, { value: state, enumerable: false, configurable: true, writable: true });
          }
          break;
        }
        case 0x50: stack.push(persistent(line())); break; // PERSID
        case 0x51: stack.push(persistent(pop())); break; // BINPERSID
        case 0x82: case 0x83: case 0x84: // EXT1/2/4: the copyreg extension registry
          throw new Fail('extension codes (EXT1/2/4) are not supported');
        default:
          throw new Fail(`unknown opcode 0x${op.toString(16).padStart(2, '0')}`);
      }
    }
  } catch (e) {
    if (e instanceof Fail || e instanceof RangeError) {
      throw new UserError(`${opts.location}: cannot read the pickled data (${e.message} at byte ${pos}); the file is damaged, re-download or re-save it`);
    }
    throw e;
  }
}

function memoGet(memo: Map<number, unknown>, i: number): unknown {
  if (!memo.has(i)) throw new Fail(`memo entry ${i} is missing`);
  return memo.get(i);
}

function parseTextInt(s: string): number | bigint {
  if (!/^[-+]?\d+$/.test(s.trim())) throw new Fail(`bad integer ${JSON.stringify(s)}`);
  const b = BigInt(s.trim());
  return b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
}

function rawUnicodeEscape(s: string): string {
  // Characters below 256 are raw latin-1 bytes; the rest are \uXXXX / \UXXXXXXXX escapes.
  return s.replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (_, a, c) => String.fromCodePoint(parseInt(a ?? c, 16)));
}

function pyStringLiteral(s: string): string {
  const q = s[0];
  if ((q !== "'" && q !== '"') || s[s.length - 1] !== q) throw new Fail('bad STRING literal');
  return s.slice(1, -1).replace(/\\(x[0-9a-fA-F]{2}|n|r|t|\\|'|")/g, (_, e: string) =>
    e[0] === 'x' ? String.fromCharCode(parseInt(e.slice(1), 16)) : ({ n: '\n', r: '\r', t: '\t' } as Record<string, string>)[e] ?? e,
  );
}
