/**
 * A protocol-2 pickler that emits the same opcodes, in the same order, with the same memo
 * numbering as CPython's pickler (the one torch.save uses), for the value kinds below.
 * CPython memoizes by object identity; JS strings have none, so every string is written afresh
 * (as CPython does for distinct string objects) unless wrapped in `Interned` (a shared constant
 * such as torch's 'storage' and 'cpu').
 */

/** A reference to a Python global, written as GLOBAL 'module\nname\n'. */
export class PyGlobalRef {
  constructor(readonly module: string, readonly name: string) {}
}

/** A tuple (plain JS arrays are lists). */
export class PyTuple {
  readonly items: unknown[];
  constructor(...items: unknown[]) {
    this.items = items;
  }
}

/** A float even when its value is integral (1.0 rather than 1). */
export class PyFloat {
  constructor(readonly value: number) {}
}

/** A string that stands for one shared Python object: written once, then fetched from the memo. */
export class Interned {
  constructor(readonly value: string) {}
}

/**
 * An object rebuilt by `func(*args)` (REDUCE) or `cls.__new__(cls, *args)` (NEWOBJ), then
 * filled with dict items (SETITEMS) and given a state (BUILD): how CPython saves objects
 * through __reduce_ex__(2).
 */
export class PyReduce {
  constructor(
    readonly func: PyGlobalRef,
    readonly args: unknown[],
    readonly opts: { newobj?: boolean; dictItems?: [unknown, unknown][]; listItems?: unknown[]; state?: unknown } = {},
  ) {}
}

export interface PicklerHooks {
  /** A persistent id (saved instead of the object, then BINPERSID), or undefined. */
  persistentId?(obj: unknown): unknown;
  /** Turns a custom object into a PyReduce; the original object is what gets memoized. */
  reduce?(obj: object): PyReduce | undefined;
}

const BATCH = 1000; // CPython's _BATCHSIZE

export class Pickler {
  private out: Buffer[] = [];
  private memo = new Map<unknown, number>();

  constructor(private hooks: PicklerHooks = {}) {}

  dump(obj: unknown): Buffer {
    this.w(Buffer.from([0x80, 2])); // PROTO 2
    this.save(obj);
    this.w(Buffer.from('.')); // STOP
    return Buffer.concat(this.out);
  }

  private w(b: Buffer | string): void {
    this.out.push(typeof b === 'string' ? Buffer.from(b, 'latin1') : b);
  }

  private memoize(key: unknown): void {
    const i = this.memo.size;
    this.memo.set(key, i);
    this.w(i < 256 ? Buffer.from([0x71, i]) : cat(0x72, u32(i))); // BINPUT / LONG_BINPUT
  }

  private get(i: number): void {
    this.w(i < 256 ? Buffer.from([0x68, i]) : cat(0x6a, u32(i))); // BINGET / LONG_BINGET
  }

  private save(obj: unknown, allowPersistent = true): void {
    if (allowPersistent && this.hooks.persistentId) {
      const pid = this.hooks.persistentId(obj);
      if (pid !== undefined) {
        this.save(pid, false);
        this.w('Q'); // BINPERSID
        return;
      }
    }
    // Memo keys: object identity, or a tagged value for interned strings and globals.
    const key = obj instanceof Interned ? `s:${obj.value}` : obj instanceof PyGlobalRef ? `g:${obj.module}.${obj.name}` : obj;
    if ((typeof obj === 'object' && obj !== null) || obj instanceof Interned) {
      const m = this.memo.get(key);
      if (m !== undefined) return this.get(m);
    }
    if (obj === null || obj === undefined) return this.w('N');
    if (obj === true) return this.w(Buffer.from([0x88]));
    if (obj === false) return this.w(Buffer.from([0x89]));
    if (typeof obj === 'bigint') return this.saveInt(obj);
    if (typeof obj === 'number') return Number.isInteger(obj) ? this.saveInt(BigInt(obj)) : this.saveFloat(obj);
    if (obj instanceof PyFloat) return this.saveFloat(obj.value);
    if (typeof obj === 'string') return this.saveStr(obj, {});
    if (obj instanceof Interned) return this.saveStr(obj.value, key);
    if (obj instanceof PyGlobalRef) {
      this.w(`c${obj.module}\n${obj.name}\n`);
      return this.memoize(key);
    }
    if (obj instanceof PyTuple) return this.saveTuple(obj);
    if (Array.isArray(obj)) {
      this.w(']'); // EMPTY_LIST
      this.memoize(obj);
      return this.batchExactList(obj);
    }
    if (obj instanceof PyReduce) return this.saveReduce(obj, obj);
    if (typeof obj === 'object') {
      const r = this.hooks.reduce?.(obj);
      if (r) return this.saveReduce(r, obj);
      if (Object.getPrototypeOf(obj) === Object.prototype || Object.getPrototypeOf(obj) === null) {
        this.w('}'); // EMPTY_DICT
        this.memoize(obj);
        return this.batchExactDict(Object.entries(obj));
      }
    }
    throw new Error(`cannot pickle ${Object.prototype.toString.call(obj)}`);
  }

