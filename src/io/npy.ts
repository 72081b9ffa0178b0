/**
 * NumPy `.npy` files (format 1.0, and 2.0 when the header is too long for 1.0), written and
 * read exactly as `numpy.lib.format` does:
 *
 *   magic `\x93NUMPY`, major, minor, header length (uint16 LE for 1.0, uint32 LE for 2.0),
 *   then the header: the repr of a dict `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`
 *   followed by spaces for in-place growth (21 − len(repr(shape[0])) when ndim > 0), then
 *   spaces up to the next multiple of 64 bytes minus one, then `\n`. The data (C order,
 *   little-endian) starts at that multiple of 64. Exactly like numpy, a header that already
 *   ends on the boundary still gets a full 64 bytes of padding.
 *
 * Supported dtypes: `<f4`, `<f8`, `<i4`, `<i8`, `|u1`. Only C order is written or read.
 *
 * `NpyStreamWriter` writes an array chunk by chunk (appended in C order, or at an element
 * offset) so that arrays larger than memory (U of a ViT-H: [32, 16, 1280, 80]) are never
 * held whole.
 */
import { closeSync, fstatSync, ftruncateSync, openSync, readSync, unlinkSync, writeSync, readFileSync } from 'node:fs';
import { endianness } from 'node:os';
import { UserError } from '../errors.js';

export type NpyDtype = '<f4' | '<f8' | '<i4' | '<i8' | '|u1';

export const NPY_DTYPES: readonly NpyDtype[] = ['<f4', '<f8', '<i4', '<i8', '|u1'];

export const NPY_ITEMSIZE: Readonly<Record<NpyDtype, number>> = {
  '<f4': 4,
  '<f8': 8,
  '<i4': 4,
  '<i8': 8,
  '|u1': 1,
};

/** The typed array each dtype is read into. */
export interface NpyArrayTypes {
  '<f4': Float32Array;
  '<f8': Float64Array;
  '<i4': Int32Array;
  '<i8': BigInt64Array;
  '|u1': Uint8Array;
}

export type NpyData = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array;

/** Data accepted by the writers: any numeric array (converted to the dtype), or BigInt64Array for `<i8`. */
export type NpyInput = ArrayLike<number> | BigInt64Array | ArrayLike<bigint>;

export interface NpyArray {
  dtype: NpyDtype;
  shape: number[];
  /** Flat, C order. `<i8` is a BigInt64Array unless `readNpy(path, { int64: 'number' })`. */
  data: NpyData;
}

export interface NpyHeaderInfo {
  dtype: NpyDtype;
  shape: number[];
  /** Format version written in the file, e.g. [1, 0]. */
  version: [number, number];
  /** Byte offset of the first element. */
  dataOffset: number;
}

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY
const ARRAY_ALIGN = 64;
const GROWTH_AXIS_MAX_DIGITS = 21;
const LITTLE_ENDIAN_HOST = endianness() === 'LE';

function isDtype(s: string): s is NpyDtype {
  return (NPY_DTYPES as readonly string[]).includes(s);
}

function checkShape(shape: readonly number[], where: string): number {
  let n = 1;
  for (const s of shape) {
    if (!Number.isSafeInteger(s) || s < 0) throw new Error(`${where}: shape entries must be non-negative integers, got [${shape.join(', ')}]`);
    n *= s;
  }
  if (!Number.isSafeInteger(n)) throw new Error(`${where}: shape [${shape.join(', ')}] has too many elements`);
  return n;
}

/** Python's repr of a tuple of ints: `()`, `(5,)`, `(2, 3)`. */
function shapeRepr(shape: readonly number[]): string {
  if (shape.length === 0) return '()';
  if (shape.length === 1) return `(${shape[0]},)`;
  return `(${shape.join(', ')})`;
}

