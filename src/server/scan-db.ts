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
 */
import Database from 'better-sqlite3';
import { dirname, isAbsolute, resolve } from 'node:path';
import { HttpError } from './http.js';

export interface TopImage {
  sign: 1 | -1;
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

  constructor(readonly path: string) {
    try {
      this.db = new Database(path, { readonly: true, fileMustExist: true });
      const info = this.db.prepare("SELECT name FROM sqlite_master WHERE type='table' AND name='topk'").get();
      if (!info) throw new Error('no table topk');
      this.cols = new Set((this.db.prepare('PRAGMA table_info(topk)').all() as { name: string }[]).map((r) => r.name));
      const missing = REQUIRED.filter((c) => !this.cols.has(c));
      if (missing.length) throw new Error(`table topk lacks column(s) ${missing.join(', ')}`);
    } catch (e) {
      this.error = `run.db: ${(e as Error).message}; expected topk(${[...REQUIRED, ...OPTIONAL].join(', ')}) as documented in docs/API.md`;
    }
  }

  private ready(): Database.Database {
    if (this.error || !this.db) throw new HttpError(422, this.error ?? 'run.db: closed');
    return this.db;
  }

  /** Top images of one mode, both signs, best first. */
  top(layer: number, head: number, mode: number): TopImage[] {
    const db = this.ready();
    const sel = [...REQUIRED, ...OPTIONAL.filter((c) => this.cols.has(c))].map((c) => `"${c}"`).join(', ');
    const rows = db.prepare(`SELECT ${sel} FROM topk WHERE layer = ? AND head = ? AND mode = ? ORDER BY rank`).all(layer, head, mode) as Record<string, unknown>[];
    const base = dirname(this.path);
    const out: TopImage[] = [];
    for (const r of rows) {
      const sign = normSign(r.sign);
      if (sign === null) continue;
      const p = String(r.image_path);
      const num = (k: string) => (r[k] === undefined || r[k] === null ? null : Number(r[k]));
      out.push({
        sign,
        rank: Number(r.rank),
        image_path: isAbsolute(p) ? p : resolve(base, p),
        score: Number(r.score),
        qmax: num('qmax'),
        kmax: num('kmax'),
        q_token: num('q_token'),
        k_token: num('k_token'),
      });
    }
    return out;
  }

  /** Which modes have top images: `${layer}/${head}/${mode}` keys. */
  modesWithImages(): Set<string> {
    const db = this.ready();
    const rows = db.prepare('SELECT DISTINCT layer, head, mode FROM topk').all() as { layer: number; head: number; mode: number }[];
    return new Set(rows.map((r) => `${r.layer}/${r.head}/${r.mode}`));
  }

  /** Every distinct image of the scan (absolute paths), sorted. */
  images(limit = 10000): string[] {
    const db = this.ready();
    const rows = db.prepare('SELECT DISTINCT image_path FROM topk ORDER BY image_path LIMIT ?').all(limit) as { image_path: string }[];
    const base = dirname(this.path);
    return rows.map((r) => (isAbsolute(r.image_path) ? r.image_path : resolve(base, r.image_path)));
  }

  /** Per-layer anisotropy stored by the scan, if it wrote one. */
  anisotropy(): Map<number, number> | null {
    if (this.error || !this.db) return null;
    const t = this.db.prepare("SELECT name FROM sqlite_master WHERE type='table' AND name='anisotropy'").get();
    if (!t) return null;
    try {
      const rows = this.db.prepare('SELECT layer, value FROM anisotropy').all() as { layer: number; value: number }[];
      return new Map(rows.map((r) => [Number(r.layer), Number(r.value)]));
    } catch {
      return null;
    }
  }

  close(): void {
    this.db?.close();
    this.db = null;
  }
}
