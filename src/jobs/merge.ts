/**
 * `merge`: combines the run databases of a sharded scan (or any scans of the same model,
 * images and settings covering disjoint id ranges) into one run whose contents equal a single
 * scan's: images are the union, each top-k list is the top k of the union under the same total
 * order (score descending, then image id), the anisotropy sums are added exactly.
 */
import { copyFileSync, existsSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { UserError } from '../errors.js';
import { IDENTITY_KEYS, ListIndex, SCHEMA_SQL, ScanStore, openScanDb, sqliteErrorMessage, writeHeapState, writeMeta, writeTopkRows, decodeEntries, type ScanMeta } from '../store/scan-db.js';
import { lockRunDir } from '../store/run-lock.js';
import { VERSION } from '../version.js';
import { writeScanSummary } from './scan.js';
import { openRun, type ScanRun } from '../store/scan-run.js';
import { TopKLists } from '../analysis/topk.js';
import { ensureDir } from '../io/fs.js';
import { anisotropyFrom } from '../analysis/anisotropy.js';

export interface MergeResult {
  outDir: string;
  inputs: number;
  images: number;
  done: number;
  skipped: number;
}

function describeRanges(r: [number, number][]): string {
  return r.map(([a, b]) => `${a}–${b - 1}`).join(', ');
}

export function mergeScans(inputs: string[], outDir: string): MergeResult {
  if (inputs.length === 0) throw new UserError('merge: give at least one scan run');
  const out = resolve(outDir);
  if (existsSync(join(out, 'run.db'))) throw new UserError(`${outDir}: already holds a run.db; choose another --out`);
  const runs: ScanRun[] = [];
  let release: (() => void) | null = null;
  let tmp: string | null = null;
  try {
    const seen = new Set<string>();
    for (const p of inputs) {
      const r = openRun(p);
      runs.push(r);
      const real = resolve(r.dbPath);
      if (seen.has(real)) throw new UserError(`merge: ${p} is given twice`);
      seen.add(real);
      if (resolve(r.dir) === out) throw new UserError(`merge: --out ${outDir} is one of the inputs; choose a new folder`);
    }
    const first = runs[0].meta;
    for (const r of runs) {
      if (r.meta.status !== 'complete') {
        const p = r.db.prepare('SELECT done, skipped, total FROM progress').get() as { done: number; skipped: number; total: number };
        throw new UserError(`${r.dir}: the scan is not complete (${p.done + p.skipped} of ${p.total} images); finish it with --resume before merging`);
      }
      for (const k of IDENTITY_KEYS) {
        if (JSON.stringify(r.meta[k]) !== JSON.stringify(first[k])) {
          throw new UserError(`merge: ${r.dir} and ${runs[0].dir} differ in ${k} (${JSON.stringify(r.meta[k]).slice(0, 60)} vs ${JSON.stringify(first[k]).slice(0, 60)}); only scans of the same model, images and settings can be merged`);
        }
      }
    }
    // Id ranges: disjoint and covering every image.
    const ranges = runs.flatMap((r) => r.meta.id_ranges.map((x) => ({ x, dir: r.dir }))).sort((a, b) => a.x[0] - b.x[0]);
    let at = 0;
    const missing: [number, number][] = [];
    for (const { x, dir } of ranges) {
      if (x[0] < at) throw new UserError(`merge: ${dir} overlaps another input (images ${x[0]}–${x[1] - 1}); give each shard once`);
      if (x[0] > at) missing.push([at, x[0]]);
      at = Math.max(at, x[1]);
    }
    if (at < first.image_count) missing.push([at, first.image_count]);
    if (missing.length) {
      const shardHint = first.shard.count > 1 ? ` (the inputs are shards of ${first.shard.count}; have: ${runs.map((r) => r.meta.shard.index).sort((a, b) => a - b).join(', ')})` : '';
      throw new UserError(`merge: images ${describeRanges(missing)} are in none of the inputs${shardHint}`);
    }

    // Output directory: the svd files of the first input, then run.db, summary.json last.
    ensureDir(out);
    release = lockRunDir(out, 'merge');
    if (existsSync(join(out, 'run.db'))) throw new UserError(`${outDir}: already holds a run.db; choose another --out`);
    for (const f of readdirSync(runs[0].dir)) {
      if (f.startsWith('run.db') || f === 'summary.json' || f.endsWith('.partial')) continue;
      const src = join(runs[0].dir, f);
      if (statSync(src).isFile()) copyFileSync(src, join(out, f));
    }
    tmp = join(out, 'run.db.partial');
    for (const f of [tmp, `${tmp}-wal`, `${tmp}-shm`]) rmSync(f, { force: true });
    const db = openScanDb(tmp, { create: true, journal: 'delete' });
    let done = 0;
    let skipped = 0;
    try {
      db.exec(SCHEMA_SQL);
      const attach = (r: ScanRun, body: () => void) => {
        db.prepare('ATTACH DATABASE ? AS src').run(r.dbPath);
        try {
          body();
        } finally {
          db.exec('DETACH DATABASE src');
        }
      };
      db.transaction(() => {
        const meta: ScanMeta = { ...first, created: new Date().toISOString(), tool_version: VERSION, shard: { index: 0, count: 1 }, id_ranges: [[0, first.image_count]], status: 'complete', merged_from: runs.map((r) => resolve(r.dir)) };
        writeMeta(db, meta);
      })();
      attach(runs[0], () => {
        db.exec('INSERT INTO modes SELECT * FROM src.modes; INSERT INTO vectors SELECT * FROM src.vectors;');
      });
      for (const r of runs) attach(r, () => db.exec('INSERT INTO images SELECT * FROM src.images'));

      const idx = new ListIndex(first.layers, first.model.heads, first.model.head_dim);
      const lists = new TopKLists(idx.size, first.top_k);
      const d = first.model.width;
      const sums = new Map<number, { n: number; s: BigInt64Array }>();
      for (const l of first.layers) sums.set(l, { n: 0, s: new BigInt64Array(d) });
      for (const r of runs) {
        for (const row of r.db.prepare('SELECT layer, head, mode, sign, entries FROM heap_state').iterate() as IterableIterator<{ layer: number; head: number; mode: number; sign: number; entries: Buffer }>) {
          const h = idx.index(idx.slotOf(row.layer), row.head, row.mode, row.sign < 0 ? -1 : 1);
          for (const e of decodeEntries(row.entries)) lists.offerEntry(h, e);
        }
        for (const a of r.db.prepare('SELECT layer, n, sums FROM anisotropy').all() as { layer: number; n: number; sums: Buffer }[]) {
          const acc = sums.get(a.layer);
          if (!acc) continue;
          const v = new BigInt64Array(a.sums.buffer.slice(a.sums.byteOffset, a.sums.byteOffset + a.sums.length));
          for (let i = 0; i < d; i++) acc.s[i] += v[i];
          acc.n += a.n;
        }
        const p = r.db.prepare('SELECT done, skipped FROM progress').get() as { done: number; skipped: number };
        done += p.done;
        skipped += p.skipped;
      }
      const all = Array.from({ length: idx.size }, (_, i) => i).filter((h) => lists.count[h] > 0);
      db.transaction(() => {
        writeHeapState(db, lists, idx, all);
        writeTopkRows(db, lists, idx, all);
        const an = db.prepare('INSERT INTO anisotropy (layer, value, n, sums) VALUES (?, ?, ?, ?)');
        for (const [l, a] of sums) an.run(l, anisotropyFrom(a.s, a.n), a.n, Buffer.from(a.s.buffer));
        const elapsed = runs.reduce((s, r) => s + ((r.db.prepare('SELECT elapsed_s FROM progress').get() as { elapsed_s: number }).elapsed_s ?? 0), 0);
        db.prepare('INSERT INTO progress (id, total, done, skipped, batches, elapsed_s, updated) VALUES (1, ?, ?, ?, 0, ?, ?)').run(first.image_count, done, skipped, elapsed, new Date().toISOString());
      })();
    } finally {
      db.close();
    }
    renameSync(tmp, join(out, 'run.db'));
    tmp = null;
    copyFileSync(join(runs[0].dir, 'summary.json'), join(out, 'summary.json'));
    const store = ScanStore.open(out);
    try {
      writeScanSummary(out, store.state());
    } finally {
      store.close();
    }
    return { outDir: out, inputs: runs.length, images: first.image_count, done, skipped };
  } catch (e) {
    // A failed merge (disk full) leaves no half-made database behind.
    if (tmp) for (const f of [tmp, `${tmp}-journal`, `${tmp}-wal`, `${tmp}-shm`]) rmSync(f, { force: true });
    const msg = sqliteErrorMessage(e, join(out, 'run.db'));
    if (msg) throw new UserError(msg);
    throw e;
  } finally {
    for (const r of runs) r.db.close();
    release?.();
  }
}