  private saveInt(v: bigint): void {
    if (v >= 0n && v <= 0xffn) return this.w(Buffer.from([0x4b, Number(v)])); // BININT1
    if (v >= 0n && v <= 0xffffn) {
      const b = Buffer.alloc(3);
      b[0] = 0x4d; // BININT2
      b.writeUInt16LE(Number(v), 1);
      return this.w(b);
    }
    if (v >= -(1n << 31n) && v < 1n << 31n) {
      const b = Buffer.alloc(5);
      b[0] = 0x4a; // BININT
      b.writeInt32LE(Number(v), 1);
      return this.w(b);
    }
    const bytes: number[] = []; // LONG1: minimal two's complement, little-endian
    let x = v;
    for (;;) {
      bytes.push(Number(x & 0xffn));
      x >>= 8n;
      const signBit = (bytes[bytes.length - 1] & 0x80) !== 0;
      if ((x === 0n && !signBit) || (x === -1n && signBit)) break;
    }
    this.w(Buffer.from([0x8a, bytes.length, ...bytes]));
  }

  private saveFloat(v: number): void {
    const b = Buffer.alloc(9);
    b[0] = 0x47; // BINFLOAT, big-endian
    b.writeDoubleBE(v, 1);
    this.w(b);
  }

  private saveStr(s: string, key: unknown): void {
    const enc = Buffer.from(s, 'utf8');
    this.w(cat(0x58, u32(enc.length))); // BINUNICODE
    this.w(enc);
    this.memoize(key);
  }

  private saveTuple(t: PyTuple): void {
    const n = t.items.length;
    if (n === 0) return this.w(')'); // EMPTY_TUPLE, never memoized
    if (n <= 3) {
      for (const x of t.items) this.save(x);
      this.w(Buffer.from([0x84 + n])); // TUPLE1/2/3
    } else {
      this.w('(');
      for (const x of t.items) this.save(x);
      this.w('t');
    }
    this.memoize(t);
  }

  private saveReduce(r: PyReduce, memoKey: object): void {
    this.save(r.func);
    this.save(new PyTuple(...r.args));
    this.w(r.opts.newobj ? Buffer.from([0x81]) : 'R'); // NEWOBJ / REDUCE
    this.memoize(memoKey);
    if (r.opts.listItems) this.batch(r.opts.listItems.map((x) => [x]), 'a', 'e');
    if (r.opts.dictItems) this.batch(r.opts.dictItems, 's', 'u');
    if (r.opts.state !== undefined) {
      this.save(r.opts.state);
      this.w('b'); // BUILD
    }
  }

  // CPython's C pickler (which torch.save uses) batches differently for exact lists and dicts
  // than for the item iterators of a __reduce__; mirrored here so the bytes match.

  /** batch_list / batch_dict: one item → APPEND/SETITEM; more → MARK … APPENDS/SETITEMS per 1000. */
  private batch(items: unknown[][], one: string, many: string): void {
    for (let i = 0; i < items.length; i += BATCH) {
      const chunk = items.slice(i, i + BATCH);
      if (chunk.length === 1) {
        for (const x of chunk[0]) this.save(x);
        this.w(one);
      } else {
        this.w('(');
        for (const it of chunk) for (const x of it) this.save(x);
        this.w(many);
      }
    }
  }

  /** batch_list_exact: a single item → APPEND; else MARK … APPENDS per 1000 (a last batch of one too). */
  private batchExactList(items: unknown[]): void {
    if (items.length === 0) return;
    if (items.length === 1) {
      this.save(items[0]);
      return this.w('a');
    }
    for (let i = 0; i < items.length; i += BATCH) {
      this.w('(');
      for (const x of items.slice(i, i + BATCH)) this.save(x);
      this.w('e');
    }
  }

  /** batch_dict_exact: a single item → SETITEM; else MARK … SETITEMS per 1000, plus an empty batch after a full one. */
  private batchExactDict(items: [string, unknown][]): void {
    if (items.length === 0) return;
    if (items.length === 1) {
      this.save(items[0][0]);
      this.save(items[0][1]);
      return this.w('s');
    }
    let i = 0;
    let n: number;
    do {
      this.w('(');
      const chunk = items.slice(i, i + BATCH);
      for (const [k, v] of chunk) this.save(k), this.save(v);
      this.w('u');
      n = chunk.length;
      i += n;
    } while (n === BATCH);
  }
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

function cat(op: number, rest: Buffer): Buffer {
  return Buffer.concat([Buffer.from([op]), rest]);
}
