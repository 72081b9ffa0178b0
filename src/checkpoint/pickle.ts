/**
 * A data-only unpickler (protocols 0-5) for untrusted checkpoints. Nothing is ever executed, and
 * the policy follows `torch.load(weights_only=True)`:
 *
 * - Calls (REDUCE, INST, OBJ) are allowed only to the allow-listed constructors a checkpoint
 *   needs (tensor rebuilds, OrderedDict, set, numpy scalars, ...; see SAFE_CALLS and the torch
 *   table in torch.ts). Any other callable (`os.system`, `builtins.eval`, an unknown function) is
 *   refused with its name.
 * - Classes only instantiated through NEWOBJ / `copyreg._reconstructor` and filled by BUILD
 *   (argparse Namespaces, yacs CfgNodes, whole pickled `nn.Module`s) become INERT stand-ins: a
 *   null-prototype object tagged with PY_CLASS whose BUILD state is kept under PY_STATE.
 * - Modules that exist to run things (os, subprocess, sys, most of builtins, ...) are refused as
 *   soon as a global names them, whatever the opcode.
 * - Every resource is bounded (PICKLE_LIMITS): opcodes and copy work, objects, memo entries,
 *   stack size and nesting depth. Shared references stay shared (memo GET returns the same
 *   object, never a copy), so a reference DAG or a cycle costs what its bytes cost.
 *
 * Python values map to: None → null, bool → boolean, int → number (bigint beyond 2^53),
 * float → number, str → string, bytes → Uint8Array, list/tuple/set → array, dict → a
 * null-prototype object (non-string keys are stringified), unknown instance → a null-prototype
 * object tagged with PY_CLASS (and PY_ARGS, PY_STATE, PY_ITEMS as the pickle supplies them).
 */
import { UserError } from '../errors.js';
import { blockedGlobal } from './pickle-policy.js';
import { printable } from './printable.js';

export const PY_CLASS = Symbol.for('qkscope.pickle.class'); // 'module.name' of a placeholder
export const PY_ARGS = Symbol.for('qkscope.pickle.args'); // constructor arguments
export const PY_STATE = Symbol.for('qkscope.pickle.state'); // what BUILD set (Python __setstate__)
export const PY_ITEMS = Symbol.for('qkscope.pickle.items'); // items appended to a list subclass

export type PyDict = { [key: string]: unknown };

/** What an unpickle may cost. Real checkpoints use a small fraction of each (see the README of the limits in the tests). */
export interface PickleLimits {
  /** Opcodes executed plus elements copied by constructors (list(x), OrderedDict(pairs), ...). */
  maxWork: number;
  /** Containers and instances created (dicts, lists, tuples, bytes, stand-ins, tensors). */
  maxObjects: number;
  maxMemo: number;
  /** Values on the stack at once. */
  maxStack: number;
  /** Containers nested inside each other. */
  maxDepth: number;
  /** Digits of a text integer, bytes of a binary one (Python's own default is 4300 digits). */
  maxIntDigits: number;
}

export const PICKLE_LIMITS: PickleLimits = {
  maxWork: 10_000_000,
  maxObjects: 2_000_000,
  maxMemo: 2_000_000,
  maxStack: 1_000_000,
  maxDepth: 1000,
  maxIntDigits: 4300,
};

/** A global reference (module.name); `call` is set for the allow-listed callables. */
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
  /** Extra allow-listed callables by 'module.name'; they override the built-in table. */
  globals?: Record<string, (args: unknown[]) => unknown>;
  persistentLoad?: (pid: unknown) => unknown;
  /** Tighter (or looser) limits than PICKLE_LIMITS. */
  limits?: Partial<PickleLimits>;
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

// ---------------------------------------------------------------------------------------------
// Refusals (which globals may be named at all: pickle-policy.ts; which may be called: safeCalls)

// Protocols 0-2 write Python 2 module names (pickle's fix_imports).
const PY2_MODULES: Record<string, string> = { __builtin__: 'builtins', copy_reg: 'copyreg', exceptions: 'builtins' };

/**
 * Why a pickle is refused (a policy or resource limit, as opposed to damage). Allow-listed
 * callables (torch.ts) throw it to refuse what they are handed.
 */
