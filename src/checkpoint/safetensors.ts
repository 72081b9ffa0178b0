import { openSync, closeSync, fstatSync, readSync, read as fsRead, close as fsClose, writeFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { UserError } from '../errors.js';
import { DTYPE_BYTES, decode, encode } from './dtype.js';
import { lfsPointerError } from './sniff.js';
import type { DType, FloatArray, TensorInfo, TensorSource } from './types.js';

interface Entry extends TensorInfo {
  begin: number; // absolute file offset
  end: number;
}

const SUPPORTED = new Set<string>(['F64', 'F32', 'F16', 'BF16']);
// Byte sizes of the dtypes we can list (and reject with a clear message when read).
const OTHER_BYTES: Record<string, number> = { I64: 8, U64: 8, I32: 4, U32: 4, I16: 2, U16: 2, I8: 1, U8: 1, BOOL: 1, F8_E4M3: 1, F8_E5M2: 1 };

/** Reads exactly `len` bytes at `pos` (a short read means the file shrank or is truncated). */
export function readFully(fd: number, buf: Buffer, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let got = 0;
    const step = () =>
      fsRead(fd, buf, got, len - got, pos + got, (err, n) => {
        if (err) return reject(err);
        got += n;
        if (n === 0 || got >= len) return resolve(got);
        step();
      });
    if (len === 0) resolve(0);
    else step();
  });
}

/**
 * A safetensors file read by positioned reads: the header (8-byte length + JSON) at open,
 * then only the byte ranges asked for. Validates the header against the file size so a
 * truncated download or a lying header fails at open with the file named.
 * Holds a plain fd so a sharded index can open a shard synchronously from `info()`.
 */
export class SafetensorsFile implements TensorSource {
  /** Tensor payload bytes read so far (tests check that row reads touch only their rows). */
  bytesRead = 0;
  private closed = false;

  private constructor(
    readonly location: string,
    private fd: number,
    private entries: Map<string, Entry>,
    readonly metadata: Record<string, string>,
  ) {}

  static async open(path: string): Promise<SafetensorsFile> {
    // The header is small; reading it synchronously keeps one code path for open and openSync.
    await Promise.resolve();
    return SafetensorsFile.openSync(path);
  }

