import { closeSync, readSync, read as fsRead, close as fsClose, writeFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { UserError } from '../errors.js';
import { decode, encode } from './dtype.js';
import { openRegularSync } from './files.js';
import { printable } from './printable.js';
import { lfsPointerError } from './sniff.js';
import type { DType, FloatArray, TensorInfo, TensorSource } from './types.js';

interface Entry extends TensorInfo {
  begin: number; // absolute file offset
  end: number;
}

const SUPPORTED = new Set<string>(['F64', 'F32', 'F16', 'BF16']);

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
    const { fd, size } = openRegularSync(path);
    try {
      const { entries, metadata } = parseHeader(path, fd, size);
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

  async readInto(name: string, rowStart: number, rowEnd: number, into: Float32Array): Promise<Float32Array | null> {
    const e = this.entries.get(name);
    if (!e || e.dtype !== 'F32' || this.closed) return null; // `read` reports these
    const rows = e.shape.length === 0 ? 1 : e.shape[0];
    if (rowStart < 0 || rowEnd > rows || rowStart > rowEnd) return null;
    const rowBytes = rows === 0 ? 0 : (e.end - e.begin) / rows;
    const len = (rowEnd - rowStart) * rowBytes;
    if (len > into.byteLength) return null;
    const got = await readFully(this.fd, Buffer.from(into.buffer, into.byteOffset, len), len, e.begin + rowStart * rowBytes);
    if (got < len) throw new UserError(`${this.location}: unexpected end of file reading ${name}; the file is truncated, re-download it`);
    this.bytesRead += len;
    return into.subarray(0, len / 4);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await new Promise<void>((res, rej) => fsClose(this.fd, (err) => (err ? rej(err) : res())));
  }
}

/** Element sizes in bits of every dtype the format defines (only the float ones are decoded). */
const DTYPE_BITS: Record<string, number> = {
  BOOL: 8, U8: 8, I8: 8, F8_E5M2: 8, F8_E4M3: 8, F8_E8M0: 8, I16: 16, U16: 16, F16: 16, BF16: 16,
  I32: 32, U32: 32, F32: 32, F64: 64, I64: 64, U64: 64, C64: 64, F4: 4, F6_E2M3: 6, F6_E3M2: 6,
};
/** The reference reader's cap on the JSON header. */
const MAX_HEADER_BYTES = 100_000_000;

/**
 * Parses and validates the header as the reference implementation does: every dtype known,
 * every shape's byte size equal to its offsets' span, and the offsets tiling the data section
 * exactly, in order, with no gap, no overlap and nothing after the last tensor. (Accepting
 * overlaps would let one tensor silently read another's bytes.)
 */
function parseHeader(path: string, fd: number, size: number): { entries: Map<string, Entry>; metadata: Record<string, string> } {
  const bad = (why: string) => new UserError(`${path}: not a valid safetensors file (${why}); re-download or re-export the checkpoint`);
  const show = (name: string) => printable(name, 60);
  if (size < 8) throw bad(`only ${size} bytes`);
  const lenBuf = Buffer.alloc(8);
  readSync(fd, lenBuf, 0, 8, 0);
  if (lenBuf.toString('latin1') === 'version ') throw lfsPointerError(path);
  const headerLen = Number(lenBuf.readBigUInt64LE(0));
  if (headerLen <= 0 || headerLen > MAX_HEADER_BYTES || 8 + headerLen > size) throw bad(`header length ${headerLen} does not fit a ${size}-byte file`);
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
  const dataLen = size - dataStart;
  const entries = new Map<string, Entry>();
  let metadata: Record<string, string> = {};
  const spans: { name: string; b: number; e: number }[] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw) || !Object.values(raw).every((v) => typeof v === 'string')) throw bad('__metadata__ is not a map of strings');
      metadata = raw as Record<string, string>;
      continue;
    }
    const r = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (!r || typeof r !== 'object' || typeof r.dtype !== 'string' || !Array.isArray(r.shape) || !Array.isArray(r.data_offsets) || r.data_offsets.length !== 2) {
      throw bad(`entry ${show(name)} is malformed`);
    }
    const bits = DTYPE_BITS[r.dtype];
    if (bits === undefined) throw bad(`tensor ${show(name)} has unknown dtype ${JSON.stringify(r.dtype.slice(0, 20))}`);
    const [b, e] = r.data_offsets as unknown[];
    if (!Number.isSafeInteger(b) || !Number.isSafeInteger(e) || (b as number) < 0 || (e as number) < (b as number)) {
      throw bad(`tensor ${show(name)} has invalid data_offsets ${JSON.stringify(r.data_offsets).slice(0, 60)}`);
    }
    const shape = r.shape as unknown[];
    if (!shape.every((x) => Number.isSafeInteger(x) && (x as number) >= 0)) throw bad(`tensor ${show(name)} has invalid shape ${JSON.stringify(shape).slice(0, 60)}`);
    const count = (shape as number[]).reduce((a, x) => a * x, 1);
    const nbits = count * bits;
    if (!Number.isSafeInteger(nbits) || nbits % 8 !== 0) throw bad(`tensor ${show(name)} has shape ${JSON.stringify(shape).slice(0, 60)} that is not a whole number of ${r.dtype} bytes`);
    if ((e as number) - (b as number) !== nbits / 8) {
      throw bad(`tensor ${show(name)} has ${(e as number) - (b as number)} bytes but shape ${JSON.stringify(shape).slice(0, 60)} ${r.dtype} needs ${nbits / 8}`);
    }
    if (dataStart + (e as number) > size) throw bad(`tensor ${show(name)} ends at byte ${dataStart + (e as number)} but the file has ${size} bytes (truncated?)`);
    spans.push({ name, b: b as number, e: e as number });
    entries.set(name, { name, dtype: r.dtype as DType, shape: shape as number[], begin: dataStart + (b as number), end: dataStart + (e as number) });
  }
  // The offsets must tile [0, dataLen) exactly.
  spans.sort((x, y) => x.b - y.b || x.e - y.e);
  let next = 0;
  for (const sp of spans) {
    if (sp.b < next) throw bad(`tensor ${show(sp.name)} overlaps the previous tensor's bytes (data_offsets [${sp.b}, ${sp.e}] start before ${next})`);
    if (sp.b > next) throw bad(`the data section has a gap: bytes ${next}..${sp.b} belong to no tensor (before ${show(sp.name)})`);
    next = sp.e;
  }
  if (next !== dataLen) throw bad(`the tensors cover ${next} bytes of data but the file holds ${dataLen} after the header`);
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

