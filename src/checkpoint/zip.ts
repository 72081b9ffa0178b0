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

/** Default cap on a record read whole (data.pkl, byteorder): real ones are kilobytes. */
export const MAX_RECORD_BYTES = 64 * 2 ** 20;
/** Cap on the central directory: a torch archive of 100k tensors has ~15 MB of it. */
export const MAX_DIRECTORY_BYTES = 64 * 2 ** 20;

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
    if (cdSize > MAX_DIRECTORY_BYTES) throw bad(`has a zip directory of ${cdSize} bytes, over the ${MAX_DIRECTORY_BYTES}-byte limit`);
    if (count * 46 > cdSize) throw bad(`has a damaged zip directory (${count} entries cannot fit in ${cdSize} bytes)`);
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
      // A stored entry's two sizes are the same number; tensor reads trust `size`.
      if (e.method === 0 && e.size !== e.compressedSize) throw bad(`has a damaged zip directory (stored entry ${e.name} claims ${e.size} bytes in ${e.compressedSize})`);
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

  /**
   * A whole entry (small records such as data.pkl), inflated if it was compressed. Its size is
   * checked against `maxBytes` from the zip directory before anything is read, and the inflate
   * is capped at the size the directory declares, so a deflate bomb that lies about its size
   * stops there instead of filling memory.
   */
  async readAll(e: ZipEntry, maxBytes = MAX_RECORD_BYTES): Promise<Buffer> {
    const over = (n: number) =>
      new UserError(`${this.location}: entry ${e.name} would be ${n} bytes, over the ${maxBytes}-byte limit for it; a checkpoint never needs that, the file is damaged or crafted`);
    if (e.method !== 0 && e.method !== 8) {
      throw new UserError(`${this.location}: entry ${e.name} uses zip compression method ${e.method}; re-save the checkpoint with torch.save`);
    }
    if (e.size > maxBytes) throw over(e.size);
    // Deflate never grows data by more than ~0.1% (stored blocks): anything larger is not this entry.
    const damaged = (why: string) => new UserError(`${this.location}: entry ${e.name} is damaged (${why}); re-download the file`);
    if (e.compressedSize > e.size + (e.size >> 8) + 1024) throw damaged(`${e.compressedSize} compressed bytes cannot hold the ${e.size} bytes the zip directory says`);
    const raw = await readAt(this.fh, await this.dataStart(e), e.compressedSize);
    this.bytesRead += raw.length;
    if (e.method === 0) {
      if (raw.length !== e.size) throw damaged(`stored with ${raw.length} bytes but the zip directory says ${e.size}`);
      return raw;
    }
    let out: Buffer;
    try {
      out = inflateRawSync(raw, { maxOutputLength: Math.max(1, e.size + 1) });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw damaged(`it inflates to more than the ${e.size} bytes the zip directory says`);
      throw damaged(`cannot inflate: ${(err as Error).message}`);
    }
    if (out.length !== e.size) throw damaged(`it inflates to ${out.length} bytes but the zip directory says ${e.size}`);
    return out;
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
