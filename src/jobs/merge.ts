/**
 * `merge`: combines the run databases of a sharded scan (or any scans of the same model,
 * images and settings covering disjoint id ranges) into one run whose contents equal a single
 * scan's: images are the union, each top-k list is the top k of the union under the same total
 * order (score descending, then image id), the anisotropy sums are added exactly. The
 * databases are read and written through the store (all SQL lives in src/store/).
 */
import { copyFileSync, existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { UserError } from '../errors.js';
import { IDENTITY_KEYS, ListIndex, ScanStore, createMergedScan, type ScanMeta } from '../store/scan-db.js';
import { lockRunDir } from '../store/run-lock.js';
import { VERSION } from '../version.js';
import { writeScanSummary } from './scan.js';
import { anisotropySums, openRun, progressRow, storedLists, type ScanRun } from '../store/scan-run.js';
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

/** The inputs must be complete scans of the same model, images and settings, covering every image once. */
function checkInputs(runs: ScanRun[], out: string, outDir: string): void {
  const first = runs[0].meta;
  for (const r of runs) {
    if (resolve(r.dir) === out) throw new UserError(`merge: --out ${outDir} is one of the inputs; choose a new folder`);
    if (r.meta.status !== 'complete') {
      const p = progressRow(r);
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
}

export function mergeScans(inputs: string[], outDir: string): MergeResult {
  if (inputs.length === 0) throw new UserError('merge: give at least one scan run');
  const out = resolve(outDir);
  if (existsSync(join(out, 'run.db'))) throw new UserError(`${outDir}: already holds a run.db; choose another --out`);
  const runs: ScanRun[] = [];
  let release: (() => void) | null = null;
  try {
    const seen = new Set<string>();
    for (const p of inputs) {
      const r = openRun(p);
      runs.push(r);
      const real = resolve(r.dbPath);
      if (seen.has(real)) throw new UserError(`merge: ${p} is given twice`);
      seen.add(real);
    }
    checkInputs(runs, out, outDir);
    const first = runs[0].meta;

    // The lists and sums of the union.
    const index = new ListIndex(first.layers, first.model.heads, first.model.head_dim);
    const lists = new TopKLists(index.size, first.top_k);
    const d = first.model.width;
    const sums = new Map<number, { n: number; s: BigInt64Array }>(first.layers.map((l) => [l, { n: 0, s: new BigInt64Array(d) }]));
    const progress = { total: first.image_count, done: 0, skipped: 0, elapsed_s: 0 };
    for (const r of runs) {
      for (const l of storedLists(r)) {
        const h = index.index(index.slotOf(l.layer), l.head, l.mode, l.sign);
        for (const e of l.entries) lists.offerEntry(h, e);
      }
      for (const a of anisotropySums(r)) {
        const acc = sums.get(a.layer);
        if (!acc) continue;
        for (let i = 0; i < d; i++) acc.s[i] += a.sums[i];
        acc.n += a.n;
      }
      const p = progressRow(r);
      progress.done += p.done;
      progress.skipped += p.skipped;
      progress.elapsed_s += p.elapsed_s ?? 0;
    }

    // Output directory: the svd files of the first input, then run.db, summary.json last.
    ensureDir(out);
    release = lockRunDir(out, 'merge');
    if (existsSync(join(out, 'run.db'))) throw new UserError(`${outDir}: already holds a run.db; choose another --out`);
    for (const f of readdirSync(runs[0].dir)) {
      if (f.startsWith('run.db') || f === 'summary.json' || f.endsWith('.partial') || f.startsWith('.qkscope.lock')) continue;
      const src = join(runs[0].dir, f);
      if (statSync(src).isFile()) copyFileSync(src, join(out, f));
    }
    const meta: ScanMeta = { ...first, created: new Date().toISOString(), tool_version: VERSION, shard: { index: 0, count: 1 }, id_ranges: [[0, first.image_count]], status: 'complete', merged_from: runs.map((r) => resolve(r.dir)) };
    createMergedScan(out, {
      meta,
      sources: runs.map((r) => r.dbPath),
      lists,
      index,
      anisotropy: [...sums].map(([layer, a]) => ({ layer, value: anisotropyFrom(a.s, a.n), n: a.n, sums: a.s })),
      progress,
    });
    copyFileSync(join(runs[0].dir, 'summary.json'), join(out, 'summary.json'));
    const store = ScanStore.open(out);
    try {
      writeScanSummary(out, store.state());
    } finally {
      store.close();
    }
    return { outDir: out, inputs: runs.length, images: first.image_count, done: progress.done, skipped: progress.skipped };
  } finally {
    for (const r of runs) r.db.close();
    release?.();
  }
}
