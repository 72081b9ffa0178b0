/**
 * Images stored in Parquet files, as Hugging Face `datasets` writes them: an image column that
 * is a struct `{bytes: binary, path: string}` (the `Image` feature), or a plain binary column.
 * Rows are read one row group at a time (hyparquet fetches whole column chunks) and the last
 * two groups are kept, so a scan reading rows in order decodes each group once.
 */
import { asyncBufferFromFile, parquetMetadataAsync, parquetRead, parquetSchema } from 'hyparquet';
import type { AsyncBuffer, FileMetaData, SchemaTree } from 'hyparquet';
import { UserError } from '../errors.js';

export interface ParquetImageColumn {
  name: string;
  /** 'struct': {bytes, path} (HF Image feature); 'binary': raw encoded image bytes. */
  kind: 'struct' | 'binary';
}

export interface ParquetInfo {
  rows: number;
  column: ParquetImageColumn;
  /** Row count of each row group, in order. */
  groups: number[];
}

const PREFERRED = ['image', 'img', 'jpg', 'jpeg', 'png', 'webp', 'images', 'picture'];

function describeType(t: SchemaTree): string {
  const e = t.element;
  if (t.children.length) return `struct<${t.children.map((c) => c.element.name).join(', ')}>`;
  const lt = e.logical_type?.type ?? e.converted_type;
  return (lt ? String(lt) : String(e.type ?? '?')).toLowerCase();
}

function isRawBinary(t: SchemaTree): boolean {
  const e = t.element;
  return t.children.length === 0 && e.type === 'BYTE_ARRAY' && e.converted_type !== 'UTF8' && e.logical_type?.type !== 'STRING' && e.converted_type !== 'JSON';
}

/** Finds the image column (or checks the one asked for). Throws a UserError naming the columns. */
export function findImageColumn(path: string, metadata: FileMetaData, wanted?: string): ParquetImageColumn {
  const root = parquetSchema(metadata);
  const cols = root.children;
  const classify = (c: SchemaTree): ParquetImageColumn | null => {
    if (c.children.some((k) => k.element.name === 'bytes' && isRawBinary(k))) return { name: c.element.name, kind: 'struct' };
    if (isRawBinary(c)) return { name: c.element.name, kind: 'binary' };
    return null;
  };
  const listing = cols.map((c) => `${c.element.name} (${describeType(c)})`).join(', ');
  if (wanted !== undefined) {
    const c = cols.find((x) => x.element.name === wanted);
    if (!c) throw new UserError(`${path}: no column '${wanted}' (--image-column); columns: ${listing}`);
    const k = classify(c);
    if (!k) throw new UserError(`${path}: column '${wanted}' (${describeType(c)}) does not hold image bytes; expected binary or struct {bytes, path}`);
    return k;
  }
  const found = cols.map(classify).filter((x): x is ParquetImageColumn => x !== null);
  if (found.length === 0) {
    throw new UserError(`${path}: no image column (expected a binary column or a struct {bytes, path} as Hugging Face datasets write images); columns: ${listing || 'none'}`);
  }
  if (found.length === 1) return found[0];
  for (const name of PREFERRED) {
    const hit = found.find((f) => f.name.toLowerCase() === name);
    if (hit) return hit;
  }
  const structs = found.filter((f) => f.kind === 'struct');
  if (structs.length === 1) return structs[0];
  throw new UserError(`${path}: several columns could hold images (${found.map((f) => f.name).join(', ')}); choose one with --image-column NAME`);
}

export async function openParquet(path: string, wanted?: string): Promise<{ info: ParquetInfo; file: AsyncBuffer; metadata: FileMetaData }> {
  let file: AsyncBuffer;
  let metadata: FileMetaData;
  try {
    file = await asyncBufferFromFile(path);
    metadata = await parquetMetadataAsync(file);
  } catch (e) {
    throw new UserError(`${path}: not a readable Parquet file (${(e as Error).message.split('\n')[0]})`);
  }
  const column = findImageColumn(path, metadata, wanted);
  const groups = metadata.row_groups.map((g) => Number(g.num_rows));
  return { info: { rows: Number(metadata.num_rows), column, groups }, file, metadata };
}

export interface ParquetImage {
  bytes: Uint8Array | null;
  /** The original file name stored beside the bytes (HF `path`), if any. */
  name: string | null;
}

/** Reads image rows of one Parquet file, caching the last row group. */
export class ParquetImages {
  /** The last two row groups read (promises, so concurrent reads of one group decode it once). */
  private cache = new Map<number, Promise<ParquetImage[]>>();
  private starts: number[] = [];
  private constructor(
    readonly path: string,
    readonly info: ParquetInfo,
    private readonly file: AsyncBuffer,
    private readonly metadata: FileMetaData,
  ) {
    let s = 0;
    for (const n of info.groups) {
      this.starts.push(s);
      s += n;
    }
  }

  static async open(path: string, wanted?: string): Promise<ParquetImages> {
    const { info, file, metadata } = await openParquet(path, wanted);
    return new ParquetImages(path, info, file, metadata);
  }

  private groupOf(row: number): number {
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid] <= row) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  async read(row: number): Promise<ParquetImage> {
    if (!Number.isInteger(row) || row < 0 || row >= this.info.rows) throw new Error(`row ${row} out of range (0..${this.info.rows - 1})`);
    const g = this.groupOf(row);
    let pending = this.cache.get(g);
    if (!pending) {
      pending = this.readGroup(g);
      this.cache.set(g, pending);
      if (this.cache.size > 2) this.cache.delete(this.cache.keys().next().value!);
    }
    const rows = await pending;
    const r = rows[row - this.starts[g]];
    if (!r) throw new Error(`row ${row} missing from row group ${g}`);
    return r;
  }

  private async readGroup(g: number): Promise<ParquetImage[]> {
    const start = this.starts[g];
    const end = start + this.info.groups[g];
    const col = this.info.column;
    let rows: Record<string, unknown>[] = [];
    await parquetRead({
      file: this.file,
      metadata: this.metadata,
      columns: [col.name],
      rowStart: start,
      rowEnd: end,
      utf8: false,
      rowFormat: 'object',
      onComplete: (r: Record<string, unknown>[]) => {
        rows = r;
      },
    });
    const text = (v: unknown): string | null => (typeof v === 'string' ? v : v instanceof Uint8Array ? Buffer.from(v).toString('utf8') : null);
    return rows.map((r) => {
      const v = r[col.name];
      if (col.kind === 'binary') return { bytes: v instanceof Uint8Array ? v : null, name: null };
      const o = v as { bytes?: unknown; path?: unknown } | null | undefined;
      return { bytes: o && o.bytes instanceof Uint8Array ? o.bytes : null, name: o ? text(o.path) : null };
    });
  }
}
