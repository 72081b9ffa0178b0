import type { FileHandle } from 'node:fs/promises';
import { inflateRawSync } from 'node:zlib';
import { UserError } from '../errors.js';

/**
 * Just enough ZIP for torch checkpoints: the central directory (with ZIP64, since checkpoints
 * pass 4 GB) is parsed once, then entries are read by positioned reads of only the bytes asked
 * for. Whole-file zip libraries (adm-zip) load everything into memory, which we must not do.
 */
export interface ZipEntry {
  name: string;
  method: number; // 0 stored, 8 deflated
  compressedSize: number;
  size: number;
  crc: number;
  localHeaderOffset: number;
}

export const SIG_EOCD = 0x06054b50;
export const SIG_EOCD64 = 0x06064b50;
export const SIG_LOC64 = 0x07064b50;
export const SIG_CEN = 0x02014b50;
export const SIG_LOC = 0x04034b50;
export const U32 = 0xffffffff;

export class ZipReader {
  /** Entry payload bytes read so far (tests check positioned reads stay small). */
  bytesRead = 0;
  private starts = new Map<string, number>();

  private constructor(
    readonly location: string,
    private fh: FileHandle,
    readonly size: number,
    readonly entries: Map<string, ZipEntry>,
    /** Entry names in central-directory order (torch takes its archive folder from the first). */
    readonly order: string[],
  ) {}

  static async open(location: string, fh: FileHandle, size: number): Promise<ZipReader> {
    const bad = (why: string) => new UserError(`${location}: ${why}; re-download the file or re-save it with torch.save`);
    const tailLen = Math.min(size, 22 + 0xffff + 20);
    const tail = await readAt(fh, size - tailLen, tailLen);
    let at = -1;
    for (let i = tail.length - 22; i >= 0; i--) {
      if (tail.readUInt32LE(i) === SIG_EOCD) {
        at = i;
        break;
      }
    }
    if (at < 0) throw bad('is truncated or damaged (the zip directory at its end is missing)');
    let count = tail.readUInt16LE(at + 10);
    let cdSize = tail.readUInt32LE(at + 12);
    let cdOffset = tail.readUInt32LE(at + 16);
    const loc = at - 20;
    if (loc >= 0 && tail.readUInt32LE(loc) === SIG_LOC64) {
      const off64 = Number(tail.readBigUInt64LE(loc + 8));
      if (off64 + 56 > size) throw bad('has a damaged ZIP64 directory');
      const rec = await readAt(fh, off64, 56);
      if (rec.readUInt32LE(0) !== SIG_EOCD64) throw bad('has a damaged ZIP64 directory');
      count = Number(rec.readBigUInt64LE(32));
      cdSize = Number(rec.readBigUInt64LE(40));
      cdOffset = Number(rec.readBigUInt64LE(48));
    }
    if (cdOffset + cdSize > size) throw bad('is truncated (its zip directory points past the end)');
    const cd = await readAt(fh, cdOffset, cdSize);
    const entries = new Map<string, ZipEntry>();
    const order: string[] = [];
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (p + 46 > cd.length || cd.readUInt32LE(p) !== SIG_CEN) throw bad('has a damaged zip directory');
      const nameLen = cd.readUInt16LE(p + 28);
      const extraLen = cd.readUInt16LE(p + 30);
      const commentLen = cd.readUInt16LE(p + 32);
      const e: ZipEntry = {
        name: cd.toString('utf8', p + 46, p + 46 + nameLen),
        method: cd.readUInt16LE(p + 10),
        crc: cd.readUInt32LE(p + 16),
        compressedSize: cd.readUInt32LE(p + 20),
        size: cd.readUInt32LE(p + 24),
        localHeaderOffset: cd.readUInt32LE(p + 42),
      };
      applyZip64Extra(e, cd.subarray(p + 46 + nameLen, p + 46 + nameLen + extraLen));
      if (e.localHeaderOffset + 30 + e.compressedSize > size) throw bad(`is truncated (entry ${e.name} runs past the end)`);
      entries.set(e.name, e);
      order.push(e.name);
      p += 46 + nameLen + extraLen + commentLen;
    }
    return new ZipReader(location, fh, size, entries, order);
  }

  /** Absolute offset of an entry's data: after its local header, whose extra field torch pads. */
  async dataStart(e: ZipEntry): Promise<number> {
    let s = this.starts.get(e.name);
    if (s === undefined) {
      const h = await readAt(this.fh, e.localHeaderOffset, 30);
      if (h.readUInt32LE(0) !== SIG_LOC) throw new UserError(`${this.location}: damaged zip entry ${e.name}; re-download the file`);
      s = e.localHeaderOffset + 30 + h.readUInt16LE(26) + h.readUInt16LE(28);
      if (s + e.compressedSize > this.size) throw new UserError(`${this.location}: is truncated (entry ${e.name} runs past the end); re-download it`);
      this.starts.set(e.name, s);
    }
    return s;
  }

  /** A whole entry (small records such as data.pkl), inflated if it was compressed. */
  async readAll(e: ZipEntry): Promise<Buffer> {
    const raw = await readAt(this.fh, await this.dataStart(e), e.compressedSize);
    this.bytesRead += raw.length;
    if (e.method === 0) return raw;
    if (e.method === 8) return inflateRawSync(raw);
    throw new UserError(`${this.location}: entry ${e.name} uses zip compression method ${e.method}; re-save the checkpoint with torch.save`);
  }

  /** Bytes [start, start+len) of a stored entry, without touching the rest. */
  async readRange(e: ZipEntry, start: number, len: number): Promise<Buffer> {
    if (e.method !== 0) {
      throw new UserError(`${this.location}: entry ${e.name} is compressed; re-save the checkpoint with torch.save so tensors can be read lazily`);
    }
    if (start < 0 || start + len > e.size) {
      throw new UserError(`${this.location}: entry ${e.name} has ${e.size} bytes but ${start + len} are needed; the file is damaged, re-download it`);
    }
    const buf = await readAt(this.fh, (await this.dataStart(e)) + start, len);
    this.bytesRead += len;
    return buf;
  }
}

function applyZip64Extra(e: ZipEntry, extra: Buffer): void {
  let q = 0;
  while (q + 4 <= extra.length) {
    const id = extra.readUInt16LE(q);
    const len = extra.readUInt16LE(q + 2);
    if (id === 0x0001) {
      let r = q + 4;
      const next = () => {
        const v = Number(extra.readBigUInt64LE(r));
        r += 8;
        return v;
      };
      // Only the fields saturated in the fixed header are present, in this order.
      if (e.size === U32) e.size = next();
      if (e.compressedSize === U32) e.compressedSize = next();
      if (e.localHeaderOffset === U32) e.localHeaderOffset = next();
      return;
    }
    q += 4 + len;
  }
}

async function readAt(fh: FileHandle, pos: number, len: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(len);
  let got = 0;
  while (got < len) {
    const { bytesRead } = await fh.read(buf, got, len - got, pos + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  if (got < len) throw new UserError(`unexpected end of file at byte ${pos + got}; the file is truncated, re-download it`);
  return buf;
}