/** The full header (magic, version, length, dict, padding) numpy writes for this dtype and shape. */
export function npyHeader(dtype: NpyDtype, shape: readonly number[]): Buffer {
  if (!isDtype(dtype)) throw new Error(`npy: unsupported dtype ${JSON.stringify(dtype)} (supported: ${NPY_DTYPES.join(', ')})`);
  checkShape(shape, 'npy');
  let dict = `{'descr': '${dtype}', 'fortran_order': False, 'shape': ${shapeRepr(shape)}, }`;
  if (shape.length > 0) dict += ' '.repeat(Math.max(0, GROWTH_AXIS_MAX_DIGITS - String(shape[0]).length));
  const body = Buffer.from(dict, 'latin1');
  const hlen = body.length + 1; // + the final newline
  for (const [major, lenBytes] of [
    [1, 2],
    [2, 4],
  ] as const) {
    const padlen = ARRAY_ALIGN - ((MAGIC.length + 2 + lenBytes + hlen) % ARRAY_ALIGN);
    const total = hlen + padlen;
    if (lenBytes === 2 && total > 0xffff) continue; // too long for format 1.0
    const out = Buffer.alloc(MAGIC.length + 2 + lenBytes + total, 0x20);
    MAGIC.copy(out, 0);
    out[6] = major;
    out[7] = 0;
    if (lenBytes === 2) out.writeUInt16LE(total, 8);
    else out.writeUInt32LE(total, 8);
    body.copy(out, 8 + lenBytes);
    out[out.length - 1] = 0x0a;
    return out;
  }
  throw new Error('npy: header too long'); // unreachable: 2.0 allows 4 GiB
}

/** Converts `data[from, to)` to little-endian bytes of `dtype`, validating integers. */
function encodeRange(dtype: NpyDtype, data: NpyInput, from: number, to: number, where: string): Buffer {
  const n = to - from;
  const size = NPY_ITEMSIZE[dtype];
  // Fast path: the matching typed array on a little-endian host.
  if (LITTLE_ENDIAN_HOST) {
    const ctor =
      dtype === '<f4' ? Float32Array : dtype === '<f8' ? Float64Array : dtype === '<i4' ? Int32Array : dtype === '<i8' ? BigInt64Array : Uint8Array;
    if (data instanceof ctor) {
      return Buffer.from(data.buffer, data.byteOffset + from * size, n * size);
    }
  }
  const out = Buffer.alloc(n * size);
  const isBig = (v: unknown): v is bigint => typeof v === 'bigint';
  for (let i = 0; i < n; i++) {
    const v = (data as ArrayLike<number | bigint>)[from + i];
    const at = i * size;
    switch (dtype) {
      case '<f4':
        out.writeFloatLE(Number(v), at);
        break;
      case '<f8':
        out.writeDoubleLE(Number(v), at);
        break;
      case '<i4': {
        const x = Number(v);
        if (!Number.isInteger(x) || x < -0x80000000 || x > 0x7fffffff) throw new Error(`${where}: element ${from + i} = ${v} is not an int32`);
        out.writeInt32LE(x, at);
        break;
      }
      case '<i8': {
        let b: bigint;
        if (isBig(v)) b = v;
        else {
          if (!Number.isSafeInteger(v)) throw new Error(`${where}: element ${from + i} = ${v} is not a safe integer (pass a BigInt64Array for int64 beyond 2^53)`);
          b = BigInt(v);
        }
        if (b < -(1n << 63n) || b >= 1n << 63n) throw new Error(`${where}: element ${from + i} = ${b} is not an int64`);
        out.writeBigInt64LE(b, at);
        break;
      }
      case '|u1': {
        const x = Number(v);
        if (!Number.isInteger(x) || x < 0 || x > 255) throw new Error(`${where}: element ${from + i} = ${v} is not a uint8`);
        out[at] = x;
        break;
      }
    }
  }
  return out;
}