export class UnsafePickle extends Error {}
const Refused = UnsafePickle;
/** Damage: the bytes do not form a pickle. */
class Fail extends Error {}

function latin1(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
  return out;
}

// ---------------------------------------------------------------------------------------------
// The unpickler

/** Unpickles `data`; malformed, over-limit or unsafe input is a one-line UserError naming `opts.location`. */
export function unpickle(data: Uint8Array, opts: UnpickleOptions): unknown {
  return new Unpickler(data, opts).load();
}

class Unpickler {
  private buf: Buffer;
  private pos = 0;
  private stack: unknown[] = [];
  private marks: number[] = [];
  private memo = new Map<number, unknown>();
  private work = 0;
  private objects = 0;
  /** Nesting depth of containers; absent means 0 (a leaf). */
  private depths = new WeakMap<object, number>();
  private limits: PickleLimits;
  private table: Record<string, (args: unknown[]) => unknown>;

  constructor(
    data: Uint8Array,
    private opts: UnpickleOptions,
  ) {
    this.buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    this.limits = { ...PICKLE_LIMITS, ...(opts.limits ?? {}) };
    this.table = { ...this.safeCalls(), ...(opts.globals ?? {}) };
  }

  // --- resource accounting -------------------------------------------------------------------

  private charge(n: number): void {
    this.work += n;
    if (this.work > this.limits.maxWork) throw new Refused(`it needs more than ${this.limits.maxWork} steps to unpickle (work limit)`);
  }

  /** Counts one new object; returns it. */
  private obj<T>(o: T): T {
    if (++this.objects > this.limits.maxObjects) throw new Refused(`it creates more than ${this.limits.maxObjects} objects (object limit)`);
    return o;
  }

  private depthOf(x: unknown): number {
    return typeof x === 'object' && x !== null ? this.depths.get(x) ?? 0 : 0;
  }

  /** Records that `parent` now contains `child` (depth only ever grows). */
  private nest(parent: unknown, child: unknown): void {
    if (typeof parent !== 'object' || parent === null) return;
    const d = this.depthOf(child) + 1;
    if (d > this.depthOf(parent)) {
      if (d > this.limits.maxDepth) throw new Refused(`its data nests deeper than ${this.limits.maxDepth} levels (depth limit)`);
      this.depths.set(parent, d);
    }
  }

  /** A new container holding `items`. */
  private holding<T extends object>(container: T, items: unknown[]): T {
    this.obj(container);
    for (const it of items) this.nest(container, it);
    return container;
  }

  private push(v: unknown): void {
    if (this.stack.length >= this.limits.maxStack) throw new Refused(`its stack grows past ${this.limits.maxStack} values (stack limit)`);
    this.stack.push(v);
  }

  // --- reading -------------------------------------------------------------------------------

  private need(n: number): void {
    if (n < 0 || this.pos + n > this.buf.length) throw new Fail('unexpected end of data');
  }
  private u8(): number {
    this.need(1);
    return this.buf[this.pos++];
  }
  private u16(): number {
    this.need(2);
    this.pos += 2;
    return this.buf.readUInt16LE(this.pos - 2);
  }
  private u32(): number {
    this.need(4);
    this.pos += 4;
    return this.buf.readUInt32LE(this.pos - 4);
  }
  private i32(): number {
    this.need(4);
    this.pos += 4;
    return this.buf.readInt32LE(this.pos - 4);
  }
  private u64(): number {
    this.need(8);
    this.pos += 8;
    const v = this.buf.readBigUInt64LE(this.pos - 8);
    return v > BigInt(this.buf.length) ? Infinity : Number(v); // a length beyond the data is damage, caught by need()
  }
  private bytes(n: number): Buffer {
    this.need(n);
    this.pos += n;
    return this.buf.subarray(this.pos - n, this.pos);
  }
  private line(): string {
    const end = this.buf.indexOf(0x0a, this.pos);
    if (end < 0) throw new Fail('unterminated text field');
    const s = this.buf.toString('latin1', this.pos, end);
    this.pos = end + 1;
    return s;
  }

