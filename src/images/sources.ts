/**
 * What `scan` reads: the list of images behind its `<images>` arguments, each with a stable
 * id, and a reader for their bytes.
 *
 * An argument is
 *   - a folder: walked recursively, depth first, the entries of every folder sorted by name
 *     (JavaScript string order); image files (.jpg .jpeg .png .webp and the other extensions
 *     `embed` reads), webdataset `.tar` shards and `.parquet` files are taken, hidden entries
 *     (names starting with '.') and everything else are ignored (and counted);
 *   - an image file;
 *   - a webdataset `.tar` shard: every member with an image extension, in archive order;
 *   - a `.parquet` file (Hugging Face datasets layout): one image per row, in row order;
 *   - a text file listing paths (one per line, relative to the list's folder; blank lines and
 *     lines starting with '#' skipped), each an image, a .tar or a .parquet file.
 * Arguments may use webdataset brace ranges: `shards/train-{000..099}.tar`, `{a,b}`.
 *
 * The image list is the concatenation, in argument order; an image's **id** is its 0-based
 * position in it. Every shard of a sharded scan enumerates the same full list, so ids agree
 * across shards and merged results equal a single scan.
 */
import { closeSync, openSync, readSync, readdirSync, realpathSync, statSync, type Stats } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, extname, join, resolve } from 'node:path';
import { createHash } from 'node:crypto';
import { UserError } from '../errors.js';
import { indexTar, preadExact } from './tar.js';
import { ParquetImages, openParquet } from './parquet.js';

export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.webp', '.tif', '.tiff', '.gif', '.avif', '.bmp'];

/** An image argument's stat, or a one-line error naming it. */
export function statInput(p: string): Stats {
  try {
    return statSync(p);
  } catch (e) {
    throw new UserError(`${p}: cannot open (${(e as NodeJS.ErrnoException).code ?? e}); check the path`);
  }
}

/** The image files directly in a folder, sorted by name. */
export function imagesIn(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => IMAGE_EXTENSIONS.includes(extname(f).toLowerCase()))
    .sort()
    .map((f) => join(dir, f));
}

/** Expands directories (sorted, image extensions only, not recursive); files are kept as given. */
export function expandImagePaths(inputs: string[]): string[] {
  const out: string[] = [];
  for (const p of inputs) {
    if (statInput(p).isDirectory()) {
      const files = imagesIn(p);
      if (files.length === 0) throw new UserError(`${p}: no images (${IMAGE_EXTENSIONS.join(', ')}) in this folder`);
      out.push(...files);
    } else out.push(p);
  }
  return out;
}

/** A listing of plain image files, in the order given (embed, anisotropy, ...). */
export function fileListing(paths: string[]): ImageListing {
  const entries: ImageEntry[] = paths.map((p) => ({ locator: p, kind: 'file', container: p, member: null }));
  const h = createHash('sha256');
  entries.forEach((e, i) => h.update(`${i}\t${e.locator}\n`));
  return { entries, ignored: 0, warnings: [], hash: h.digest('hex') };
}

export type SourceKind = 'file' | 'tar' | 'parquet';

export interface ImageEntry {
  /** Absolute path for files; `<tar>#<member>` and `<parquet>#<row>` otherwise. */
  locator: string;
  kind: SourceKind;
  /** The file holding the bytes (absolute). */
  container: string;
  /** Tar member name, or the Parquet row index as text; null for plain files. */
  member: string | null;
}

export interface ImageListing {
  entries: ImageEntry[];
  /** Files met in folders that are neither images, shards nor Parquet files. */
  ignored: number;
  warnings: string[];
  /** sha256 over `id\tlocator\n` lines: the identity of the list (resume, merge). */
  hash: string;
}

export interface ListOptions {
  /** Parquet image column (default: detected). */
  imageColumn?: string;
}

const TAR_EXT = ['.tar'];
const COMPRESSED_TAR = /\.(tar\.gz|tgz|tar\.bz2|tar\.xz|tar\.zst)$/i;
const PARQUET_EXT = ['.parquet'];

export function isImageName(name: string): boolean {
  return IMAGE_EXTENSIONS.includes(extname(name).toLowerCase());
}

