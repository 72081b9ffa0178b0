/** Locating and reading a scan run (a run directory holding run.db, or the run.db path itself). */
import { existsSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { UserError } from '../errors.js';
import { ListIndex, decodeEntries, openScanRun, type ScanMeta } from './scan-db.js';
import type { TopEntry } from '../analysis/topk.js';

export function scanDbPath(run: string): { dir: string; db: string } {
  if (!existsSync(run)) throw new UserError(`${run}: no such run directory`);
  if (statSync(run).isDirectory()) {
    const db = join(run, 'run.db');
    if (!existsSync(db)) throw new UserError(`${run}: no run.db; run \`qkscope scan <model> <images> --out ${run}\` first`);
    return { dir: run, db };
  }
  return { dir: dirname(run), db: run };
}

export interface ScanRun {
  dir: string;
  dbPath: string;
  db: Database.Database;
  meta: ScanMeta;
  index: ListIndex;
}

export function openRun(run: string): ScanRun {
  const { dir, db: dbPath } = scanDbPath(run);
  const { db, meta } = openScanRun(dbPath);
  return { dir, dbPath, db, meta, index: new ListIndex(meta.layers, meta.model.heads, meta.model.head_dim) };
}

export function parseSign(v: string): 1 | -1 | 'both' {
  const s = v.trim().toLowerCase();
  if (['+', 'pos', 'positive', '+1', '1', 'plus'].includes(s)) return 1;
  if (['-', '−', 'neg', 'negative', '-1', 'minus'].includes(s)) return -1;
  if (s === 'both' || s === '+-' || s === '±') return 'both';
  throw new UserError(`--sign ${v}: expected +, - or both`);
}

export function checkMode(r: ScanRun, layer: number, head: number, mode: number): void {
  const m = r.meta.model;
  if (!r.meta.layers.includes(layer)) throw new UserError(`--layer ${layer}: not scanned in ${r.dir} (scanned layers: ${r.meta.layers.join(', ')})`);
  if (!Number.isInteger(head) || head < 0 || head >= m.heads) throw new UserError(`--head ${head}: the model has heads 0..${m.heads - 1}`);
  if (!Number.isInteger(mode) || mode < 0 || mode >= m.head_dim) throw new UserError(`--mode ${mode}: heads have modes 0..${m.head_dim - 1}`);
}

export interface RankedImage extends TopEntry {
  rank: number;
  path: string;
  source: string;
  container: string;
  member: string | null;
  sha256: string | null;
}

/** The current top list of one (layer, head, mode, sign), from heap_state (always up to date). */
export function topList(r: ScanRun, layer: number, head: number, mode: number, sign: 1 | -1): RankedImage[] {
  const row = r.db.prepare('SELECT entries FROM heap_state WHERE layer = ? AND head = ? AND mode = ? AND sign = ?').get(layer, head, mode, sign) as { entries: Buffer } | undefined;
  if (!row) return [];
  const img = r.db.prepare('SELECT path, source, container, member, sha256 FROM images WHERE id = ?');
  return decodeEntries(row.entries).map((e, rank) => {
    const i = img.get(e.id) as { path: string; source: string; container: string; member: string | null; sha256: string | null } | undefined;
    return { ...e, rank, path: i?.path ?? `#${e.id}`, source: i?.source ?? 'file', container: i?.container ?? '', member: i?.member ?? null, sha256: i?.sha256 ?? null };
  });
}

export function modeInfo(r: ScanRun, layer: number, head: number, mode: number): { sigma: number; cosine: number; relGap: number; anisotropy: number | null } {
  const m = r.db.prepare('SELECT sigma, cosine, rel_gap FROM modes WHERE layer = ? AND head = ? AND mode = ?').get(layer, head, mode) as { sigma: number; cosine: number; rel_gap: number } | undefined;
  const a = r.db.prepare('SELECT value FROM anisotropy WHERE layer = ?').get(layer) as { value: number | null } | undefined;
  return { sigma: m?.sigma ?? NaN, cosine: m?.cosine ?? NaN, relGap: m?.rel_gap ?? NaN, anisotropy: a?.value ?? null };
}

/** σ of every scanned mode, keyed `layer/head/mode`. */
export function modeSigmas(r: Pick<ScanRun, 'db'>): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of r.db.prepare('SELECT layer, head, mode, sigma FROM modes').all() as { layer: number; head: number; mode: number; sigma: number }[]) out.set(`${m.layer}/${m.head}/${m.mode}`, m.sigma);
  return out;
}

