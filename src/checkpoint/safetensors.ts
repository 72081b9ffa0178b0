import { open, type FileHandle, stat } from 'node:fs/promises';
import { writeFileSync } from 'node:fs';
import { UserError } from '../errors.js';
import { DTYPE_BYTES, decode, encode } from './dtype.js';
import type { DType, FloatArray, TensorInfo, TensorSource } from './types.js';

interface Entry extends TensorInfo {
  begin: number; // absolute file offset
  end: number;
}

const SUPPORTED = new Set<string>(['F64', 'F32', 'F16', 'BF16']);

/**
 * A safetensors file read by positioned reads: the header (8-byte length + JSON) at open,
 * then only the byte ranges asked for. Validates the header against the file size so a
 * truncated download or a lying header fails at open with the file named.
 */
export class SafetensorsFile implements TensorSource {
  private constructor(
    readonly location: string,
    private fh: FileHandle,
    private entries: Map<string, Entry>,
    readonly metadata: Record<string, string>,
  ) {}

  static async open(path: string): Promise<SafetensorsFile> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (e) {
      throw new UserError(`${path}: cannot open (${(e as NodeJS.ErrnoException).code ?? e}); check the path`);
    }
    try {
      const size = (await fh.stat()).size;
      const bad = (why: string) =>
        new UserError(`${path}: not a valid safetensors file (${why}); re-download or re-export the checkpoint`);
      if (size < 8) throw bad(`only ${size} bytes`);
      const lenBuf = Buffer.alloc(8);
      await fh.read(lenBuf, 0, 8, 0);
      const headerLen = Number(lenBuf.readBigUInt64LE(0));
      if (headerLen <= 0 || headerLen > 100_000_000 || 8 + headerLen > size) throw bad(`header length ${headerLen} does not fit a ${size}-byte file`);
      const hb = Buffer.alloc(headerLen);
      await fh.read(hb, 0, headerLen, 8);
      let header: Record<string, unknown>;
      try {
        header = JSON.parse(hb.toString('utf8'));
      } catch {
        throw bad('header is not JSON');
      }
      const dataStart = 8 + headerLen;
      const entries = new Map<string, Entry>();
      let metadata: Record<string, string> = {};
      for (const [name, raw] of Object.entries(header)) {
        if (name === '__metadata__') {
          metadata = (raw ?? {}) as Record<string, string>;
          continue;
        }
        const r = raw as { dtype?: string; shape?: number[]; data_offsets?: [number, number] };
        if (!r || typeof r.dtype !== 'string' || !Array.isArray(r.shape) || !Array.isArray(r.data_offsets)) throw bad(`entry ${name} is malformed`);
        const [b, e] = r.data_offsets;
        const begin = dataStart + b;
        const end = dataStart + e;
        if (end > size) throw bad(`tensor ${name} ends at byte ${end} but the file has ${size} bytes (truncated?)`);
        const count = r.shape.reduce((a, x) => a * x, 1);
        if (SUPPORTED.has(r.dtype)) {
          const want = count * DTYPE_BYTES[r.dtype as DType];
          if (e - b !== want) throw bad(`tensor ${name} has ${e - b} bytes but shape ${JSON.stringify(r.shape)} ${r.dtype} needs ${want}`);
        }
        entries.set(name, { name, dtype: r.dtype as DType, shape: r.shape, begin, end });
      }
      return new SafetensorsFile(path, fh, entries, metadata);
    } catch (e) {
      await fh.close();
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
    const rows = e.shape.length === 0 ? 1 : e.shape[0];
    const r0 = rowStart ?? 0;
    const r1 = rowEnd ?? rows;
    if (r0 < 0 || r1 > rows || r0 > r1) throw new Error(`row range [${r0},${r1}) outside ${name} with ${rows} rows`);
    const rowBytes = rows === 0 ? 0 : (e.end - e.begin) / rows;
    const len = (r1 - r0) * rowBytes;
    const buf = Buffer.allocUnsafe(len);
    let got = 0;
    while (got < len) {
      const { bytesRead } = await this.fh.read(buf, got, len - got, e.begin + r0 * rowBytes + got);
      if (bytesRead === 0) throw new UserError(`${this.location}: unexpected end of file reading ${name}; the file is truncated, re-download it`);
      got += bytesRead;
    }
    return decode(buf, e.dtype);
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
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