/** The whole file (header + data) as bytes. */
export function encodeNpy(dtype: NpyDtype, shape: readonly number[], data: NpyInput): Buffer {
  const n = checkShape(shape, 'npy');
  if (data.length !== n) throw new Error(`npy: shape [${shape.join(', ')}] needs ${n} elements, got ${data.length}`);
  return Buffer.concat([npyHeader(dtype, shape), encodeRange(dtype, data, 0, n, 'npy')]);
}

/**
 * Writes a whole array held in memory. For large arrays use NpyStreamWriter. The header and
 * the data are written one after the other, without concatenating them: a copy of a 200 MB
 * array costs more than the write itself (fresh pages).
 */
export function writeNpy(path: string, dtype: NpyDtype, shape: readonly number[], data: NpyInput): void {
  const n = checkShape(shape, 'npy');
  if (data.length !== n) throw new Error(`npy: shape [${shape.join(', ')}] needs ${n} elements, got ${data.length}`);
  const header = npyHeader(dtype, shape);
  const body = encodeRange(dtype, data, 0, n, 'npy');
  const fd = openSync(path, 'w');
  try {
    writeAll(fd, header, 0);
    writeAll(fd, body, header.length);
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes one `.npy` file incrementally: `create` writes the header, then `append` adds
 * elements in C order and `writeAt` writes at an element offset (any order, no overlap).
 * `close` checks that every one of the prod(shape) elements was written exactly once; if not,
 * it deletes the incomplete file and throws. Only the chunk being written is ever in memory.
 */
export class NpyStreamWriter {
  private fd: number | null;
  private cursor = 0;
  /** Disjoint, sorted, merged [start, end) element ranges already written. */
  private ranges: [number, number][] = [];

  private constructor(
    readonly path: string,
    readonly dtype: NpyDtype,
    readonly shape: readonly number[],
    readonly size: number,
    private readonly dataOffset: number,
    fd: number,
  ) {
    this.fd = fd;
  }

  static create(path: string, dtype: NpyDtype, shape: readonly number[]): NpyStreamWriter {
    const size = checkShape(shape, path);
    const header = npyHeader(dtype, shape);
    const fd = openSync(path, 'w');
    try {
      writeAll(fd, header, 0);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    return new NpyStreamWriter(path, dtype, [...shape], size, header.length, fd);
  }

  /** Elements written so far (counting positioned writes). */
  get written(): number {
    let n = 0;
    for (const [a, b] of this.ranges) n += b - a;
    return n;
  }

  /** Appends `data` at the append cursor (starts at 0, advances by each append). */
  append(data: NpyInput): void {
    this.writeAt(this.cursor, data);
    this.cursor += data.length;
  }

  /** Writes `data` starting at flat C-order element `offset`. */
  writeAt(offset: number, data: NpyInput): void {
    if (this.fd === null) throw new Error(`${this.path}: npy writer already closed`);
    const n = data.length;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + n > this.size) {
      throw new Error(`${this.path}: write of ${n} elements at offset ${offset} exceeds the ${this.size} elements of shape [${this.shape.join(', ')}]`);
    }
    if (n === 0) return;
    this.mark(offset, offset + n);
    const itemsize = NPY_ITEMSIZE[this.dtype];
    // Encode in bounded pieces so a large number[] chunk does not double its memory.
    const step = Math.max(1, Math.floor((8 << 20) / itemsize));
    for (let from = 0; from < n; from += step) {
      const to = Math.min(n, from + step);
      const bytes = encodeRange(this.dtype, data, from, to, this.path);
      writeAll(this.fd, bytes, this.dataOffset + (offset + from) * itemsize);
    }
  }

  private mark(a: number, b: number): void {
    const r = this.ranges;
    // first range whose end >= a
    let lo = 0;
    let hi = r.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (r[mid][1] < a) lo = mid + 1;
      else hi = mid;
    }
    const i = lo;
    let start = a;
    let end = b;
    let j = i;
    while (j < r.length && r[j][0] <= b) {
      if (r[j][0] < b && r[j][1] > a) {
        throw new Error(`${this.path}: elements ${Math.max(a, r[j][0])}..${Math.min(b, r[j][1]) - 1} written twice`);
      }
      start = Math.min(start, r[j][0]);
      end = Math.max(end, r[j][1]);
      j++;
    }
    r.splice(i, j - i, [start, end]);
  }

  /** Closes the file; throws (and deletes the file) unless all elements were written. */
  close(): void {
    if (this.fd === null) return;
    const fd = this.fd;
    this.fd = null;
    closeSync(fd);
    const w = this.written;
    if (w !== this.size) {
      try {
        unlinkSync(this.path);
      } catch {
        /* already gone */
      }
      const missing = this.size === 0 ? '' : ` (first missing element: ${this.firstMissing()})`;
      throw new Error(`${this.path}: only ${w} of ${this.size} elements of shape [${this.shape.join(', ')}] were written${missing}; incomplete file removed`);
    }
  }

  /** Closes and deletes the file (e.g. after an error upstream). */
  abort(): void {
    if (this.fd !== null) {
      closeSync(this.fd);
      this.fd = null;
    }
    try {
      unlinkSync(this.path);
    } catch {
      /* already gone */
    }
  }

  /**
   * Closes the file as an array of only the first `rows` entries along axis 0 (the rest were
   * never written: skipped images). The header keeps its length (numpy's header pads the first
   * dimension for growth), the file is truncated after the last row.
   */
  closeRows(rows: number): void {
    if (this.fd === null) throw new Error(`${this.path}: npy writer already closed`);
    const per = this.shape.length ? this.size / Math.max(1, this.shape[0]) : 1;
    if (!Number.isInteger(rows) || rows < 0 || rows > (this.shape[0] ?? 1)) throw new Error(`${this.path}: closeRows(${rows}) outside [0, ${this.shape[0]}]`);
    const shape = [rows, ...this.shape.slice(1)];
    const header = npyHeader(this.dtype, shape);
    if (header.length !== this.dataOffset) throw new Error(`${this.path}: header length changed when shrinking to ${rows} rows`);
    const want = rows * per;
    if (this.written !== want || (want > 0 && this.firstMissing() < want)) {
      this.abort();
      throw new Error(`${this.path}: only ${this.written} of the ${want} elements of the first ${rows} rows were written; incomplete file removed`);
    }
    writeAll(this.fd, header, 0);
    ftruncateSync(this.fd, this.dataOffset + want * NPY_ITEMSIZE[this.dtype]);
    (this as { shape: readonly number[] }).shape = shape;
    (this as { size: number }).size = want;
    this.close();
  }

  private firstMissing(): number {
    const r = this.ranges;
    if (r.length === 0 || r[0][0] > 0) return 0;
    return r[0][1];
  }
}

function writeAll(fd: number, buf: Buffer, position: number): void {
  let off = 0;
  while (off < buf.length) {
    off += writeSync(fd, buf, off, buf.length - off, position + off);
  }
}

// ---------------------------------------------------------------------------------------
// Reading

function malformed(path: string, why: string): UserError {
  return new UserError(`${path}: not a valid .npy file (${why})`);
}

/** A tiny parser for the Python literal subset numpy writes: dict, str, True/False, int, tuple. */
function parsePyLiteral(src: string, path: string): unknown {
  let i = 0;
  const ws = () => {
    while (i < src.length && /\s/.test(src[i])) i++;
  };
  const fail = (what: string): never => {
    throw malformed(path, `header ${what} at character ${i}: ${JSON.stringify(src.slice(0, 200))}`);
  };
  const value = (): unknown => {
    ws();
    const c = src[i];
    if (c === '{') {
      i++;
      const obj: Record<string, unknown> = {};
      for (;;) {
        ws();
        if (src[i] === '}') {
          i++;
          return obj;
        }
        const k = value();
        if (typeof k !== 'string') fail('has a non-string key');
        ws();
        if (src[i] !== ':') fail("expected ':'");
        i++;
        obj[k as string] = value();
        ws();
        if (src[i] === ',') i++;
        else if (src[i] !== '}') fail("expected ',' or '}'");
      }
    }
    if (c === '(' || c === '[') {
      const close = c === '(' ? ')' : ']';
      i++;
      const arr: unknown[] = [];
      for (;;) {
        ws();
        if (src[i] === close) {
          i++;
          return arr;
        }
        arr.push(value());
        ws();
        if (src[i] === ',') i++;
        else if (src[i] !== close) fail(`expected ',' or '${close}'`);
      }
    }
    if (c === "'" || c === '"') {
      const end = src.indexOf(c, i + 1);
      if (end < 0) fail('has an unterminated string');
      const s = src.slice(i + 1, end);
      i = end + 1;
      return s;
    }
    const m = /^(True|False|None|-?\d+L?)/.exec(src.slice(i));
    if (!m) return fail('has an unexpected token');
    i += m[0].length;
    if (m[0] === 'True') return true;
    if (m[0] === 'False') return false;
    if (m[0] === 'None') return null;
    return Number(m[0].replace('L', ''));
  };
  const v = value();
  ws();
  if (i !== src.length) fail('has trailing text');
  return v;
}

/** Parses the magic, version and header dict from the first bytes of a file. */
function parseHeader(head: Buffer, fileSize: number, path: string): NpyHeaderInfo {
  if (head.length < 10 || !head.subarray(0, 6).equals(MAGIC)) throw malformed(path, 'missing the \\x93NUMPY magic');
  const major = head[6];
  const minor = head[7];
  let lenBytes: number;
  if (major === 1) lenBytes = 2;
  else if (major === 2 || major === 3) lenBytes = 4;
  else throw malformed(path, `unknown format version ${major}.${minor}`);
  if (head.length < 8 + lenBytes) throw malformed(path, 'truncated header');
  const hlen = lenBytes === 2 ? head.readUInt16LE(8) : head.readUInt32LE(8);
  const dataOffset = 8 + lenBytes + hlen;
  if (dataOffset > fileSize) throw malformed(path, `header length ${hlen} exceeds the ${fileSize}-byte file`);
  if (head.length < dataOffset) throw malformed(path, 'truncated header');
  const text = head.subarray(8 + lenBytes, dataOffset).toString(major === 3 ? 'utf8' : 'latin1');
  const d = parsePyLiteral(text, path) as Record<string, unknown>;
  if (d === null || typeof d !== 'object' || Array.isArray(d)) throw malformed(path, 'header is not a dict');
  const keys = Object.keys(d).sort().join(',');
  if (keys !== 'descr,fortran_order,shape') throw malformed(path, `header keys are {${keys}}, expected descr, fortran_order, shape`);
  const descr = d.descr;
  if (typeof descr !== 'string') throw new UserError(`${path}: unsupported dtype (structured descr); supported: ${NPY_DTYPES.join(', ')}`);
  // numpy writes bytes and bools with '|'; accept '<u1' / '=u1' too.
  const norm = descr === '<u1' || descr === '=u1' || descr === 'u1' ? '|u1' : descr;
  if (!isDtype(norm)) throw new UserError(`${path}: unsupported dtype '${descr}'; supported: ${NPY_DTYPES.join(', ')} (convert with numpy's astype first)`);
  if (d.fortran_order !== false) {
    throw new UserError(`${path}: Fortran-order arrays are not supported; save a C-order copy (numpy.ascontiguousarray) instead`);
  }
  const shape = d.shape;
  if (!Array.isArray(shape) || !shape.every((s) => Number.isSafeInteger(s) && s >= 0)) throw malformed(path, `bad shape ${JSON.stringify(shape)}`);
  return { dtype: norm, shape: shape as number[], version: [major, minor], dataOffset };
}

/** Reads only the header: dtype, shape and where the data starts. */
export function readNpyHeader(path: string): NpyHeaderInfo {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new UserError(`${path}: cannot open (${(e as NodeJS.ErrnoException).code ?? e}); check the path`);
  }
  try {
    const size = fstatSync(fd).size;
    const first = Buffer.alloc(Math.min(size, 12));
    readSync(fd, first, 0, first.length, 0);
    if (first.length < 10 || !first.subarray(0, 6).equals(MAGIC)) throw malformed(path, 'missing the \\x93NUMPY magic');
    const lenBytes = first[6] === 1 ? 2 : 4;
    const hlen = first.length >= 8 + lenBytes ? (lenBytes === 2 ? first.readUInt16LE(8) : first.readUInt32LE(8)) : 0;
    const want = Math.min(size, 8 + lenBytes + hlen);
    const head = Buffer.alloc(want);
    readSync(fd, head, 0, want, 0);
    return parseHeader(head, size, path);
  } finally {
    closeSync(fd);
  }
}

