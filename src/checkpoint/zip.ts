import type { FileHandle } from 'node:fs/promises';
import { closeSync, openSync, writeSync } from 'node:fs';
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

const SIG_EOCD = 0x06054b50;
const SIG_EOCD64 = 0x06064b50;
const SIG_LOC64 = 0x07064b50;
const SIG_CEN = 0x02014b50;
const SIG_LOC = 0x04034b50;
const U32 = 0xffffffff;

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

// ---------------------------------------------------------------------------------------------
// Writing, the way torch's PyTorchStreamWriter (miniz) does: stored entries, data descriptors,
// each entry's data aligned to 64 bytes by an "FB" extra field padded with 'Z', and a ZIP64
// end-of-central-directory record always (torch opens miniz with MZ_ZIP_FLAG_WRITE_ZIP64).

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(data: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

interface Written {
  name: Buffer;
  crc: number;
  size: number;
  offset: number;
}

export class ZipWriter {
  private fd: number;
  private pos = 0;
  private written: Written[] = [];

  /** `forceZip64` writes ZIP64 fields even for small entries (tests of the >4 GB path). */
  constructor(path: string, private opts: { alignment?: number; forceZip64?: boolean } = {}) {
    this.fd = openSync(path, 'w');
  }

  private write(b: Uint8Array): void {
    let off = 0;
    while (off < b.length) off += writeSync(this.fd, b, off, b.length - off);
    this.pos += b.length;
  }

  add(name: string, data: Uint8Array): void {
    const align = this.opts.alignment ?? 64;
    const nameBuf = Buffer.from(name, 'utf8');
    const size = data.length;
    const big = size >= U32;
    const z64 = Buffer.alloc(big ? 20 : 0);
    if (big) {
      z64.writeUInt16LE(1, 0);
      z64.writeUInt16LE(16, 2);
      z64.writeBigUInt64LE(BigInt(size), 4);
      z64.writeBigUInt64LE(BigInt(size), 12);
    }
    const start = this.pos + 30 + nameBuf.length + z64.length + 4;
    const pad = (align - (start % align)) % align;
    const fb = Buffer.alloc(4 + pad, 'Z');
    fb.write('FB', 0, 'latin1');
    fb.writeUInt16LE(pad, 2);
    const h = Buffer.alloc(30);
    h.writeUInt32LE(SIG_LOC, 0);
    h.writeUInt16LE(0, 4); // version needed, as miniz writes for torch
    h.writeUInt16LE(0x0808, 6); // sizes in a data descriptor; UTF-8 names
    // method, time, date, crc and sizes stay 0: they follow in the data descriptor
    if (big) h.writeUInt32LE(U32, 18), h.writeUInt32LE(U32, 22);
    h.writeUInt16LE(nameBuf.length, 26);
    h.writeUInt16LE(z64.length + fb.length, 28);
    const offset = this.pos;
    this.write(h);
    this.write(nameBuf);
    this.write(z64);
    this.write(fb);
    this.write(data);
    const crc = crc32(data);
    const dd = Buffer.alloc(big ? 24 : 16);
    dd.writeUInt32LE(0x08074b50, 0);
    dd.writeUInt32LE(crc, 4);
    if (big) dd.writeBigUInt64LE(BigInt(size), 8), dd.writeBigUInt64LE(BigInt(size), 16);
    else dd.writeUInt32LE(size, 8), dd.writeUInt32LE(size, 12);
    this.write(dd);
    this.written.push({ name: nameBuf, crc, size, offset });
  }

  finish(): void {
    const force = this.opts.forceZip64 ?? false;
    const cdOffset = this.pos;
    for (const w of this.written) {
      const sizes64 = force || w.size >= U32;
      const off64 = force || w.offset >= U32;
      const extra = Buffer.alloc(sizes64 || off64 ? 4 + (sizes64 ? 16 : 0) + (off64 ? 8 : 0) : 0);
      if (extra.length) {
        extra.writeUInt16LE(1, 0);
        extra.writeUInt16LE(extra.length - 4, 2);
        let q = 4;
        if (sizes64) extra.writeBigUInt64LE(BigInt(w.size), q), extra.writeBigUInt64LE(BigInt(w.size), q + 8), (q += 16);
        if (off64) extra.writeBigUInt64LE(BigInt(w.offset), q);
      }
      const c = Buffer.alloc(46);
      c.writeUInt32LE(SIG_CEN, 0);
      c.writeUInt16LE(extra.length ? 45 : 0, 6);
      c.writeUInt16LE(0x0808, 8);
      c.writeUInt32LE(w.crc, 16);
      c.writeUInt32LE(sizes64 ? U32 : w.size, 20);
      c.writeUInt32LE(sizes64 ? U32 : w.size, 24);
      c.writeUInt16LE(w.name.length, 28);
      c.writeUInt16LE(extra.length, 30);
      c.writeUInt32LE(off64 ? U32 : w.offset, 42);
      this.write(c);
      this.write(w.name);
      this.write(extra);
    }
    const cdSize = this.pos - cdOffset;
    const n = this.written.length;
    const eocd64At = this.pos;
    const r = Buffer.alloc(56 + 20 + 22);
    r.writeUInt32LE(SIG_EOCD64, 0);
    r.writeBigUInt64LE(44n, 4);
    r.writeUInt16LE(0x031e, 12);
    r.writeUInt16LE(45, 14);
    r.writeBigUInt64LE(BigInt(n), 24);
    r.writeBigUInt64LE(BigInt(n), 32);
    r.writeBigUInt64LE(BigInt(cdSize), 40);
    r.writeBigUInt64LE(BigInt(cdOffset), 48);
    r.writeUInt32LE(SIG_LOC64, 56);
    r.writeBigUInt64LE(BigInt(eocd64At), 64);
    r.writeUInt32LE(1, 72);
    const e = 76;
    const sat = force || n >= 0xffff || cdOffset >= U32;
    r.writeUInt32LE(SIG_EOCD, e);
    r.writeUInt16LE(sat ? 0xffff : n, e + 8);
    r.writeUInt16LE(sat ? 0xffff : n, e + 10);
    r.writeUInt32LE(sat ? U32 : cdSize, e + 12);
    r.writeUInt32LE(sat ? U32 : cdOffset, e + 16);
    this.write(r);
    closeSync(this.fd);
  }
}
