/** Locating and reading a scan run (a run directory holding run.db, or the run.db path itself). */
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type Database from 'better-sqlite3';
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
