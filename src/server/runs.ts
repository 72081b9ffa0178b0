/**
 * The run directories under RUNS_DIR: discovery (folders holding an svd `summary.json`, up to a
 * few levels deep), ids (the folder's path relative to RUNS_DIR, '/'-separated; '.' for RUNS_DIR
 * itself), and lazily read arrays (U, V, key salience). A request names a run only by an id from
 * this list, so nothing outside RUNS_DIR can be reached through it; symlinked folders that
 * resolve outside RUNS_DIR are skipped.
 */
import { existsSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { readNpy, type NpyArray } from '../io/npy.js';
import { layerCurve, type LayerCurve } from '../analysis/compare.js';
import { HttpError, isInside } from './http.js';
import { ScanDb } from './scan-db.js';
import { readSvdSummary, type SvdSummary } from '../store/svd-run.js';

const MAX_DEPTH = 3;
const SKIP = new Set(['node_modules', '.git']);

export interface RunInfo {
  id: string;
  dir: string;
  summary: SvdSummary;
  /** `run.db` beside the summary, if any. */
  scanPath: string | null;
  /** summary.json's modification time (a changed run is re-read). */
  mtime: number;
}

export class RunStore {
  readonly root: string;
  private runs = new Map<string, RunInfo>();
  private scanned = 0;
  private arrays = new Map<string, NpyArray>();
  private scans = new Map<string, ScanDb>();

  constructor(runsDir: string) {
    this.root = realpathSync(runsDir);
  }

  /** Re-reads the folder tree (at most every 2 s), so runs finished after start appear. */
  refresh(force = false): void {
    const now = Date.now();
    if (!force && now - this.scanned < 2000) return;
    this.scanned = now;
    const found = new Map<string, RunInfo>();
    const walk = (dir: string, depth: number) => {
      if (existsSync(join(dir, 'summary.json'))) {
        const id = relative(this.root, dir).split(sep).join('/') || '.';
        const prev = this.runs.get(id);
        const mtime = statSync(join(dir, 'summary.json')).mtimeMs;
        try {
          const summary = prev && prev.mtime === mtime ? prev.summary : readSvdSummary(dir);
          const db = join(dir, 'run.db');
          const info: RunInfo = { id, dir, summary, scanPath: existsSync(db) ? db : null, mtime };
          found.set(id, info);
        } catch {
          // Not an svd run (or unreadable): skipped.
        }
      }
      if (depth >= MAX_DEPTH) return;
      let names: string[];
      try {
        names = readdirSync(dir).sort();
      } catch {
        return;
      }
      for (const name of names) {
        if (SKIP.has(name) || name.startsWith('.')) continue;
        const p = join(dir, name);
        try {
          if (!statSync(p).isDirectory()) continue;
          const real = realpathSync(p);
          if (!isInside(this.root, real)) continue; // symlink out of RUNS_DIR
        } catch {
          continue;
        }
        walk(p, depth + 1);
      }
    };
    walk(this.root, 0);
    // Drop cached arrays of runs whose summary changed or vanished.
    for (const key of [...this.arrays.keys()]) {
      const id = key.slice(0, key.lastIndexOf('|'));
      const a = this.runs.get(id);
      const b = found.get(id);
      if (!b || a?.mtime !== b.mtime) this.arrays.delete(key);
    }
    for (const [id, db] of this.scans) {
      if (found.get(id)?.scanPath !== db.path) {
        db.close();
        this.scans.delete(id);
      }
    }
    this.runs = found;
  }

  list(): RunInfo[] {
    this.refresh();
    return [...this.runs.values()];
  }

  /** The run with this id; 404 for unknown ids, 403 for ids that try to leave RUNS_DIR. */
  get(id: string): RunInfo {
    if (id.includes('\0') || id.split('/').some((p) => p === '..') || id.startsWith('/') || /^[a-zA-Z]:/.test(id)) {
      throw new HttpError(403, `run id ${JSON.stringify(id)}: paths outside RUNS_DIR are refused`);
    }
    this.refresh();
    let r = this.runs.get(id);
    if (!r) {
      this.refresh(true);
      r = this.runs.get(id);
    }
    if (!r) throw new HttpError(404, `no run ${JSON.stringify(id)} under RUNS_DIR (GET /api/runs lists them)`);
    return r;
  }

  /** A whole .npy of a run (cached). */
  array(run: RunInfo, file: 'U.npy' | 'V.npy' | 'key_salience.npy'): NpyArray {
    const key = `${run.id}|${file}`;
    let a = this.arrays.get(key);
    if (!a) {
      const p = join(run.dir, file);
      if (!existsSync(p)) throw new HttpError(404, `run ${run.id}: ${file} is missing; re-run qkscope svd`);
      a = readNpy(p);
      this.arrays.set(key, a);
    }
    return a;
  }

  /** The scan database of a run, or null. */
  scan(run: RunInfo): ScanDb | null {
    if (!run.scanPath) return null;
    let db = this.scans.get(run.id);
    if (!db) {
      db = new ScanDb(run.scanPath);
      this.scans.set(run.id, db);
    }
    return db;
  }

  close(): void {
    for (const db of this.scans.values()) db.close();
    this.scans.clear();
  }
}

/** u_n (or v_n) of one head as float64 [d_h][d], mode-major. */
export function headVectors(a: NpyArray, l: number, h: number): Float64Array[] {
  const [, H, d, dh] = a.shape;
  const base = (l * H + h) * d * dh;
  const out: Float64Array[] = [];
  for (let n = 0; n < dh; n++) {
    const v = new Float64Array(d);
    for (let i = 0; i < d; i++) v[i] = Number(a.data[base + i * dh + n]);
    out.push(v);
  }
  return out;
}

export function salienceVector(a: NpyArray, l: number, h: number): Float64Array {
  const [, H, d] = a.shape;
  const base = (l * H + h) * d;
  return Float64Array.from({ length: d }, (_, i) => Number(a.data[base + i]));
}

/** The Models view's numbers for one run. */
export function modelCurves(run: RunInfo): { weighted: LayerCurve; plain: LayerCurve } {
  return { weighted: layerCurve(run.summary, 'weighted'), plain: layerCurve(run.summary, 'plain') };
}
