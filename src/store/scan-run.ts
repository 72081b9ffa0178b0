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
