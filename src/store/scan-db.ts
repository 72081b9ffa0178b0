/**
 * The scan's run database, `RUN/run.db` (SQLite, WAL mode). Every batch of a scan is one
 * transaction, so a process killed at any moment loses at most the batch in flight and leaves
 * a consistent database. The schema is documented in docs/scan.md; in short:
 *
 *   meta(key, value)           JSON values: model, layers, embedding, top_k, image list hash,
 *                              shard, id ranges, status ('scanning' | 'complete'), ...
 *   modes(layer, head, mode, sigma, cosine, rel_gap)       the svd results of scanned layers
 *   vectors(layer, head, u, v)  float32 little-endian, mode-major [d_h, d]: row n is u_n / v_n
 *   images(id, path, source, container, member, name, bytes, sha256, width, height, status, reason)
 *   skipped                     view: images that could not be read, with the reason
 *   heap_state(layer, head, mode, sign, entries)           the authoritative top-k lists
 *   topk(layer, head, mode, sign, rank, image_id, image_path, score, qmax, kmax, q_token,
 *        k_token, q_mean, k_mean, q_top5, k_top5)          one row per entry (for SQL readers)
 *   anisotropy(layer, value, n, sums)                       METHOD.md §3 baseline
 *   progress(id = 1, total, done, skipped, batches, elapsed_s, updated)
 */
import Database from 'better-sqlite3';
import { UserError } from '../errors.js';
import { decodeEntries, type TopKLists } from '../analysis/topk.js';

export const SCAN_SCHEMA_VERSION = 1;

export const SCHEMA_SQL = `
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE modes (
  layer INTEGER NOT NULL, head INTEGER NOT NULL, mode INTEGER NOT NULL,
  sigma REAL NOT NULL, cosine REAL NOT NULL, rel_gap REAL NOT NULL,
  PRIMARY KEY (layer, head, mode)) WITHOUT ROWID;
CREATE TABLE vectors (
  layer INTEGER NOT NULL, head INTEGER NOT NULL, u BLOB NOT NULL, v BLOB NOT NULL,
  PRIMARY KEY (layer, head)) WITHOUT ROWID;
CREATE TABLE images (
  id INTEGER PRIMARY KEY, path TEXT NOT NULL, source TEXT NOT NULL, container TEXT NOT NULL,
  member TEXT, name TEXT, bytes INTEGER, sha256 TEXT, width INTEGER, height INTEGER,
  status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'skipped')), reason TEXT);
CREATE VIEW skipped AS SELECT id, path, reason FROM images WHERE status = 'skipped';
CREATE TABLE heap_state (
  layer INTEGER NOT NULL, head INTEGER NOT NULL, mode INTEGER NOT NULL, sign INTEGER NOT NULL,
  entries BLOB NOT NULL,
  PRIMARY KEY (layer, head, mode, sign)) WITHOUT ROWID;
CREATE TABLE topk (
  layer INTEGER NOT NULL, head INTEGER NOT NULL, mode INTEGER NOT NULL, sign INTEGER NOT NULL,
  rank INTEGER NOT NULL, image_id INTEGER NOT NULL, image_path TEXT NOT NULL,
  score REAL NOT NULL, qmax REAL NOT NULL, kmax REAL NOT NULL,
  q_token INTEGER NOT NULL, k_token INTEGER NOT NULL,
  q_mean REAL NOT NULL, k_mean REAL NOT NULL, q_top5 REAL NOT NULL, k_top5 REAL NOT NULL,
  PRIMARY KEY (layer, head, mode, sign, rank)) WITHOUT ROWID;
CREATE TABLE anisotropy (layer INTEGER PRIMARY KEY, value REAL, n INTEGER NOT NULL, sums BLOB NOT NULL);
CREATE TABLE progress (
  id INTEGER PRIMARY KEY CHECK (id = 1), total INTEGER NOT NULL, done INTEGER NOT NULL,
  skipped INTEGER NOT NULL, batches INTEGER NOT NULL, elapsed_s REAL NOT NULL, updated TEXT NOT NULL);
`;

/** Tables whose contents define a scan's result (equal for resumed, merged and single scans). */
export const CONTENT_TABLES = ['modes', 'vectors', 'images', 'heap_state', 'topk', 'anisotropy'] as const;

export interface ScanMeta {
  schema_version: number;
  tool_version: string;
  created: string;
  model: { id: string; input: string; options?: { revision?: string; part?: string; numHeads?: number }; family: string; layers: number; heads: number; width: number; head_dim: number };
  /** Scanned layers (0-based block indices). */
  layers: number[];
  embedding: 'ln' | 'residual';
  top_k: number;
  image_size: [number, number];
  patch_grid: [number, number];
  patch_start: number;
  /** Patch index (raster order) of the centre patch used for the anisotropy baseline. */
  centre_patch: number;
  preprocess: unknown;
  inputs: string[];
  image_count: number;
  image_list_sha256: string;
  shard: { index: number; count: number };
  /** Image ids this database covers: [start, end) ranges. */
  id_ranges: [number, number][];
  modes_sha256: string;
  weights_sha256: string;
  status: 'scanning' | 'complete';
  /** Projection route per scanned layer ('fast' | 'direct'); informational. */
  routes?: string[];
  merged_from?: string[];
}