/** u_n, v_n of every scanned head, keyed `layer/head`: float32 mode-major [d_h, d] (row n is u_n / v_n). */
export function headVectors(r: Pick<ScanRun, 'db'>): Map<string, { u: Float32Array; v: Float32Array }> {
  const f32 = (b: Buffer) => new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  const out = new Map<string, { u: Float32Array; v: Float32Array }>();
  for (const h of r.db.prepare('SELECT layer, head, u, v FROM vectors').all() as { layer: number; head: number; u: Buffer; v: Buffer }[]) out.set(`${h.layer}/${h.head}`, { u: f32(h.u), v: f32(h.v) });
  return out;
}

export interface TopImageRow {
  layer: number;
  head: number;
  mode: number;
  /** Image id in the run. */
  id: number;
  path: string;
  source: string;
  container: string;
  member: string | null;
  /** The original file name where the container keeps one (Parquet). */
  name: string | null;
}

/** Every (mode, image) among the first `top` entries of each mode's positive-sign top list, by image id. */
export function topImageRows(r: Pick<ScanRun, 'db'>, top: number): TopImageRow[] {
  return r.db
    .prepare(
      'SELECT t.layer, t.head, t.mode, t.image_id AS id, i.path AS path, i.source AS source, i.container AS container, i.member AS member, i.name AS name ' +
        'FROM topk t JOIN images i ON i.id = t.image_id WHERE t.sign > 0 AND t.rank < ? ORDER BY t.image_id, t.layer, t.head, t.mode',
    )
    .all(top) as TopImageRow[];
}

/** u_n, v_n of one scanned head: float32 mode-major [d_h, d]. */
export function headVectorPair(r: Pick<ScanRun, 'db'>, layer: number, head: number): { u: Float32Array; v: Float32Array } {
  const row = r.db.prepare('SELECT u, v FROM vectors WHERE layer = ? AND head = ?').get(layer, head) as { u: Buffer; v: Buffer } | undefined;
  if (!row) throw new UserError(`run.db: no vectors for layer ${layer} head ${head}`);
  const f32 = (b: Buffer) => new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  return { u: f32(row.u), v: f32(row.v) };
}

/** Images done, skipped and in all, from the progress row. */
export function scanProgress(r: Pick<ScanRun, 'db'>): { total: number; done: number; skipped: number } {
  return r.db.prepare('SELECT total, done, skipped FROM progress').get() as { total: number; done: number; skipped: number };
}

// ---------------------------------------------------------------------------------------------
// The generic top-image reader (`qkscope serve`, docs/API.md "Scan databases")
// ---------------------------------------------------------------------------------------------

/**
 * Read-only access to a run's `run.db` through the one table the explorer documents, so that
 * databases written by other tools can be browsed too:
 *
 *   topk(layer INTEGER, head INTEGER, mode INTEGER,   -- 0-based, as everywhere
 *        sign INTEGER,                               -- +1: (u_n, v_n); −1: (−u_n, −v_n)
 *        rank INTEGER,                               -- 0 = best
 *        image_path TEXT,                            -- absolute, or relative to the run directory
 *        score REAL,                                 -- S = max_t Q(t) × max_t K(t)
 *        qmax REAL, kmax REAL,                       -- max_t Q(t), max_t K(t)        (optional)
 *        q_token INTEGER, k_token INTEGER)           -- token index of each maximum   (optional)
 *
 * and optionally `anisotropy(layer INTEGER, value REAL[, n INTEGER])` (docs/method.md §3) and
 * `meta(key, value)`. `sign` may also be stored as text ('+', '-', 'pos', 'neg'). A qkscope scan
 * writes a superset; its `topk.image_id` is joined to `images(id, source, container, member)` so
 * images inside tar shards and Parquet files can be read back.
 *
 * A database that lacks the table fails on first use with a UserError naming the schema.
 */

/** Where an image's bytes are: a plain file, or a member of a tar shard / a Parquet row. */
export interface TopkImageLocator {
  path: string;
  kind: 'file' | 'tar' | 'parquet';
  container: string;
  member: string | null;
}