  private pop(): unknown {
    const m = this.marks.length ? this.marks[this.marks.length - 1] : 0;
    if (this.stack.length === 0 || this.stack.length <= m) throw new Fail('stack underflow');
    return this.stack.pop();
  }
  private top(): unknown {
    if (this.stack.length === 0) throw new Fail('stack underflow');
    return this.stack[this.stack.length - 1];
  }
  private popMark(): unknown[] {
    const k = this.marks.pop();
    if (k === undefined) throw new Fail('MARK expected');
    return this.stack.splice(k);
  }

  private textInt(s: string): number | bigint {
    const t = s.trim();
    if (t.length > this.limits.maxIntDigits + 1) throw new Refused(`it holds an integer of ${t.length} digits (integer limit ${this.limits.maxIntDigits})`);
    if (!/^[-+]?\d+$/.test(t)) throw new Fail(`bad integer ${JSON.stringify(s.slice(0, 40))}`);
    const b = BigInt(t);
    return b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
  }

  private long(b: Buffer): number | bigint {
    if (b.length === 0) return 0;
    if (b.length * 2.41 > this.limits.maxIntDigits) throw new Refused(`it holds an integer of ${b.length} bytes (integer limit ${this.limits.maxIntDigits} digits)`);
    let v = BigInt('0x' + Buffer.from(b).reverse().toString('hex'));
    if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }

  private memoPut(i: number | bigint): void {
    if (typeof i !== 'number') throw new Fail('memo index out of range');
    if (!this.memo.has(i) && this.memo.size >= this.limits.maxMemo) throw new Refused(`it memoizes more than ${this.limits.maxMemo} values (memo limit)`);
    this.memo.set(i, this.top());
  }
  private memoGet(i: number | bigint): unknown {
    if (typeof i !== 'number' || !this.memo.has(i)) throw new Fail(`memo entry ${i} is missing`);
    return this.memo.get(i);
  }

  // --- Python semantics ----------------------------------------------------------------------

  private keyOf(k: unknown, budget = 16): string {
    if (typeof k === 'string') return k;
    if (typeof k === 'number' || typeof k === 'bigint') return String(k);
    if (k === null) return 'None';
    if (typeof k === 'boolean') return k ? 'True' : 'False';
    // Tuple keys: a short rendering with a fixed budget (a key referencing a huge or cyclic
    // structure must not be expanded).
    if (Array.isArray(k)) {
      if (budget <= 0) return '…';
      const parts = k.slice(0, 8).map((x) => this.keyOf(x, budget - 1 - k.length));
      return `(${parts.join(', ')}${k.length > 8 ? ', …' : ''})`;
    }
    if (k instanceof PyGlobal) return k.fullName;
    return `<${pyClassOf(k) ?? typeof k}>`;
  }

  private setItem(target: unknown, k: unknown, v: unknown): void {
    if (!isDict(target)) return; // a rebuilt tensor or a number cannot hold items: ignore, as a placeholder would
    Object.defineProperty(target, this.keyOf(k), { value: v, enumerable: true, writable: true, configurable: true });
    this.nest(target, v);
  }

  private appendItems(target: unknown, items: unknown[]): void {
    if (Array.isArray(target)) {
      for (const it of items) target.push(it), this.nest(target, it);
    } else if (typeof target === 'object' && target !== null) {
      const t = target as Record<symbol, unknown>;
      if (!t[PY_ITEMS]) Object.defineProperty(t, PY_ITEMS, { value: [], enumerable: false });
      const list = t[PY_ITEMS] as unknown[];
      for (const it of items) list.push(it), this.nest(target, it);
    }
  }

  /** An inert stand-in for an instance of a class we do not model (nothing is called). */
  private standIn(cls: string, args: unknown[]): PyDict {
    return this.holding(placeholder(cls, args), args);
  }

  /** REDUCE / INST / OBJ: only allow-listed callables run (and they are pure JS). */
  private call(fn: unknown, args: unknown[]): unknown {
    if (!(fn instanceof PyGlobal)) throw new Refused(`it calls ${pyClassOf(fn) ? `an instance of ${pyClassOf(fn)}` : 'a value that is not a global'}, which no checkpoint needs`);
    if (!fn.call) throw new Refused(`it calls ${fn.fullName}, which is not on the allow-list of what a checkpoint needs`);
    return this.run(fn, args);
  }

