/**
 * A minimal tar index for webdataset shards: walks the 512-byte headers with positioned reads
 * (never reading member data) and records where each regular file's bytes are, so images can be
 * read later in any order with one `pread`. Understands POSIX ustar (name + prefix), GNU long
 * names (`L` entries), pax extended headers (`x`: `path`, `size`) and base-256 sizes; skips
 * directories, links and pax global headers. Compressed shards (.tar.gz) are refused by the
 * caller: they cannot be read at random.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

export interface TarMember {
  name: string;
  /** Byte offset of the member's data in the file. */
  offset: number;
  size: number;
}

export interface TarIndex {
  members: TarMember[];
  /** Set when the walk stopped early (corrupt header, truncated file). */
  warning?: string;
}

const BLOCK = 512;

function readExact(fd: number, buf: Uint8Array, pos: number): number {
  let done = 0;
  while (done < buf.length) {
    const r = readSync(fd, buf, done, buf.length - done, pos + done);
    if (r === 0) break;
    done += r;
  }
  return done;
}

function cstring(b: Uint8Array, start: number, len: number): string {
  let end = start;
  while (end < start + len && b[end] !== 0) end++;
  return Buffer.from(b.buffer, b.byteOffset + start, end - start).toString('utf8');
}

/** Octal (NUL/space padded) or GNU base-256 numeric field. */
function numeric(b: Uint8Array, start: number, len: number): number {
  if (b[start] & 0x80) {
    let v = b[start] & 0x7f;
    for (let i = 1; i < len; i++) v = v * 256 + b[start + i];
    return v;
  }
  const s = cstring(b, start, len).trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) return NaN;
  return parseInt(s, 8);
}

function checksumOk(h: Uint8Array): boolean {
  const stored = numeric(h, 148, 8);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
  return sum === stored;
}

/** pax records: "<len> key=value\n" ... */
function parsePax(data: Uint8Array): Record<string, string> {
  const out: Record<string, string> = {};
  const s = Buffer.from(data.buffer, data.byteOffset, data.length).toString('utf8');
  let at = 0;
  while (at < s.length) {
    const sp = s.indexOf(' ', at);
    if (sp < 0) break;
    const len = Number(s.slice(at, sp));
    if (!Number.isInteger(len) || len <= 0) break;
    const rec = s.slice(sp + 1, at + len - 1);
    const eq = rec.indexOf('=');
    if (eq > 0) out[rec.slice(0, eq)] = rec.slice(eq + 1);
    at += len;
  }
  return out;
}

export function indexTar(path: string): TarIndex {
  const fd = openSync(path, 'r');
  try {
    const fileSize = fstatSync(fd).size;
    const members: TarMember[] = [];
    const h = new Uint8Array(BLOCK);
    let pos = 0;
    let longName: string | null = null;
    let pax: Record<string, string> = {};
    while (pos + BLOCK <= fileSize) {
      const got = readExact(fd, h, pos);
      if (got < BLOCK) return { members, warning: `truncated header at byte ${pos}` };
      if (h.every((x) => x === 0)) break; // end-of-archive marker
      if (!checksumOk(h)) {
        return { members, warning: `corrupt tar header at byte ${pos} (bad checksum); the rest of the shard is ignored` };
      }
      const type = String.fromCharCode(h[156] || 48); // '\0' means a regular file
      let size = numeric(h, 124, 12);
      if (!Number.isFinite(size)) return { members, warning: `corrupt size field at byte ${pos}; the rest of the shard is ignored` };
      if (pax.size !== undefined) size = Number(pax.size);
      const dataAt = pos + BLOCK;
      const next = dataAt + Math.ceil(size / BLOCK) * BLOCK;
      if (type === 'L' || type === 'x') {
        if (dataAt + size > fileSize) return { members, warning: `truncated ${type === 'L' ? 'long name' : 'pax header'} at byte ${pos}` };
        const buf = new Uint8Array(size);
        readExact(fd, buf, dataAt);
        if (type === 'L') longName = cstring(buf, 0, size);
        else pax = parsePax(buf);
        pos = next;
        continue;
      }
      if (type === '0' || type === '7') {
        let name = longName ?? cstring(h, 0, 100);
        const magic = cstring(h, 257, 6);
        if (!longName && magic.startsWith('ustar')) {
          const prefix = cstring(h, 345, 155);
          if (prefix) name = `${prefix}/${name}`;
        }
        if (pax.path !== undefined) name = pax.path;
        members.push({ name, offset: dataAt, size });
      }
      longName = null;
      pax = {};
      pos = next;
    }
    return { members };
  } finally {
    closeSync(fd);
  }
}

/** Reads `size` bytes at `offset` of an open file (a tar member's data). */
export function preadExact(fd: number, offset: number, size: number): Buffer {
  const buf = Buffer.allocUnsafe(size);
  const got = readExact(fd, buf, offset);
  if (got < size) throw new Error(`truncated: ${got} of ${size} bytes`);
  return buf;
}