/** Expands webdataset-style braces: `a-{000..003}.tar`, `{x,y}` (nested and repeated groups). */
export function expandBraces(s: string): string[] {
  const open = s.indexOf('{');
  if (open < 0) return [s];
  let depth = 0;
  let close = -1;
  for (let i = open; i < s.length; i++) {
    if (s[i] === '{') depth++;
    else if (s[i] === '}' && --depth === 0) {
      close = i;
      break;
    }
  }
  if (close < 0) return [s];
  const head = s.slice(0, open);
  const body = s.slice(open + 1, close);
  const tails = expandBraces(s.slice(close + 1));
  let alts: string[];
  const range = /^(-?\d+)\.\.(-?\d+)$/.exec(body);
  if (range) {
    const [a, b] = [Number(range[1]), Number(range[2])];
    const width = range[1].length === range[2].length && /^0\d/.test(range[1]) ? range[1].length : 0;
    const step = a <= b ? 1 : -1;
    alts = [];
    for (let i = a; step > 0 ? i <= b : i >= b; i += step) alts.push(width ? String(i).padStart(width, '0') : String(i));
  } else {
    // split on top-level commas
    alts = [];
    let d = 0;
    let start = 0;
    for (let i = 0; i < body.length; i++) {
      if (body[i] === '{') d++;
      else if (body[i] === '}') d--;
      else if (body[i] === ',' && d === 0) {
        alts.push(body.slice(start, i));
        start = i + 1;
      }
    }
    alts.push(body.slice(start));
    if (alts.length === 1) return tails.map((t) => `${head}{${body}}${t}`);
    alts = alts.flatMap(expandBraces);
  }
  const out: string[] = [];
  for (const a of alts) for (const t of tails) out.push(head + a + t);
  return out;
}

function looksLikeText(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(4096);
    const n = readSync(fd, b, 0, b.length, 0);
    for (let i = 0; i < n; i++) if (b[i] === 0) return false;
    return true;
  } finally {
    closeSync(fd);
  }
}

function statOrThrow(p: string, what: string) {
  try {
    return statSync(p);
  } catch (e) {
    throw new UserError(`${what}: no such file or folder (${(e as NodeJS.ErrnoException).code ?? e}); check the path`);
  }
}

/** Enumerates the images behind the arguments (see the module comment). */
export async function listImages(inputs: string[], opts: ListOptions = {}): Promise<ImageListing> {
  const entries: ImageEntry[] = [];
  const warnings: string[] = [];
  let ignored = 0;

  const addTar = (abs: string) => {
    const idx = indexTar(abs);
    if (idx.warning) warnings.push(`${abs}: ${idx.warning}`);
    let n = 0;
    for (const m of idx.members) {
      if (!isImageName(m.name)) continue;
      entries.push({ locator: `${abs}#${m.name}`, kind: 'tar', container: abs, member: m.name });
      n++;
    }
    if (n === 0) warnings.push(`${abs}: no image members (${idx.members.length} members, none with an image extension)`);
  };
  const addParquet = async (abs: string) => {
    const { info } = await openParquet(abs, opts.imageColumn);
    for (let r = 0; r < info.rows; r++) entries.push({ locator: `${abs}#${r}`, kind: 'parquet', container: abs, member: String(r) });
    if (info.rows === 0) warnings.push(`${abs}: no rows`);
  };
  const addFile = async (abs: string, fromList: boolean): Promise<boolean> => {
    const lower = abs.toLowerCase();
    if (COMPRESSED_TAR.test(lower)) throw new UserError(`${abs}: compressed tar shards cannot be read at random; decompress them first (e.g. gunzip)`);
    const ext = extname(lower);
    if (TAR_EXT.includes(ext)) addTar(abs);
    else if (PARQUET_EXT.includes(ext)) await addParquet(abs);
    else if (isImageName(abs) || fromList) entries.push({ locator: abs, kind: 'file', container: abs, member: null });
    else return false;
    return true;
  };
  const walk = async (dir: string, seen: Set<string>) => {
    const real = realpathSync(dir);
    if (seen.has(real)) return; // symlink loop
    seen.add(real);
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch (e) {
      warnings.push(`${dir}: cannot list (${(e as NodeJS.ErrnoException).code ?? e})`);
      return;
    }
    names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const name of names) {
      if (name.startsWith('.')) {
        ignored++;
        continue;
      }
      const p = join(dir, name);
      let st;
      try {
        st = statSync(p);
      } catch {
        ignored++; // dangling link
        continue;
      }
      if (st.isDirectory()) await walk(p, seen);
      else if (st.isFile()) {
        if (COMPRESSED_TAR.test(name)) {
          warnings.push(`${p}: compressed tar shard ignored (decompress it to scan it)`);
          ignored++;
        } else if (!(await addFile(p, false))) ignored++;
      } else ignored++;
    }
    seen.delete(real);
  };

  for (const arg of inputs) {
    for (const one of expandBraces(arg)) {
      const abs = resolve(one);
      const st = statOrThrow(abs, one);
      if (st.isDirectory()) {
        const before = entries.length;
        const ignoredBefore = ignored;
        await walk(abs, new Set());
        if (entries.length === before) {
          const other = ignored - ignoredBefore;
          throw new UserError(
            `${one}: no images found (looked recursively for ${IMAGE_EXTENSIONS.join(' ')} files, .tar shards and .parquet files)` +
              (other ? `; ${other} other file${other === 1 ? '' : 's'} ignored` : '; the folder is empty'),
          );
        }
      } else if (!(await addFile(abs, false))) {
        if (!looksLikeText(abs)) {
          throw new UserError(`${one}: not an image (${IMAGE_EXTENSIONS.join(' ')}), a .tar shard, a .parquet file or a text file listing paths`);
        }
        const text = await readFile(abs, 'utf8');
        const base = dirname(abs);
        let n = 0;
        for (const raw of text.split(/\r?\n/)) {
          const line = raw.trim();
          if (!line || line.startsWith('#')) continue;
          const p = resolve(base, line);
          const ext = extname(p).toLowerCase();
          if (TAR_EXT.includes(ext) || PARQUET_EXT.includes(ext) || COMPRESSED_TAR.test(p)) {
            statOrThrow(p, `${one}: listed path ${line}`);
            await addFile(p, true);
          } else {
            let dir = false;
            try {
              dir = statSync(p).isDirectory();
            } catch {
              // A missing image is listed anyway: the scan skips it with the reason.
            }
            if (dir) throw new UserError(`${one}: listed path ${line} is a folder; list image files (or pass the folder itself)`);
            entries.push({ locator: p, kind: 'file', container: p, member: null });
          }
          n++;
        }
        if (n === 0) throw new UserError(`${one}: the list is empty (one image path per line expected)`);
      }
    }
  }
  if (entries.length === 0) throw new UserError(`no images found in ${inputs.join(' ')}`);
  const h = createHash('sha256');
  entries.forEach((e, i) => h.update(`${i}\t${e.locator}\n`));
  return { entries, ignored, warnings, hash: h.digest('hex') };
}