  /** NEWOBJ / copyreg: allow-listed classes are built, any other becomes an inert stand-in. */
  private instantiate(cls: unknown, args: unknown[]): unknown {
    if (!(cls instanceof PyGlobal)) throw new Fail('NEWOBJ needs a class');
    return cls.call ? this.run(cls, args) : this.standIn(cls.fullName, args);
  }

  private run(fn: PyGlobal, args: unknown[]): unknown {
    let r: unknown;
    try {
      r = fn.call!(args);
    } catch (e) {
      if (e instanceof UserError || e instanceof Refused || e instanceof Fail) throw e;
      throw new Fail(`${fn.fullName}: ${(e as Error).message}`);
    }
    if (typeof r === 'object' && r !== null) {
      this.obj(r);
      for (const a of args) this.nest(r, a);
    }
    return r;
  }

  private copyOf(x: unknown): unknown[] {
    if (!Array.isArray(x)) return [];
    this.charge(x.length);
    return [...x];
  }

  private dictFrom(pairs: unknown): PyDict {
    const d = newDict();
    // OrderedDict([(k, v), ...]) in old protocols; OrderedDict() then SETITEMS in new ones.
    if (Array.isArray(pairs)) {
      this.charge(pairs.length);
      for (const kv of pairs) if (Array.isArray(kv) && kv.length === 2) this.setItem(d, kv[0], kv[1]);
    }
    return d;
  }

  /** copyreg._reconstructor(cls, base, state): protocols 0-1 save list/dict subclasses and plain objects this way. */
  private reconstructor(a: unknown[]): unknown {
    const obj = this.instantiate(a[0], []);
    const base = a[1] instanceof PyGlobal ? a[1].fullName : '';
    if (base === 'builtins.list' && Array.isArray(a[2])) {
      this.charge(a[2].length);
      this.appendItems(obj, a[2]);
    } else if (base === 'builtins.dict' && isDict(a[2])) {
      const entries = Object.entries(a[2]);
      this.charge(entries.length);
      for (const [k, v] of entries) this.setItem(obj, k, v);
    }
    return obj;
  }

  private numpyScalar(args: unknown[]): unknown {
    // numpy.core.multiarray.scalar(dtype, raw bytes): decode the common numeric kinds.
    const [dt, raw] = args;
    const code = dt && typeof dt === 'object' ? ((dt as Record<symbol, unknown>)[PY_ARGS] as unknown[] | undefined)?.[0] : undefined;
    const bytes = typeof raw === 'string' ? latin1(raw) : raw instanceof Uint8Array ? raw : undefined;
    const size: Record<string, number> = { f8: 8, f4: 4, i8: 8, i4: 4, u8: 8, b1: 1 };
    if (typeof code !== 'string' || !bytes || bytes.length < (size[code] ?? Infinity)) return placeholder('numpy.core.multiarray.scalar', args);
    const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    switch (code) {
      case 'f8': return v.getFloat64(0, true);
      case 'f4': return v.getFloat32(0, true);
      case 'i8': return Number(v.getBigInt64(0, true));
      case 'i4': return v.getInt32(0, true);
      case 'u8': return Number(v.getBigUint64(0, true));
      default: return bytes[0] !== 0;
    }
  }

