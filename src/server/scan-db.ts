/**
 * Read-only access to a scan database (`run.db` in a run directory: the top images per mode,
 * METHOD.md §5). The server needs only this table (other tables and columns are ignored):
 *
 *   topk(layer INTEGER, head INTEGER, mode INTEGER,   -- 0-based, as everywhere
 *        sign INTEGER,                               -- +1: (u_n, v_n); −1: (−u_n, −v_n)
 *        rank INTEGER,                               -- 0 = best
 *        image_path TEXT,                            -- absolute, or relative to the run directory
 *        score REAL,                                 -- S = max_t Q(t) × max_t K(t)
 *        qmax REAL, kmax REAL,                       -- max_t Q(t), max_t K(t)
 *        q_token INTEGER, k_token INTEGER)           -- token index of each maximum
 *
 * and optionally `anisotropy(layer INTEGER, value REAL)`: per layer, the mean cosine between
 * the centre-patch embeddings of different images (METHOD.md §3).
 * `sign` may also be stored as text ('+', '-', 'pos', 'neg').
 *
 * `qkscope scan` writes a superset of this (src/store/scan-db.ts, docs/scan.md): there `topk`
 * also has `image_id`, joined here to `images(id, source, container, member)` so that images
 * inside tar shards and Parquet files can be read back.
 */
import Database from 'better-sqlite3';
import { dirname, isAbsolute, resolve } from 'node:path';
import { HttpError } from './http.js';

/** Where an image's bytes are: a plain file, or a member of a tar shard / a Parquet row. */
export interface ImageLocator {
  path: string;
  kind: 'file' | 'tar' | 'parquet';
  container: string;
  member: string | null;
}

export interface TopImage {
  sign: 1 | -1;
  locator: ImageLocator;
  rank: number;
  image_path: string;
  score: number;
  qmax: number | null;
  kmax: number | null;
  q_token: number | null;
  k_token: number | null;
}

const REQUIRED = ['layer', 'head', 'mode', 'sign', 'rank', 'image_path', 'score'];
const OPTIONAL = ['qmax', 'kmax', 'q_token', 'k_token'];

function normSign(v: unknown): 1 | -1 | null {
  if (typeof v === 'number' || typeof v === 'bigint') return Number(v) > 0 ? 1 : Number(v) < 0 ? -1 : null;
  if (typeof v === 'string') {
    const s = v.trim().toLowerCase();
    if (s === '+' || s === 'pos' || s === 'positive' || s === '+1' || s === '1') return 1;
    if (s === '-' || s === 'neg' || s === 'negative' || s === '-1' || s === '−') return -1;
  }
  return null;
}

export class ScanDb {
  private db: Database.Database | null = null;
  private cols: Set<string> = new Set();
  private error: string | null = null;
  /** `images` table of a qkscope scan, joined on topk.image_id. */
  private joinImages = false;

  constructor(readonly path: string) {
    try {
      this.db = new Database(path, { readonly: true, fileMustExist: true });
      const info = this.db.prepare("SELECT name FROM sqlite_master WHERE type='table' AND name='topk'").get();
      if (!info) throw new Error('no table topk');
      this.cols = new Set((this.db.prepare('PRAGMA table_info(topk)').all() as { name: string }[]).map((r) => r.name));
      const missing = REQUIRED.filter((c) => !this.cols.has(c));
      if (missing.length) throw new Error(`table topk lacks column(s) ${missing.join(', ')}`);
      if (this.cols.has('image_id') && this.db.prepare("SELECT name FROM sqlite_master WHERE type='table' AND name='images'").get()) {
        const ic = new Set((this.db.prepare('PRAGMA table_info(images)').all() as { name: string }[]).map((r) => r.name));
        this.joinImages = ['id', 'source', 'container', 'member'].every((c) => ic.has(c));
      }
    } catch (e) {
      this.error = `run.db: ${(e as Error).message}; expected topk(${[...REQUIRED, ...OPTIONAL].join(', ')}) as documented in docs/API.md`;
    }
  }

  private ready(): Database.Database {
    if (this.error || !this.db) throw new HttpError(422, this.error ?? 'run.db: closed');
    return this.db;
  }