  static openSync(path: string): SafetensorsFile {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (e) {
      throw new UserError(`${path}: cannot open (${(e as NodeJS.ErrnoException).code ?? e}); check the path`);
    }
    try {
      const { entries, metadata } = parseHeader(path, fd);
      return new SafetensorsFile(path, fd, entries, metadata);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  info(name: string): TensorInfo | undefined {
    const e = this.entries.get(name);
    return e && { name: e.name, dtype: e.dtype, shape: e.shape };
  }

  async read(name: string, rowStart?: number, rowEnd?: number): Promise<FloatArray> {
    const e = this.entries.get(name);
    if (!e) throw new UserError(`${this.location}: tensor ${name} is missing; the checkpoint is incomplete or of another architecture`);
    if (!SUPPORTED.has(e.dtype)) throw new UserError(`${this.location}: tensor ${name} has dtype ${e.dtype}; only F32, F16, BF16 and F64 are supported`);
    if (this.closed) throw new Error(`${this.location}: read after close`);
    const rows = e.shape.length === 0 ? 1 : e.shape[0];
    const r0 = rowStart ?? 0;
    const r1 = rowEnd ?? rows;
    if (r0 < 0 || r1 > rows || r0 > r1) throw new Error(`row range [${r0},${r1}) outside ${name} with ${rows} rows`);
    const rowBytes = rows === 0 ? 0 : (e.end - e.begin) / rows;
    const len = (r1 - r0) * rowBytes;
    const buf = Buffer.allocUnsafe(len);
    const got = await readFully(this.fd, buf, len, e.begin + r0 * rowBytes);
    if (got < len) throw new UserError(`${this.location}: unexpected end of file reading ${name}; the file is truncated, re-download it`);
    this.bytesRead += len;
    return decode(buf, e.dtype);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await new Promise<void>((res, rej) => fsClose(this.fd, (err) => (err ? rej(err) : res())));
  }
}

function parseHeader(path: string, fd: number): { entries: Map<string, Entry>; metadata: Record<string, string> } {
  const size = fstatSync(fd).size;
  const bad = (why: string) => new UserError(`${path}: not a valid safetensors file (${why}); re-download or re-export the checkpoint`);
  if (size < 8) throw bad(`only ${size} bytes`);
  const lenBuf = Buffer.alloc(8);
  readSync(fd, lenBuf, 0, 8, 0);
  if (lenBuf.toString('latin1') === 'version ') throw lfsPointerError(path);
  const headerLen = Number(lenBuf.readBigUInt64LE(0));
  if (headerLen <= 0 || headerLen > 100_000_000 || 8 + headerLen > size) throw bad(`header length ${headerLen} does not fit a ${size}-byte file`);
  const hb = Buffer.alloc(headerLen);
  readSync(fd, hb, 0, headerLen, 8);
  let header: unknown;
  try {
    header = JSON.parse(hb.toString('utf8'));
  } catch {
    throw bad('header is not JSON');
  }
  if (!header || typeof header !== 'object' || Array.isArray(header)) throw bad('header is not a JSON object');
  const dataStart = 8 + headerLen;
  const entries = new Map<string, Entry>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = (raw ?? {}) as Record<string, string>;
      continue;
    }
    const r = raw as { dtype?: string; shape?: number[]; data_offsets?: [number, number] };
    if (!r || typeof r.dtype !== 'string' || !Array.isArray(r.shape) || !Array.isArray(r.data_offsets)) throw bad(`entry ${name} is malformed`);
    const [b, e] = r.data_offsets;
    if (!Number.isSafeInteger(b) || !Number.isSafeInteger(e) || b < 0 || e < b) throw bad(`tensor ${name} has invalid data_offsets ${JSON.stringify(r.data_offsets)}`);
    if (!r.shape.every((x) => Number.isSafeInteger(x) && x >= 0)) throw bad(`tensor ${name} has invalid shape ${JSON.stringify(r.shape)}`);
    const begin = dataStart + b;
    const end = dataStart + e;
    if (end > size) throw bad(`tensor ${name} ends at byte ${end} but the file has ${size} bytes (truncated?)`);
    const count = r.shape.reduce((a, x) => a * x, 1);
    const esize = SUPPORTED.has(r.dtype) ? DTYPE_BYTES[r.dtype as DType] : OTHER_BYTES[r.dtype];
    if (esize !== undefined && e - b !== count * esize) {
      throw bad(`tensor ${name} has ${e - b} bytes but shape ${JSON.stringify(r.shape)} ${r.dtype} needs ${count * esize}`);
    }
    entries.set(name, { name, dtype: r.dtype as DType, shape: r.shape, begin, end });
  }
  return { entries, metadata };
}

export interface TensorToWrite {
  dtype: DType;
  shape: number[];
  data: ArrayLike<number>;
}

/** Writes a safetensors file (fixtures, and any tool that exports tensors). */
export function writeSafetensors(path: string, tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): void {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const count = t.shape.reduce((a, x) => a * x, 1);
    if (count !== t.data.length) throw new Error(`${name}: shape ${t.shape} needs ${count} values, got ${t.data.length}`);
    const bytes = encode(t.data, t.dtype);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.byteLength] };
    chunks.push(bytes);
    offset += bytes.byteLength;
  }
  let json = JSON.stringify(header);
  // Pad the header so the data section is 8-byte aligned, as the reference writer does.
  while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += ' ';
  const hb = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hb.length));
  writeFileSync(path, Buffer.concat([len, hb, ...chunks]));
}

export async function fileSize(path: string): Promise<number> {
  return (await stat(path)).size;
}