export interface TopkRow {
  sign: 1 | -1;
  locator: TopkImageLocator;
  rank: number;
  score: number;
  qmax: number | null;
  kmax: number | null;
  q_token: number | null;
  k_token: number | null;
}

const TOPK_REQUIRED = ['layer', 'head', 'mode', 'sign', 'rank', 'image_path', 'score'];
const TOPK_OPTIONAL = ['qmax', 'kmax', 'q_token', 'k_token'];
export const TOPK_SCHEMA = `topk(${[...TOPK_REQUIRED, ...TOPK_OPTIONAL].join(', ')})`;

function topkSign(v: unknown): 1 | -1 | null {
  if (typeof v === 'number' || typeof v === 'bigint') return Number(v) > 0 ? 1 : Number(v) < 0 ? -1 : null;
  if (typeof v === 'string') {
    const s = v.trim().toLowerCase();
    if (s === '+' || s === 'pos' || s === 'positive' || s === '+1' || s === '1') return 1;
    if (s === '-' || s === 'neg' || s === 'negative' || s === '-1' || s === '−') return -1;
  }
  return null;
}

export class TopkReader {
  private db: Database.Database | null = null;
  private cols = new Set<string>();
  private error: string | null = null;
  private joinImages = false;

  constructor(readonly path: string) {
    try {
      this.db = new Database(path, { readonly: true, fileMustExist: true });
      const has = (t: string) => !!this.db!.prepare("SELECT name FROM sqlite_master WHERE type='table' AND name=?").get(t);
      if (!has('topk')) throw new Error('no table topk');
      this.cols = new Set((this.db.prepare('PRAGMA table_info(topk)').all() as { name: string }[]).map((r) => r.name));
      const missing = TOPK_REQUIRED.filter((c) => !this.cols.has(c));
      if (missing.length) throw new Error(`table topk lacks column(s) ${missing.join(', ')}`);
      if (this.cols.has('image_id') && has('images')) {
        const ic = new Set((this.db.prepare('PRAGMA table_info(images)').all() as { name: string }[]).map((r) => r.name));
        this.joinImages = ['id', 'source', 'container', 'member'].every((c) => ic.has(c));
      }
    } catch (e) {
      this.error = `run.db: ${(e as Error).message.split('\n')[0]}; expected ${TOPK_SCHEMA} as documented in docs/API.md`;
    }
  }

  private ready(): Database.Database {
    if (this.error || !this.db) throw new UserError(this.error ?? 'run.db: closed');
    return this.db;
  }

  private locator(r: Record<string, unknown>): TopkImageLocator {
    const base = dirname(this.path);
    const abs = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
    const path = abs(String(r.image_path));
    const kind = r.i_source === 'tar' || r.i_source === 'parquet' ? r.i_source : 'file';
    if (kind === 'file') return { path, kind, container: r.i_container ? abs(String(r.i_container)) : path, member: null };
    return { path, kind, container: abs(String(r.i_container)), member: r.i_member === null || r.i_member === undefined ? null : String(r.i_member) };
  }

  private selectSql(where: string, order: string): string {
    const cols = [...TOPK_REQUIRED, ...TOPK_OPTIONAL.filter((c) => this.cols.has(c))].map((c) => `t."${c}"`);
    if (this.joinImages) {
      cols.push('i.source AS i_source', 'i.container AS i_container', 'i.member AS i_member');
      return `SELECT ${cols.join(', ')} FROM topk t LEFT JOIN images i ON i.id = t.image_id ${where} ${order}`;
    }
    return `SELECT ${cols.join(', ')} FROM topk t ${where} ${order}`;
  }

  /** Top images of one mode, both signs, best first. */
  top(layer: number, head: number, mode: number): TopkRow[] {
    const rows = this.ready().prepare(this.selectSql('WHERE t.layer = ? AND t.head = ? AND t.mode = ?', 'ORDER BY t.rank')).all(layer, head, mode) as Record<string, unknown>[];
    const out: TopkRow[] = [];
    for (const r of rows) {
      const sign = topkSign(r.sign);
      if (sign === null) continue;
      const num = (k: string) => (r[k] === undefined || r[k] === null ? null : Number(r[k]));
      out.push({ sign, locator: this.locator(r), rank: Number(r.rank), score: Number(r.score), qmax: num('qmax'), kmax: num('kmax'), q_token: num('q_token'), k_token: num('k_token') });
    }
    return out;
  }