  /**
   * The allow-list of callables (besides torch's, added by torch.ts): what checkpoints written by
   * torch, numpy, argparse, yacs, pathlib and Python's own containers call when unpickled. Those
   * that build plain data do so; the others return inert stand-ins.
   */
  private safeCalls(): Record<string, (args: unknown[]) => unknown> {
    const inert = (name: string) => (a: unknown[]) => placeholder(name, a);
    const bytesOf = (x: unknown) => (typeof x === 'string' ? latin1(x) : x instanceof Uint8Array ? x : new Uint8Array());
    const path = (a: unknown[]) => a.filter((x) => typeof x === 'string').join('/');
    const t: Record<string, (args: unknown[]) => unknown> = {
      'collections.OrderedDict': (a) => this.dictFrom(a[0]),
      'collections.Counter': (a) => (isDict(a[0]) ? this.dictFrom(Object.entries(a[0])) : this.dictFrom(undefined)),
      'collections.defaultdict': () => newDict(), // the factory is never called; items follow via SETITEMS
      'builtins.dict': (a) => this.dictFrom(a[0]),
      'builtins.list': (a) => this.copyOf(a[0]),
      'builtins.tuple': (a) => this.copyOf(a[0]),
      'builtins.set': (a) => this.copyOf(a[0]),
      'builtins.frozenset': (a) => this.copyOf(a[0]),
      'builtins.bytearray': (a) => bytesOf(a[0]),
      'builtins.bytes': (a) => bytesOf(a[0]),
      'builtins.object': inert('builtins.object'),
      'builtins.slice': inert('builtins.slice'),
      'builtins.complex': inert('builtins.complex'),
      'builtins.range': inert('builtins.range'),
      '_codecs.encode': (a) => bytesOf(a[0]),
      'copyreg._reconstructor': (a) => this.reconstructor(a),
      'copyreg.__newobj__': (a) => this.instantiate(a[0], a.slice(1)),
      'copyreg.__newobj_ex__': (a) => this.instantiate(a[0], Array.isArray(a[1]) ? a[1] : []),
      'numpy.core.multiarray.scalar': (a) => this.numpyScalar(a),
      'numpy._core.multiarray.scalar': (a) => this.numpyScalar(a),
      'argparse.Namespace': inert('argparse.Namespace'),
      'functools.partial': inert('functools.partial'),
      'pathlib.Path': path,
      'pathlib.PosixPath': path,
      'pathlib.WindowsPath': path,
      'pathlib.PurePosixPath': path,
      'pathlib.PureWindowsPath': path,
      'datetime.datetime': inert('datetime.datetime'),
      'datetime.date': inert('datetime.date'),
      'datetime.time': inert('datetime.time'),
      'datetime.timedelta': inert('datetime.timedelta'),
      'decimal.Decimal': inert('decimal.Decimal'),
      'types.SimpleNamespace': inert('types.SimpleNamespace'),
    };
    // numpy arrays and dtypes stay inert (their data is not weights we read).
    for (const m of ['numpy.core.multiarray', 'numpy._core.multiarray']) t[`${m}._reconstruct`] = inert(`${m}._reconstruct`);
    for (const m of ['numpy.core.numeric', 'numpy._core.numeric']) t[`${m}._frombuffer`] = inert(`${m}._frombuffer`);
    t['numpy.dtype'] = inert('numpy.dtype');
    return t;
  }

  private global(module: string, name: string): PyGlobal {
    const m = PY2_MODULES[module] ?? module;
    const why = blockedGlobal(m, name);
    if (why) throw new Refused(why);
    return this.obj(new PyGlobal(m, name, this.table[`${m}.${name}`]));
  }

  private persistent(pid: unknown): unknown {
    if (!this.opts.persistentLoad) throw new Fail('persistent id without a loader');
    return this.obj(this.opts.persistentLoad(pid));
  }

  // --- the loop ------------------------------------------------------------------------------

  load(): unknown {
    try {
      return this.loop();
    } catch (e) {
      const at = `at byte ${this.pos}`;
      if (e instanceof Refused) {
        throw new UserError(`${this.opts.location}: refused to load the pickled data (${at}): ${printable(e.message, 300)}; the file is unsafe, damaged or not a weights file (only tensors and plain data are read, as torch.load(weights_only=True) does)`);
      }
      if (e instanceof Fail || e instanceof RangeError) {
        throw new UserError(`${this.opts.location}: cannot read the pickled data (${printable(e.message, 300)} ${at}); the file is damaged, re-download or re-save it`);
      }
      throw e;
    }
  }

