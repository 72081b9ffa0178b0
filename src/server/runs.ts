/**
 * The run directories under RUNS_DIR: discovery (folders holding an svd `summary.json`, up to a
 * few levels deep), ids (the folder's path relative to RUNS_DIR, '/'-separated; '.' for RUNS_DIR
 * itself), and the run's files, read lazily through the store readers. A request names a run
 * only by an id from this list; every file is opened by its real path, and only when that lies
 * inside RUNS_DIR (a symbolic link in a run folder pointing elsewhere is refused).
 */
import { readdirSync, realpathSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { readNpy, type NpyArray } from '../io/npy.js';
import { UserError } from '../errors.js';
import { readSvdSummary, type SvdSummary } from '../store/svd-run.js';
import { TopkReader } from '../store/scan-run.js';
import { HttpError, isInside, realInside } from './http.js';

const MAX_DEPTH = 3;
const SKIP = new Set(['node_modules', '.git']);

export interface RunInfo {
  id: string;
  dir: string;
  summary: SvdSummary;
  /** `run.db` beside the summary (its real path, inside RUNS_DIR), if any. */
  scanPath: string | null;
  /** summary.json's modification time (a changed run is re-read). */
  mtime: number;
}

export type RunArray = 'U.npy' | 'V.npy' | 'key_salience.npy';

export class RunStore {
  /** RUNS_DIR's real path. */
  readonly root: string;
  private runs = new Map<string, RunInfo>();
  private scanned = 0;
  private arrays = new Map<string, NpyArray>();
  private scans = new Map<string, TopkReader>();

  constructor(runsDir: string) {
    let st;
    try {
      st = statSync(runsDir);
    } catch {
      st = null;
    }
    if (!st?.isDirectory()) throw new UserError(`${runsDir}: not a folder; give the folder holding your run directories (made by \`qkscope svd MODEL --out ${runsDir}/NAME\` or \`qkscope scan\`)`);
    this.root = realpathSync(runsDir);
  }

  /** The real path of a file of RUNS_DIR, or null when it is missing or leads outside RUNS_DIR. */
  file(dir: string, name: string): string | null {
    return realInside([this.root], join(dir, name));
  }

  /** Re-reads the folder tree (at most every 2 s), so runs finished after start appear. */
  refresh(force = false): void {
    const now = Date.now();
    if (!force && now - this.scanned < 2000) return;
    this.scanned = now;
    const found = new Map<string, RunInfo>();
    const walk = (dir: string, depth: number) => {
      const summaryPath = this.file(dir, 'summary.json');
      if (summaryPath) {
        const id = relative(this.root, dir).split(sep).join('/') || '.';
        const prev = this.runs.get(id);
        try {
          const mtime = statSync(summaryPath).mtimeMs;
          const summary = prev && prev.mtime === mtime ? prev.summary : readSvdSummary(dir);
          found.set(id, { id, dir, summary, scanPath: this.file(dir, 'run.db'), mtime });
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
          if (!isInside(this.root, realpathSync(p))) continue; // symlink out of RUNS_DIR
        } catch {
          continue;
        }
        walk(p, depth + 1);
      }
    };
    walk(this.root, 0);
    // Drop cached arrays and databases of runs whose summary changed or vanished.
    for (const key of [...this.arrays.keys()]) {
      const id = key.slice(0, key.lastIndexOf('|'));
      if (found.get(id)?.mtime !== this.runs.get(id)?.mtime || !found.has(id)) this.arrays.delete(key);
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
  array(run: RunInfo, file: RunArray): NpyArray {
    const key = `${run.id}|${file}`;
    let a = this.arrays.get(key);
    if (!a) {
      const p = this.file(run.dir, file);
      if (!p) throw new HttpError(404, `run ${run.id}: ${file} is missing (or a link out of RUNS_DIR); re-run qkscope svd`);
      a = readNpy(p);
      this.arrays.set(key, a);
    }
    return a;
  }

  /** The top-image reader of a run's scan database, or null. */
  scan(run: RunInfo): TopkReader | null {
    if (!run.scanPath) return null;
    let db = this.scans.get(run.id);
    if (!db) {
      db = new TopkReader(run.scanPath);
      this.scans.set(run.id, db);
    }
    return db;
  }

  close(): void {
    for (const db of this.scans.values()) db.close();
    this.scans.clear();
  }
}

// Defined once for serve and the static export (store/explorer.ts).
export { headVectors, modalityOf, salienceVector } from '../store/explorer.js';