export interface ReadNpyOptions {
  /** How to return `<i8` data: 'bigint' (BigInt64Array, default) or 'number' (Float64Array; throws beyond 2^53). */
  int64?: 'bigint' | 'number';
}

/** Parses a whole `.npy` file already in memory; `path` only names it in errors. */
export function decodeNpy(buf: Buffer, path = '<buffer>', options: ReadNpyOptions = {}): NpyArray {
  const h = parseHeader(buf, buf.length, path);
  let n = 1;
  for (const s of h.shape) n *= s;
  const itemsize = NPY_ITEMSIZE[h.dtype];
  const expected = h.dataOffset + n * itemsize;
  if (buf.length !== expected) {
    throw malformed(path, `shape [${h.shape.join(', ')}] of ${h.dtype} needs ${n * itemsize} data bytes, the file has ${buf.length - h.dataOffset}`);
  }
  // Copy into a fresh, aligned buffer.
  const bytes = new Uint8Array(n * itemsize);
  bytes.set(buf.subarray(h.dataOffset, expected));
  let data: NpyData;
  if (LITTLE_ENDIAN_HOST) {
    switch (h.dtype) {
      case '<f4':
        data = new Float32Array(bytes.buffer);
        break;
      case '<f8':
        data = new Float64Array(bytes.buffer);
        break;
      case '<i4':
        data = new Int32Array(bytes.buffer);
        break;
      case '<i8':
        data = new BigInt64Array(bytes.buffer);
        break;
      case '|u1':
        data = bytes;
        break;
    }
  } else {
    const dv = new DataView(bytes.buffer);
    switch (h.dtype) {
      case '<f4':
        data = Float32Array.from({ length: n }, (_, i) => dv.getFloat32(i * 4, true));
        break;
      case '<f8':
        data = Float64Array.from({ length: n }, (_, i) => dv.getFloat64(i * 8, true));
        break;
      case '<i4':
        data = Int32Array.from({ length: n }, (_, i) => dv.getInt32(i * 4, true));
        break;
      case '<i8':
        data = BigInt64Array.from({ length: n }, (_, i) => dv.getBigInt64(i * 8, true));
        break;
      case '|u1':
        data = bytes;
        break;
    }
  }
  if (h.dtype === '<i8' && options.int64 === 'number') {
    const big = data as BigInt64Array;
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const v = big[i];
      if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
        throw new UserError(`${path}: int64 element ${i} = ${v} cannot be represented exactly as a number; read it as bigint`);
      }
      out[i] = Number(v);
    }
    data = out;
  }
  return { dtype: h.dtype, shape: h.shape, data };
}

/** Reads a whole `.npy` file (dtype, shape, flat C-order data). */
export function readNpy(path: string, options: ReadNpyOptions = {}): NpyArray {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    throw new UserError(`${path}: cannot open (${(e as NodeJS.ErrnoException).code ?? e}); check the path`);
  }
  return decodeNpy(buf, path, options);
}