  private loop(): unknown {
    const s = this;
    for (;;) {
      s.charge(1);
      const op = s.u8();
      switch (op) {
        case 0x80: s.u8(); break; // PROTO
        case 0x95: s.u64(); break; // FRAME: frames are only a read-ahead hint
        case 0x2e: return s.top(); // STOP
        case 0x28: // MARK
          if (s.marks.length >= s.limits.maxStack) throw new Refused(`it opens more than ${s.limits.maxStack} marks (stack limit)`);
          s.marks.push(s.stack.length);
          break;
        case 0x30: s.pop(); break; // POP
        case 0x31: s.popMark(); break; // POP_MARK
        case 0x32: s.push(s.top()); break; // DUP
        case 0x4e: s.push(null); break; // NONE
        case 0x88: s.push(true); break; // NEWTRUE
        case 0x89: s.push(false); break; // NEWFALSE
        case 0x4a: s.push(s.i32()); break; // BININT
        case 0x4b: s.push(s.u8()); break; // BININT1
        case 0x4d: s.push(s.u16()); break; // BININT2
        case 0x8a: s.push(s.long(s.bytes(s.u8()))); break; // LONG1
        case 0x8b: { // LONG4
          const n = s.i32();
          if (n < 0) throw new Fail('negative LONG4 length');
          if (n * 2.41 > s.limits.maxIntDigits) throw new Refused(`it holds an integer of ${n} bytes (integer limit ${s.limits.maxIntDigits} digits)`);
          s.push(s.long(s.bytes(n)));
          break;
        }
        case 0x49: { // INT (text); I01/I00 are the protocol-0 booleans
          const t = s.line();
          s.push(t === '01' ? true : t === '00' ? false : s.textInt(t));
          break;
        }
        case 0x4c: s.push(s.textInt(s.line().replace(/L$/, ''))); break; // LONG (text)
        case 0x46: s.push(parseFloat(s.line())); break; // FLOAT (text)
        case 0x47: s.need(8); s.push(s.buf.readDoubleBE(s.pos)); s.pos += 8; break; // BINFLOAT
        case 0x58: s.push(s.bytes(s.u32()).toString('utf8')); break; // BINUNICODE
        case 0x8c: s.push(s.bytes(s.u8()).toString('utf8')); break; // SHORT_BINUNICODE
        case 0x8d: s.push(s.bytes(s.u64()).toString('utf8')); break; // BINUNICODE8
        case 0x56: s.push(rawUnicodeEscape(s.line())); break; // UNICODE (text)
        case 0x53: s.push(pyStringLiteral(s.line())); break; // STRING (text, quoted)
        case 0x54: { // BINSTRING: py2 str
          const n = s.i32();
          s.push(s.bytes(n).toString('latin1'));
          break;
        }
        case 0x55: s.push(s.bytes(s.u8()).toString('latin1')); break; // SHORT_BINSTRING
        case 0x42: s.push(s.obj(new Uint8Array(s.bytes(s.u32())))); break; // BINBYTES
        case 0x43: s.push(s.obj(new Uint8Array(s.bytes(s.u8())))); break; // SHORT_BINBYTES
        case 0x8e: s.push(s.obj(new Uint8Array(s.bytes(s.u64())))); break; // BINBYTES8
        case 0x96: s.push(s.obj(new Uint8Array(s.bytes(s.u64())))); break; // BYTEARRAY8
        case 0x97: throw new Fail('out-of-band buffers (NEXT_BUFFER) are not supported');
        case 0x98: break; // READONLY_BUFFER: no-op for us
        case 0x29: s.push(s.obj([])); break; // EMPTY_TUPLE
        case 0x85: { const a = s.pop(); s.push(s.holding([a], [a])); break; } // TUPLE1
        case 0x86: { const b = s.pop(); const a = s.pop(); s.push(s.holding([a, b], [a, b])); break; } // TUPLE2
        case 0x87: { const c = s.pop(); const b = s.pop(); const a = s.pop(); s.push(s.holding([a, b, c], [a, b, c])); break; } // TUPLE3
        case 0x74: { const items = s.popMark(); s.push(s.holding(items, items)); break; } // TUPLE
        case 0x5d: s.push(s.obj([])); break; // EMPTY_LIST
        case 0x6c: { const items = s.popMark(); s.push(s.holding(items, items)); break; } // LIST
        case 0x7d: s.push(s.obj(newDict())); break; // EMPTY_DICT
        case 0x64: { // DICT
          const items = s.popMark();
          const d = s.obj(newDict());
          for (let i = 0; i + 1 < items.length; i += 2) s.setItem(d, items[i], items[i + 1]);
          s.push(d);
          break;
        }
        case 0x8f: s.push(s.obj([])); break; // EMPTY_SET
        case 0x90: { const items = s.popMark(); s.appendItems(s.top(), items); break; } // ADDITEMS
        case 0x91: { const items = s.popMark(); s.push(s.holding(items, items)); break; } // FROZENSET
        case 0x61: { const v = s.pop(); s.appendItems(s.top(), [v]); break; } // APPEND
        case 0x65: { const items = s.popMark(); s.appendItems(s.top(), items); break; } // APPENDS
        case 0x73: { const v = s.pop(); const k = s.pop(); s.setItem(s.top(), k, v); break; } // SETITEM
        case 0x75: { // SETITEMS
          const items = s.popMark();
          const d = s.top();
          for (let i = 0; i + 1 < items.length; i += 2) s.setItem(d, items[i], items[i + 1]);
          break;
        }
        case 0x70: s.memoPut(s.textInt(s.line())); break; // PUT
        case 0x71: s.memoPut(s.u8()); break; // BINPUT
        case 0x72: s.memoPut(s.u32()); break; // LONG_BINPUT
        case 0x94: s.memoPut(s.memo.size); break; // MEMOIZE
        case 0x67: s.push(s.memoGet(s.textInt(s.line()))); break; // GET
        case 0x68: s.push(s.memoGet(s.u8())); break; // BINGET
        case 0x6a: s.push(s.memoGet(s.u32())); break; // LONG_BINGET
        case 0x63: { const m = s.line(); const n = s.line(); s.push(s.global(m, n)); break; } // GLOBAL
        case 0x93: { // STACK_GLOBAL
          const n = s.pop();
          const m = s.pop();
          if (typeof m !== 'string' || typeof n !== 'string') throw new Fail('STACK_GLOBAL needs two strings');
          s.push(s.global(m, n));
          break;
        }
        case 0x52: { // REDUCE
          const args = s.pop();
          const fn = s.pop();
          s.push(s.call(fn, Array.isArray(args) ? args : [args]));
          break;
        }
        case 0x81: { // NEWOBJ
          const args = s.pop();
          const cls = s.pop();
          s.push(s.instantiate(cls, Array.isArray(args) ? args : []));
          break;
        }
        case 0x92: { // NEWOBJ_EX
          s.pop(); // kwargs
          const args = s.pop();
          const cls = s.pop();
          s.push(s.instantiate(cls, Array.isArray(args) ? args : []));
          break;
        }
        case 0x69: { // INST (protocol 0): a call of module.name(*args)
          const m = s.line();
          const n = s.line();
          const g = s.global(m, n);
          s.push(s.call(g, s.popMark()));
          break;
        }
        case 0x6f: { // OBJ (protocol 1): a call of items[0](*items[1:])
          const items = s.popMark();
          if (items.length === 0) throw new Fail('OBJ without a class');
          s.push(s.call(items[0], items.slice(1)));
          break;
        }
        case 0x62: { // BUILD: the state is kept, never applied by calling anything
          const state = s.pop();
          const obj = s.top();
          if (typeof obj === 'object' && obj !== null && !Object.isFrozen(obj) && !(obj instanceof PyGlobal)) {
            Object.defineProperty(obj, PY_STATE, { value: state, enumerable: false, configurable: true, writable: true });
            s.nest(obj, state);
          }
          break;
        }
        case 0x50: s.push(s.persistent(s.line())); break; // PERSID
        case 0x51: s.push(s.persistent(s.pop())); break; // BINPERSID
        case 0x82: case 0x83: case 0x84: // EXT1/2/4: the copyreg extension registry
          throw new Fail('extension codes (EXT1/2/4) are not supported');
        default:
          throw new Fail(`unknown opcode 0x${op.toString(16).padStart(2, '0')}`);
      }
    }
  }
}

function rawUnicodeEscape(s: string): string {
  // Characters below 256 are raw latin-1 bytes; the rest are \uXXXX / \UXXXXXXXX escapes.
  return s.replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (_, a, c) => {
    const cp = parseInt(a ?? c, 16);
    if (cp > 0x10ffff) throw new Fail('bad \\U escape');
    return String.fromCodePoint(cp);
  });
}

function pyStringLiteral(s: string): string {
  const q = s[0];
  if ((q !== "'" && q !== '"') || s.length < 2 || s[s.length - 1] !== q) throw new Fail('bad STRING literal');
  return s.slice(1, -1).replace(/\\(x[0-9a-fA-F]{2}|n|r|t|\\|'|")/g, (_, e: string) =>
    e[0] === 'x' ? String.fromCharCode(parseInt(e.slice(1), 16)) : ({ n: '\n', r: '\r', t: '\t' } as Record<string, string>)[e] ?? e,
  );
}