/** Meta keys that must agree for resume and merge. */
export const IDENTITY_KEYS = ['layers', 'embedding', 'top_k', 'image_size', 'image_count', 'image_list_sha256', 'modes_sha256', 'weights_sha256'] as const;

export function openScanDb(path: string, opts: { readonly?: boolean; create?: boolean } = {}): Database.Database {
  let db: Database.Database;
  try {
    db = new Database(path, { readonly: !!opts.readonly, fileMustExist: !opts.create });
  } catch (e) {
    throw new UserError(`${path}: cannot open the run database (${(e as Error).message})`);
  }
  if (!opts.readonly) {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
  }
  db.pragma('busy_timeout = 10000');
  return db;
}

export function writeMeta(db: Database.Database, values: Partial<ScanMeta>): void {
  const st = db.prepare('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)');
  for (const [k, v] of Object.entries(values)) if (v !== undefined) st.run(k, JSON.stringify(v));
}

export function readMeta(db: Database.Database, path = 'run.db'): ScanMeta {
  let rows: { key: string; value: string }[];
  try {
    rows = db.prepare('SELECT key, value FROM meta').all() as { key: string; value: string }[];
  } catch {
    throw new UserError(`${path}: not a qkscope scan database (no meta table)`);
  }
  const m: Record<string, unknown> = {};
  for (const r of rows) m[r.key] = JSON.parse(r.value);
  if (m.schema_version === undefined) throw new UserError(`${path}: not a qkscope scan database (no schema_version)`);
  if (m.schema_version !== SCAN_SCHEMA_VERSION) {
    throw new UserError(`${path}: scan database schema version ${m.schema_version}; this qkscope reads version ${SCAN_SCHEMA_VERSION}`);
  }
  return m as unknown as ScanMeta;
}

/** Opens a finished or running scan's database read-only, with its meta. */
export function openScanRun(dbPath: string): { db: Database.Database; meta: ScanMeta } {
  const db = openScanDb(dbPath, { readonly: true });
  try {
    return { db, meta: readMeta(db, dbPath) };
  } catch (e) {
    db.close();
    throw e;
  }
}

/** Index of the top-k lists: ((layer slot · H + head) · d_h + mode) · 2 + (sign < 0). */
export class ListIndex {
  constructor(
    readonly layers: number[],
    readonly heads: number,
    readonly headDim: number,
  ) {}
  get size(): number {
    return this.layers.length * this.heads * this.headDim * 2;
  }
  slotOf(layer: number): number {
    const li = this.layers.indexOf(layer);
    if (li < 0) throw new UserError(`layer ${layer} was not scanned (scanned: ${this.layers.join(', ')})`);
    return li;
  }
  index(li: number, head: number, mode: number, sign: 1 | -1): number {
    return ((li * this.heads + head) * this.headDim + mode) * 2 + (sign < 0 ? 1 : 0);
  }
  key(i: number): { layer: number; head: number; mode: number; sign: 1 | -1 } {
    const s = i % 2;
    let r = (i - s) / 2;
    const mode = r % this.headDim;
    r = (r - mode) / this.headDim;
    const head = r % this.heads;
    const li = (r - head) / this.heads;
    return { layer: this.layers[li], head, mode, sign: s ? -1 : 1 };
  }
}

export function writeHeapState(db: Database.Database, lists: TopKLists, idx: ListIndex, which: Iterable<number>): void {
  const st = db.prepare('INSERT OR REPLACE INTO heap_state (layer, head, mode, sign, entries) VALUES (?, ?, ?, ?, ?)');
  for (const h of which) {
    const k = idx.key(h);
    st.run(k.layer, k.head, k.mode, k.sign, lists.encode(h));
  }
}

/** Rewrites the `topk` rows of the given lists from memory. */
export function writeTopkRows(db: Database.Database, lists: TopKLists, idx: ListIndex, which: Iterable<number>): void {
  const del = db.prepare('DELETE FROM topk WHERE layer = ? AND head = ? AND mode = ? AND sign = ?');
  const ins = db.prepare(
    `INSERT INTO topk (layer, head, mode, sign, rank, image_id, image_path, score, qmax, kmax, q_token, k_token, q_mean, k_mean, q_top5, k_top5)
     VALUES (?, ?, ?, ?, ?, ?, (SELECT path FROM images WHERE id = ?), ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  for (const h of which) {
    const k = idx.key(h);
    del.run(k.layer, k.head, k.mode, k.sign);
    lists.entries(h).forEach((e, rank) => {
      ins.run(k.layer, k.head, k.mode, k.sign, rank, e.id, e.id, e.score, e.qmax, e.kmax, e.qToken, e.kToken, e.qMean, e.kMean, e.qTop5, e.kTop5);
    });
  }
}

/** Loads every stored list into `lists` (resume). */
export function loadHeapState(db: Database.Database, lists: TopKLists, idx: ListIndex): void {
  const rows = db.prepare('SELECT layer, head, mode, sign, entries FROM heap_state').iterate() as IterableIterator<{ layer: number; head: number; mode: number; sign: number; entries: Buffer }>;
  for (const r of rows) {
    const li = idx.layers.indexOf(r.layer);
    if (li < 0) continue;
    lists.load(idx.index(li, r.head, r.mode, r.sign < 0 ? -1 : 1), r.entries);
  }
}

export { decodeEntries };