  private locator(r: Record<string, unknown>): ImageLocator {
    const base = dirname(this.path);
    const abs = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
    const path = abs(String(r.image_path));
    const kind = r.i_source === 'tar' || r.i_source === 'parquet' ? r.i_source : 'file';
    if (kind === 'file') return { path, kind, container: r.i_container ? abs(String(r.i_container)) : path, member: null };
    return { path, kind, container: abs(String(r.i_container)), member: r.i_member === null || r.i_member === undefined ? null : String(r.i_member) };
  }

  private selectSql(where: string, order: string): string {
    const cols = [...REQUIRED, ...OPTIONAL.filter((c) => this.cols.has(c))].map((c) => `t."${c}"`);
    if (this.joinImages) {
      cols.push('i.source AS i_source', 'i.container AS i_container', 'i.member AS i_member');
      return `SELECT ${cols.join(', ')} FROM topk t LEFT JOIN images i ON i.id = t.image_id ${where} ${order}`;
    }
    return `SELECT ${cols.join(', ')} FROM topk t ${where} ${order}`;
  }

  /** Top images of one mode, both signs, best first. */
  top(layer: number, head: number, mode: number): TopImage[] {
    const db = this.ready();
    const rows = db.prepare(this.selectSql('WHERE t.layer = ? AND t.head = ? AND t.mode = ?', 'ORDER BY t.rank')).all(layer, head, mode) as Record<string, unknown>[];
    const out: TopImage[] = [];
    for (const r of rows) {
      const sign = normSign(r.sign);
      if (sign === null) continue;
      const num = (k: string) => (r[k] === undefined || r[k] === null ? null : Number(r[k]));
      const locator = this.locator(r);
      out.push({
        sign,
        locator,
        rank: Number(r.rank),
        image_path: locator.path,
        score: Number(r.score),
        qmax: num('qmax'),
        kmax: num('kmax'),
        q_token: num('q_token'),
        k_token: num('k_token'),
      });
    }
    return out;
  }

  /** Scan metadata (`meta` table of qkscope scan), or null. */
  meta(): Record<string, unknown> | null {
    if (this.error || !this.db) return null;
    try {
      const rows = this.db.prepare('SELECT key, value FROM meta').all() as { key: string; value: string }[];
      const m: Record<string, unknown> = {};
      for (const r of rows) {
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

  /** Which modes have top images: `${layer}/${head}/${mode}` keys. */
  modesWithImages(): Set<string> {
    const db = this.ready();
    const rows = db.prepare('SELECT DISTINCT layer, head, mode FROM topk').all() as { layer: number; head: number; mode: number }[];
    return new Set(rows.map((r) => `${r.layer}/${r.head}/${r.mode}`));
  }

  /** Distinct images of the scan's top lists, sorted by path (at most `limit`). */
  images(limit = 500): ImageLocator[] {
    const db = this.ready();
    const sql = this.joinImages
      ? 'SELECT t.image_path, MIN(i.source) AS i_source, MIN(i.container) AS i_container, MIN(i.member) AS i_member FROM topk t LEFT JOIN images i ON i.id = t.image_id GROUP BY t.image_path ORDER BY t.image_path LIMIT ?'
      : 'SELECT DISTINCT image_path FROM topk ORDER BY image_path LIMIT ?';
    const rows = db.prepare(sql).all(limit) as Record<string, unknown>[];
    return rows.map((r) => this.locator(r));
  }

  /** Per-layer anisotropy stored by the scan, if it wrote one. */
  anisotropy(): Map<number, number> | null {
    if (this.error || !this.db) return null;
    const t = this.db.prepare("SELECT name FROM sqlite_master WHERE type='table' AND name='anisotropy'").get();
    if (!t) return null;
    try {
      const rows = this.db.prepare('SELECT layer, value FROM anisotropy').all() as { layer: number; value: number | null }[];
      const m = new Map<number, number>();
      for (const r of rows) if (r.value !== null && Number.isFinite(Number(r.value))) m.set(Number(r.layer), Number(r.value));
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
