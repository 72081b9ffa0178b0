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
 *   anisotropy(layer, value, n, sums)                       docs/method.md §3 baseline
 *   progress(id = 1, total, done, skipped, batches, elapsed_s, updated)
 */
import Database from 'better-sqlite3';
import { existsSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { UserError } from '../errors.js';
import { fsErrorMessage } from '../io/fs.js';
import { ENTRY_BYTES, decodeEntries, type TopKLists } from '../analysis/topk.js';
import type { CentreSums } from '../analysis/anisotropy.js';

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

export function openScanDb(path: string, opts: { readonly?: boolean; create?: boolean; journal?: 'wal' | 'delete' } = {}): Database.Database {
  let db: Database.Database;
  try {
    db = new Database(path, { readonly: !!opts.readonly, fileMustExist: !opts.create });
  } catch (e) {
    throw new UserError(fsErrorMessage(e, path) ?? `${path}: cannot open the run database (${(e as Error).message})`);
  }
  if (!opts.readonly) {
    db.pragma(opts.journal === 'delete' ? 'journal_mode = DELETE' : 'journal_mode = WAL');
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
// ---------------------------------------------------------------------------------------------
// The scan's store: creation (atomic), resume (verified), one transaction per batch.
// ---------------------------------------------------------------------------------------------

export const DB_NAME = 'run.db';

/** SQLite errors a user can act on, as one line (disk full, read-only, corrupt). */
export function sqliteErrorMessage(e: unknown, path: string): string | null {
  const code = (e as { code?: string } | null)?.code ?? '';
  if (code === 'SQLITE_FULL') return `${path}: the disk is full (SQLITE_FULL); free some space, then continue with --resume (nothing committed was lost)`;
  if (code === 'SQLITE_READONLY' || code.startsWith('SQLITE_READONLY')) return `${path}: the database is read-only (${code}); check the permissions of the run directory`;
  if (code === 'SQLITE_CANTOPEN') return `${path}: cannot open the database file (${code}); check the path and its permissions`;
  if (code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB') return `${path}: the run database is damaged (${code}); start the scan again in another --out`;
  if (code.startsWith('SQLITE_IOERR')) return `${path}: input/output error while writing the database (${code}); check the disk (is it full?), then continue with --resume`;
  return fsErrorMessage(e, path);
}

function guardSql<T>(path: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    const msg = sqliteErrorMessage(e, path);
    if (msg) throw new UserError(msg);
    throw e;
  }
}

export interface ScanInit {
  meta: Omit<ScanMeta, 'modes_sha256'>;
  /** Per scanned (layer, head): σ, cosine, rel. gap per mode, and the float32 mode-major vectors. */
  heads: { layer: number; head: number; sigma: ArrayLike<number>; cosine: ArrayLike<number>; relGap: ArrayLike<number>; u: Float32Array; v: Float32Array }[];
  /** The images of this shard, with their global ids. */
  images: { id: number; locator: string; kind: string; container: string; member: string | null }[];
}

export interface DoneImage {
  id: number;
  bytes: number | null;
  sha256: string | null;
  width: number | null;
  height: number | null;
  name: string | null;
}

export interface SkippedRow {
  id: number;
  bytes: number | null;
  sha256: string | null;
  name: string | null;
  reason: string;
}

export interface BatchCommit {
  done: DoneImage[];
  skipped: SkippedRow[];
  lists: TopKLists;
  index: ListIndex;
  centre: CentreSums;
  /** Rewrite the `topk` rows of lists changed since the last sync. */
  syncTopk: boolean;
  elapsedSeconds: number;
}

export interface ScanProgressRow {
  total: number;
  done: number;
  skipped: number;
  batches: number;
  elapsed_s: number;
}

export class ScanStore {
  private readonly st: {
    updImg: Database.Statement;
    updAn: Database.Statement;
    updProg: Database.Statement;
  };

  private constructor(
    readonly dir: string,
    readonly path: string,
    readonly db: Database.Database,
    readonly meta: ScanMeta,
  ) {
    this.st = {
      updImg: db.prepare('UPDATE images SET bytes = ?, sha256 = ?, width = ?, height = ?, name = ?, status = ?, reason = ? WHERE id = ?'),
      updAn: db.prepare('UPDATE anisotropy SET value = ?, n = ?, sums = ? WHERE layer = ?'),
      updProg: db.prepare('UPDATE progress SET done = ?, skipped = ?, batches = ?, elapsed_s = ?, updated = ? WHERE id = 1'),
    };
  }

  static pathIn(dir: string): string {
    return join(dir, DB_NAME);
  }

  static exists(dir: string): boolean {
    return existsSync(ScanStore.pathIn(dir));
  }

  /**
   * Creates `dir/run.db` atomically: it is built as `run.db.partial` (rollback journal, one
   * transaction), closed, and renamed; any failure (disk full) removes the partial files, so
   * there is either no database or a complete one. The caller holds the directory's lock.
   */
  static create(dir: string, init: ScanInit, d: number): ScanStore {
    buildAtomically(dir, (db) => {
      db.transaction(() => {
        const vec = db.prepare('INSERT INTO vectors (layer, head, u, v) VALUES (?, ?, ?, ?)');
        const mode = db.prepare('INSERT INTO modes (layer, head, mode, sigma, cosine, rel_gap) VALUES (?, ?, ?, ?, ?, ?)');
        for (const h of init.heads) {
          vec.run(h.layer, h.head, f32Blob(h.u), f32Blob(h.v));
          for (let n = 0; n < h.sigma.length; n++) mode.run(h.layer, h.head, n, h.sigma[n], h.cosine[n], h.relGap[n]);
        }
        const img = db.prepare('INSERT INTO images (id, path, source, container, member) VALUES (?, ?, ?, ?, ?)');
        for (const e of init.images) img.run(e.id, e.locator, e.kind, e.container, e.member);
        const an = db.prepare('INSERT INTO anisotropy (layer, value, n, sums) VALUES (?, NULL, 0, ?)');
        for (const l of init.meta.layers) an.run(l, Buffer.alloc(d * 8));
        db.prepare('INSERT INTO progress (id, total, done, skipped, batches, elapsed_s, updated) VALUES (1, ?, 0, 0, 0, 0, ?)').run(init.images.length, new Date().toISOString());
        writeMeta(db, { ...init.meta, modes_sha256: '' });
        writeMeta(db, { modes_sha256: vectorsHash(db) });
      })();
    });
    return ScanStore.open(dir);
  }

  /** Opens an existing run.db for writing (after `verify` on resume). */
  static open(dir: string): ScanStore {
    const path = ScanStore.pathIn(dir);
    const db = guardSql(path, () => openScanDb(path));
    try {
      return new ScanStore(dir, path, db, readMeta(db, path));
    } catch (e) {
      db.close();
      throw e;
    }
  }

  /**
   * What is wrong with the database, or [] when it is sound: SQLite's own check, the schema
   * version, and that images, progress, the top-k lists and the anisotropy sums agree.
   */
  verify(topK: number, d: number): string[] {
    const db = this.db;
    const problems: string[] = [];
    const q = <T>(sql: string, ...args: unknown[]) => db.prepare(sql).get(...args) as T;
    try {
      const rows = db.pragma('quick_check') as { quick_check: string }[];
      const bad = rows.map((r) => r.quick_check).filter((x) => x !== 'ok');
      if (bad.length) return [`SQLite integrity check failed: ${bad.slice(0, 3).join('; ')}`];
    } catch (e) {
      return [`SQLite integrity check failed: ${(e as Error).message}`];
    }
    const prog = q<ScanProgressRow | undefined>('SELECT total, done, skipped, batches, elapsed_s FROM progress WHERE id = 1');
    if (!prog) return ['the progress row is missing'];
    const counts = q<{ n: number; done: number; skipped: number; pending: number; noreason: number }>(
      "SELECT COUNT(*) AS n, SUM(status = 'done') AS done, SUM(status = 'skipped') AS skipped, SUM(status = 'pending') AS pending, SUM(status = 'skipped' AND (reason IS NULL OR reason = '')) AS noreason FROM images",
    );
    const range = this.meta.id_ranges.reduce((a, [s, e]) => a + (e - s), 0);
    if (counts.n !== prog.total || counts.n !== range) problems.push(`${counts.n} image rows, but the progress row says ${prog.total} and the shard covers ${range} ids`);
    if ((counts.done ?? 0) !== prog.done) problems.push(`${counts.done ?? 0} images marked done, but the progress row says ${prog.done}`);
    if ((counts.skipped ?? 0) !== prog.skipped) problems.push(`${counts.skipped ?? 0} images marked skipped, but the progress row says ${prog.skipped}`);
    if (counts.noreason) problems.push(`${counts.noreason} skipped image(s) without a reason`);
    if (this.meta.status === 'complete' && counts.pending) problems.push(`marked complete with ${counts.pending} images pending`);
    const idx = new ListIndex(this.meta.layers, this.meta.model.heads, this.meta.model.head_dim);
    const nv = q<{ n: number }>('SELECT COUNT(*) AS n FROM vectors').n;
    if (nv !== this.meta.layers.length * this.meta.model.heads) problems.push(`${nv} head vector rows, expected ${this.meta.layers.length * this.meta.model.heads}`);
    const doneIds = new Set((db.prepare("SELECT id FROM images WHERE status = 'done'").all() as { id: number }[]).map((r) => r.id));
    let lists = 0;
    let badLists = 0;
    let strangers = 0;
    let unordered = 0;
    for (const r of db.prepare('SELECT layer, head, mode, sign, entries FROM heap_state').iterate() as IterableIterator<{ layer: number; head: number; mode: number; sign: number; entries: Buffer | null }>) {
      lists++;
      if (!r.entries || r.entries.length % ENTRY_BYTES !== 0 || r.entries.length / ENTRY_BYTES > topK || !this.meta.layers.includes(r.layer)) {
        badLists++;
        continue;
      }
      const es = decodeEntries(r.entries);
      for (let i = 0; i < es.length; i++) {
        if (!doneIds.has(es[i].id)) strangers++;
        if (!Number.isFinite(es[i].score) || (i > 0 && es[i].score > es[i - 1].score)) unordered++;
      }
    }
    if (lists > idx.size) problems.push(`${lists} top-k lists, at most ${idx.size} possible`);
    if (badLists) problems.push(`${badLists} top-k list(s) empty, malformed or longer than --top ${topK}`);
    if (strangers) problems.push(`${strangers} top-k entries name images that are not marked done`);
    if (unordered) problems.push(`${unordered} top-k entries are out of order or not finite`);
    if (this.meta.modes_sha256 && vectorsHash(db) !== this.meta.modes_sha256) problems.push('the stored mode vectors do not match their checksum');
    for (const a of db.prepare('SELECT layer, n, sums FROM anisotropy').all() as { layer: number; n: number; sums: Buffer | null }[]) {
      if (!a.sums || a.sums.length !== d * 8) problems.push(`anisotropy sums of layer ${a.layer} are malformed`);
      else if (a.n > prog.done) problems.push(`anisotropy of layer ${a.layer} counts ${a.n} images, but only ${prog.done} are done`);
    }
    return problems;
  }

  progress(): ScanProgressRow {
    return this.db.prepare('SELECT total, done, skipped, batches, elapsed_s FROM progress WHERE id = 1').get() as ScanProgressRow;
  }

  pendingIds(): number[] {
    return (this.db.prepare("SELECT id FROM images WHERE status = 'pending' ORDER BY id").all() as { id: number }[]).map((r) => r.id);
  }

  /** The head vectors as stored (float32, mode-major). */
  vectors(): Map<string, { u: Float32Array; v: Float32Array }> {
    const m = new Map<string, { u: Float32Array; v: Float32Array }>();
    for (const r of this.db.prepare('SELECT layer, head, u, v FROM vectors').iterate() as IterableIterator<{ layer: number; head: number; u: Buffer; v: Buffer }>) {
      m.set(`${r.layer}/${r.head}`, { u: blobF32(r.u), v: blobF32(r.v) });
    }
    return m;
  }

  loadLists(lists: TopKLists, index: ListIndex): void {
    loadHeapState(this.db, lists, index);
  }

  loadCentre(centre: CentreSums, layers: number[]): void {
    for (const r of this.db.prepare('SELECT layer, n, sums FROM anisotropy').all() as { layer: number; n: number; sums: Buffer }[]) {
      const li = layers.indexOf(r.layer);
      if (li >= 0) centre.load(li, r.n, r.sums);
    }
  }

  setMeta(values: Partial<ScanMeta>): void {
    guardSql(this.path, () => writeMeta(this.db, values));
  }

  /** One batch, one transaction: image rows, changed lists, anisotropy sums, progress. */
  commit(b: BatchCommit): void {
    guardSql(this.path, () =>
      this.db.transaction(() => {
        const prog = this.progress();
        let done = prog.done;
        let skipped = prog.skipped;
        for (const img of b.done) {
          this.st.updImg.run(img.bytes, img.sha256, img.width, img.height, img.name, 'done', null, img.id);
          done++;
        }
        for (const s of b.skipped) {
          this.st.updImg.run(s.bytes, s.sha256, null, null, s.name, 'skipped', s.reason || 'unknown reason', s.id);
          skipped++;
        }
        writeHeapState(this.db, b.lists, b.index, b.lists.takeDirty(0));
        b.centre.flush();
        this.meta.layers.forEach((l, li) => this.st.updAn.run(b.centre.value(li), b.centre.n[li], b.centre.blob(li), l));
        if (b.syncTopk) writeTopkRows(this.db, b.lists, b.index, b.lists.takeDirty(1));
        this.st.updProg.run(done, skipped, prog.batches + 1, b.elapsedSeconds, new Date().toISOString());
      })(),
    );
  }

  /** Last rows, and the status once no image is pending; WAL folded into the database file. */
  finish(lists: TopKLists, index: ListIndex): { complete: boolean } {
    return guardSql(this.path, () => {
      const left = (this.db.prepare("SELECT COUNT(*) AS c FROM images WHERE status = 'pending'").get() as { c: number }).c;
      const complete = left === 0;
      this.db.transaction(() => {
        writeTopkRows(this.db, lists, index, lists.takeDirty(1));
        if (complete) writeMeta(this.db, { status: 'complete' });
      })();
      if (complete) this.meta.status = 'complete';
      this.db.pragma('wal_checkpoint(TRUNCATE)');
      return { complete };
    });
  }

  /** What summary.json's scan section is made of. */
  state(): { meta: ScanMeta; anisotropy: { layer: number; value: number | null; n: number }[]; progress: ScanProgressRow } {
    return { meta: this.meta, anisotropy: this.db.prepare('SELECT layer, value, n FROM anisotropy ORDER BY layer').all() as { layer: number; value: number | null; n: number }[], progress: this.progress() };
  }

  skippedRows(limit: number): { id: number; path: string; reason: string }[] {
    return this.db.prepare("SELECT id, path, reason FROM images WHERE status = 'skipped' ORDER BY id LIMIT ?").all(limit) as { id: number; path: string; reason: string }[];
  }

  close(): void {
    this.db.close();
  }
}

export interface MergedScan {
  meta: ScanMeta;
  /** run.db paths of the inputs: modes and vectors are copied from the first, images from all. */
  sources: string[];
  lists: TopKLists;
  index: ListIndex;
  anisotropy: { layer: number; value: number | null; n: number; sums: BigInt64Array }[];
  progress: { total: number; done: number; skipped: number; elapsed_s: number };
}

/**
 * Writes `dir/run.db` of a merge atomically (built as run.db.partial, renamed when complete; a
 * failure, e.g. a full disk, leaves nothing). The caller holds the directory's lock.
 */
export function createMergedScan(dir: string, m: MergedScan): void {
  buildAtomically(dir, (db) => {
    db.transaction(() => writeMeta(db, m.meta))();
    const attach = (path: string, body: () => void) => {
      db.prepare('ATTACH DATABASE ? AS src').run(path);
      try {
        body();
      } finally {
        db.exec('DETACH DATABASE src');
      }
    };
    attach(m.sources[0], () => db.exec('INSERT INTO modes SELECT * FROM src.modes; INSERT INTO vectors SELECT * FROM src.vectors;'));
    for (const p of m.sources) attach(p, () => db.exec('INSERT INTO images SELECT * FROM src.images'));
    const all = Array.from({ length: m.index.size }, (_, i) => i).filter((h) => m.lists.count[h] > 0);
    db.transaction(() => {
      writeHeapState(db, m.lists, m.index, all);
      writeTopkRows(db, m.lists, m.index, all);
      const an = db.prepare('INSERT INTO anisotropy (layer, value, n, sums) VALUES (?, ?, ?, ?)');
      for (const a of m.anisotropy) an.run(a.layer, a.value, a.n, Buffer.from(a.sums.buffer, a.sums.byteOffset, a.sums.byteLength));
      db.prepare('INSERT INTO progress (id, total, done, skipped, batches, elapsed_s, updated) VALUES (1, ?, ?, ?, 0, ?, ?)').run(m.progress.total, m.progress.done, m.progress.skipped, m.progress.elapsed_s, new Date().toISOString());
    })();
  });
}

/**
 * Builds `dir/run.db` as `run.db.partial` (rollback journal, closed before the rename) and renames
 * it into place: there is either no database or a complete one; a failure (a full disk) removes
 * the partial files and becomes one line.
 */
function buildAtomically(dir: string, build: (db: Database.Database) => void): void {
  const final = ScanStore.pathIn(dir);
  const tmp = `${final}.partial`;
  const clean = () => {
    for (const f of [tmp, `${tmp}-journal`, `${tmp}-wal`, `${tmp}-shm`]) rmSync(f, { force: true });
  };
  clean();
  try {
    guardSql(final, () => {
      const db = openScanDb(tmp, { create: true, journal: 'delete' });
      try {
        db.exec(SCHEMA_SQL);
        build(db);
      } finally {
        db.close();
      }
      renameSync(tmp, final);
    });
  } catch (e) {
    clean();
    throw e;
  }
}

export function f32Blob(a: Float32Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

export function blobF32(b: Buffer): Float32Array {
  const out = new Float32Array(b.length / 4);
  new Uint8Array(out.buffer).set(b);
  return out;
}

/** sha256 of the stored head vectors: identifies the modes on resume and merge. */
export function vectorsHash(db: Database.Database): string {
  const h = createHash('sha256');
  for (const r of db.prepare('SELECT layer, head, u, v FROM vectors ORDER BY layer, head').iterate() as IterableIterator<{ layer: number; head: number; u: Buffer; v: Buffer }>) {
    h.update(`${r.layer}/${r.head}\n`);
    h.update(r.u);
    h.update(r.v);
  }
  return h.digest('hex');
}

