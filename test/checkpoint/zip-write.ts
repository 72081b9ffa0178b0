/** A zip writer for test fixtures: torch checkpoints as torch.save writes them. */
import { closeSync, openSync, writeSync } from 'node:fs';
import { SIG_CEN, SIG_EOCD, SIG_EOCD64, SIG_LOC, SIG_LOC64, U32 } from '../../src/checkpoint/zip.js';

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
  /** Bytes on disk (differs from `size` for deflated entries). */
  csize: number;
  method: number;
  offset: number;
}

/**
 * A deflated entry (hostile fixtures): `data` is already raw-deflate compressed; `size` is the
 * uncompressed size the directory declares (a deflate bomb may lie), `crc` its CRC.
 */
export interface RawEntry {
  method: 8;
  size: number;
  crc?: number;
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

  add(name: string, data: Uint8Array, raw?: RawEntry): void {
    const align = this.opts.alignment ?? 64;
    const nameBuf = Buffer.from(name, 'utf8');
    const size = raw ? raw.size : data.length;
    const csize = data.length;
    const method = raw ? raw.method : 0;
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
    h.writeUInt16LE(method, 8);
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
    const crc = raw ? raw.crc ?? 0 : crc32(data);
    const dd = Buffer.alloc(big ? 24 : 16);
    dd.writeUInt32LE(0x08074b50, 0);
    dd.writeUInt32LE(crc, 4);
    if (big) dd.writeBigUInt64LE(BigInt(csize), 8), dd.writeBigUInt64LE(BigInt(size), 16);
    else dd.writeUInt32LE(csize, 8), dd.writeUInt32LE(size, 12);
    this.write(dd);
    this.written.push({ name: nameBuf, crc, size, csize, method, offset });
  }

  finish(): void {
    const force = this.opts.forceZip64 ?? false;
    const cdOffset = this.pos;
    for (const w of this.written) {
      const sizes64 = force || w.size >= U32 || w.csize >= U32;
      const off64 = force || w.offset >= U32;
      const extra = Buffer.alloc(sizes64 || off64 ? 4 + (sizes64 ? 16 : 0) + (off64 ? 8 : 0) : 0);
      if (extra.length) {
        extra.writeUInt16LE(1, 0);
        extra.writeUInt16LE(extra.length - 4, 2);
        let q = 4;
        if (sizes64) extra.writeBigUInt64LE(BigInt(w.size), q), extra.writeBigUInt64LE(BigInt(w.csize), q + 8), (q += 16);
        if (off64) extra.writeBigUInt64LE(BigInt(w.offset), q);
      }
      const c = Buffer.alloc(46);
      c.writeUInt32LE(SIG_CEN, 0);
      c.writeUInt16LE(extra.length ? 45 : 0, 6);
      c.writeUInt16LE(0x0808, 8);
      c.writeUInt16LE(w.method, 10);
      c.writeUInt32LE(w.crc, 16);
      c.writeUInt32LE(sizes64 ? U32 : w.csize, 20);
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