  /** `meta` (JSON values), or null when there is none. */
  meta(): Record<string, unknown> | null {
    if (this.error || !this.db) return null;
    try {
      const m: Record<string, unknown> = {};
      for (const r of this.db.prepare('SELECT key, value FROM meta').all() as { key: string; value: string }[]) {
        try {
          m[r.key] = JSON.parse(r.value);
        } catch {
          m[r.key] = r.value;
        }
      }
      return m;
    } catch {
      return null;
    }
  }

  /** Which modes have top images: `layer/head/mode` keys. */
  modesWithImages(): Set<string> {
    const rows = this.ready().prepare('SELECT DISTINCT layer, head, mode FROM topk').all() as { layer: number; head: number; mode: number }[];
    return new Set(rows.map((r) => `${r.layer}/${r.head}/${r.mode}`));
  }

  /** Distinct images of the top lists, by path (at most `limit`). */
  images(limit = 500): TopkImageLocator[] {
    const sql = this.joinImages
      ? 'SELECT t.image_path, MIN(i.source) AS i_source, MIN(i.container) AS i_container, MIN(i.member) AS i_member FROM topk t LEFT JOIN images i ON i.id = t.image_id GROUP BY t.image_path ORDER BY t.image_path LIMIT ?'
      : 'SELECT DISTINCT image_path FROM topk ORDER BY image_path LIMIT ?';
    return (this.ready().prepare(sql).all(limit) as Record<string, unknown>[]).map((r) => this.locator(r));
  }

  /** The per-layer anisotropy baseline the scan stored (value and image count), or null. */
  anisotropy(): Map<number, { value: number; n: number | null }> | null {
    if (this.error || !this.db) return null;
    try {
      if (!this.db.prepare("SELECT name FROM sqlite_master WHERE type='table' AND name='anisotropy'").get()) return null;
      const hasN = (this.db.prepare('PRAGMA table_info(anisotropy)').all() as { name: string }[]).some((c) => c.name === 'n');
      const rows = this.db.prepare(`SELECT layer, value${hasN ? ', n' : ''} FROM anisotropy`).all() as { layer: number; value: number | null; n?: number }[];
      const m = new Map<number, { value: number; n: number | null }>();
      for (const r of rows) if (r.value !== null && Number.isFinite(Number(r.value))) m.set(Number(r.layer), { value: Number(r.value), n: r.n === undefined ? null : Number(r.n) });
      return m.size ? m : null;
    } catch {
      return null;
    }
  }

  close(): void {
    this.db?.close();
    this.db = null;
  }
}

/** The progress row of a scan (counts and the seconds it took). */
export function progressRow(r: Pick<ScanRun, 'db'>): { total: number; done: number; skipped: number; elapsed_s: number } {
  return r.db.prepare('SELECT total, done, skipped, elapsed_s FROM progress').get() as { total: number; done: number; skipped: number; elapsed_s: number };
}

/** Every stored top-k list (the authoritative heap_state), decoded. */
export function* storedLists(r: Pick<ScanRun, 'db'>): Generator<{ layer: number; head: number; mode: number; sign: 1 | -1; entries: TopEntry[] }> {
  for (const row of r.db.prepare('SELECT layer, head, mode, sign, entries FROM heap_state').iterate() as IterableIterator<{ layer: number; head: number; mode: number; sign: number; entries: Buffer }>) {
    yield { layer: row.layer, head: row.head, mode: row.mode, sign: row.sign < 0 ? -1 : 1, entries: decodeEntries(row.entries) };
  }
}

/** The exact anisotropy sums per layer (fixed-point, see analysis/anisotropy.ts). */
export function anisotropySums(r: Pick<ScanRun, 'db'>): { layer: number; n: number; sums: BigInt64Array }[] {
  return (r.db.prepare('SELECT layer, n, sums FROM anisotropy').all() as { layer: number; n: number; sums: Buffer }[]).map((a) => ({
    layer: a.layer,
    n: a.n,
    sums: new BigInt64Array(a.sums.buffer.slice(a.sums.byteOffset, a.sums.byteOffset + a.sums.length)),
  }));
}