export interface ImageBytes {
  bytes: Uint8Array;
  /** The original file name where the container keeps one (Parquet `path`), else null. */
  name: string | null;
}

/** Reads the bytes of images from files, tar shards and Parquet files (handles kept open). */
export class ImageReader {
  private tarFds = new Map<string, { fd: number; members: Map<string, { offset: number; size: number }> }>();
  private parquet = new Map<string, Promise<ParquetImages>>();
  constructor(private readonly opts: ListOptions = {}) {}

  async read(e: Pick<ImageEntry, 'kind' | 'container' | 'member'>): Promise<ImageBytes> {
    if (e.kind === 'file') return { bytes: await readFile(e.container), name: null };
    if (e.kind === 'tar') {
      let t = this.tarFds.get(e.container);
      if (!t) {
        const idx = indexTar(e.container);
        // A handful of shards are open at a time (scans read shards in order).
        if (this.tarFds.size >= 8) {
          const [k, v] = this.tarFds.entries().next().value!;
          closeSync(v.fd);
          this.tarFds.delete(k);
        }
        t = { fd: openSync(e.container, 'r'), members: new Map(idx.members.map((m) => [m.name, m])) };
        this.tarFds.set(e.container, t);
      }
      const m = t.members.get(e.member ?? '');
      if (!m) throw new Error(`no member ${e.member} in the shard`);
      return { bytes: preadExact(t.fd, m.offset, m.size), name: null };
    }
    let p = this.parquet.get(e.container);
    if (!p) {
      p = ParquetImages.open(e.container, this.opts.imageColumn);
      if (this.parquet.size >= 2) this.parquet.delete(this.parquet.keys().next().value!);
      this.parquet.set(e.container, p);
    }
    const img = await (await p).read(Number(e.member));
    if (!img.bytes) throw new Error('the image cell is empty (null)');
    return { bytes: img.bytes, name: img.name };
  }

  close(): void {
    for (const t of this.tarFds.values()) closeSync(t.fd);
    this.tarFds.clear();
    this.parquet.clear();
  }
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
