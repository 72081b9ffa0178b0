/**
 * `scan` (docs/method.md §5): streams images through the model, keeps for every (layer, head,
 * mode, sign) the top-k images by S = max_t Q_n(t) × max_t K_n(t), and the anisotropy
 * baseline per layer, in the run database `RUN/run.db`.
 *
 * Shape: `prepareScan` writes the svd files and creates (or verifies, on resume) the run
 * database; `runScan` is the image loop, committing each batch through the `ScanStore` it is
 * given (one SQLite transaction per batch: a killed scan loses at most that batch);
 * `writeScanSummary` adds the scan's section to summary.json. The caller holds the run
 * directory's lock for all three (`withRunLock`), so a second writer is refused at once.
 *
 * Definitions (docs/scan.md): for sign s = ±1, Q(t) = s·x_t·u_n, K(t) = s·x_t·v_n over the patch
 * tokens t (special tokens excluded), x = LN output (default) or residual stream. qmax =
 * max_t Q(t), its patch index q_token (lowest index on ties), q_mean = mean_t Q(t), q_top5 =
 * mean of the 5 largest Q(t); likewise for K; score = qmax × kmax. Ranking: score descending,
 * then image id ascending.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { CentreSums } from '../analysis/anisotropy.js';
import { TopKLists } from '../analysis/topk.js';
import { loadWeight, type VitSpec } from '../arch/spec.js';
import { requireForward } from '../arch/runnable.js';
import { tokenLayout, centrePatch } from '../arch/tokens.js';
import { UserError } from '../errors.js';
import { writeFileAtomic } from '../io/fs.js';
import { preprocessFor } from '../images/preprocess.js';
import { shardRange, type Shard } from '../images/shard.js';
import { ListingSource } from '../images/source.js';
import type { ImageListing } from '../images/sources.js';
import { imageBatches, DEFAULT_BATCH } from '../runtime/batch-loop.js';
import type { Device } from '../runtime/device.js';
import { NSTATS, STAT, planScanGraph, type Embedding } from '../runtime/projections.js';
import { VitRuntime } from '../runtime/vit-runtime.js';
import { IDENTITY_KEYS, ListIndex, SCAN_SCHEMA_VERSION, ScanStore, type ScanMeta, type SkippedRow, type DoneImage } from '../store/scan-db.js';
import { readSvdSummary } from '../store/svd-run.js';
import { withRunLock } from '../store/run-lock.js';
import { VERSION } from '../version.js';
import { jobContext, type JobContext } from './job.js';
import { runSvd, writeSvd } from './svd.js';

export interface ScanOptions {
  topK?: number;
  /** Scanned layers (0-based); default all. */
  layers?: number[];
  batch?: number;
  embedding?: Embedding;
  device?: Device;
  threads?: number;
  imageColumn?: string;
  /** Decoding limit (pixels per image). */
  maxPixels?: number;
  /** `topk` rows are rewritten at least this often (seconds; heap_state is written every batch). */
  topkSyncSeconds?: number;
  /** Force the direct projection route (benchmarks, tests). */
  directOnly?: boolean;
  /** Test hook: sleep this long after each batch commit. */
  batchDelayMs?: number;
}

export interface ScanSetup {
  listing: ImageListing;
  /** The <images> arguments (recorded). */
  inputs: string[];
  /** What the user passed as <model>. */
  modelInput: string;
  /** Model flags needed to open it again (figures): revision, part, numHeads. */
  modelOptions?: { revision?: string; part?: string; numHeads?: number };
  shard?: Shard;
  /** Draw the svd figures of the run directory (default true). */
  figures?: boolean;
}

export interface ScanResult {
  outDir: string;
  dbPath: string;
  total: number;
  done: number;
  skipped: number;
  complete: boolean;
  interrupted: boolean;
  /** Images processed in this session and their rate (images/s, forward loop only). */
  session: number;
  imagesPerSec: number;
  /** Process CPU seconds (all threads) spent in this session's image loop. */
  loopCpuSeconds: number;
  /** Wall seconds of the loop spent waiting for decoded images, in the forward pass, updating the lists, committing. */
  timing: { waitImages: number; forward: number; lists: number; commit: number };
  firstSkipped: { id: number; path: string; reason: string }[];
  routes: string[];
  /** Mode columns projected directly on 'fast' layers (ill-conditioned), excluding check columns. */
  fallbackColumns: number;
  resumed: boolean;
}

/** sha256 of the scanned layers' q/k weights (float32 bytes): identifies the model on resume/merge. */
export async function weightsFingerprint(spec: VitSpec, layers: number[]): Promise<string> {
  const h = createHash('sha256');
  h.update(JSON.stringify({ d: spec.width, H: spec.heads, dh: spec.headDim, L: spec.layers, layers }));
  for (const l of layers) {
    for (const w of [spec.blocks[l].q.weight, spec.blocks[l].k.weight]) {
      const a = Float32Array.from(await loadWeight(w));
      h.update(new Uint8Array(a.buffer));
    }
  }
  return h.digest('hex');
}

const WHAT: Record<string, string> = {
  model: 'model',
  layers: '--layers',
  embedding: '--embedding',
  top_k: '--top',
  image_size: 'model input size',
  image_count: 'number of images',
  image_list_sha256: 'image list',
  modes_sha256: 'modes',
  weights_sha256: 'model weights',
  shard: '--shard',
};

function checkSame(meta: ScanMeta, want: Partial<ScanMeta>, dbPath: string): void {
  for (const k of [...IDENTITY_KEYS, 'shard'] as const) {
    if (want[k] === undefined) continue;
    const a = JSON.stringify(meta[k]);
    const b = JSON.stringify(want[k]);
    if (a !== b) {
      throw new UserError(`${dbPath}: cannot resume: the ${WHAT[k] ?? k} differs from the interrupted scan (${a.slice(0, 80)} there, ${b.slice(0, 80)} now); use the same arguments, or another --out`);
    }
  }
}

interface Resolved {
  topK: number;
  layers: number[];
  embedding: Embedding;
  shard: Shard;
  range: [number, number];
}

function resolve(spec: VitSpec, setup: ScanSetup, opts: ScanOptions): Resolved {
  const shard = setup.shard ?? { index: 0, count: 1 };
  return {
    topK: opts.topK ?? 8,
    layers: opts.layers ?? Array.from({ length: spec.layers }, (_, i) => i),
    embedding: opts.embedding ?? 'ln',
    shard,
    range: shardRange(shard, setup.listing.entries.length),
  };
}

/**
 * Opens the scan of `dir`: creates it (svd files, then run.db atomically) or, with `resume`,
 * checks that it is the same scan and that its database is sound. The caller holds the lock.
 */
export async function prepareScan(spec: VitSpec, dir: string, setup: ScanSetup, opts: ScanOptions, resume: boolean, context?: Partial<JobContext>): Promise<{ store: ScanStore; resumed: boolean }> {
  const ctx = jobContext(context);
  requireForward(spec, 'scan');
  const r = resolve(spec, setup, opts);
  const dbPath = ScanStore.pathIn(dir);
  const fingerprint = await weightsFingerprint(spec, r.layers);
  if (ScanStore.exists(dir)) {
    if (!resume) {
      let state = '';
      try {
        const s = ScanStore.open(dir);
        const p = s.progress();
        s.close();
        if (p) state = ` (${p.done + p.skipped} of ${p.total} images processed)`;
      } catch {
        // unreadable: say nothing more
      }
      throw new UserError(`${dir}: already holds a scan${state}; pass --resume to continue it, or choose another --out`);
    }
    const store = ScanStore.open(dir);
    try {
      checkSame(store.meta, { layers: r.layers, embedding: r.embedding, top_k: r.topK, image_count: setup.listing.entries.length, image_list_sha256: setup.listing.hash, weights_sha256: fingerprint, shard: r.shard }, dbPath);
      if (store.meta.model.width !== spec.width || store.meta.model.heads !== spec.heads || store.meta.model.head_dim !== spec.headDim) throw new UserError(`${dbPath}: cannot resume: the model's dimensions differ`);
      const problems = store.verify(r.topK, spec.width);
      if (problems.length) throw new UserError(`${dbPath}: cannot resume, the run database is damaged: ${problems.join('; ')}; start again in another --out`);
      readSvdSummary(dir); // the svd half of the run must be there too
    } catch (e) {
      store.close();
      throw e;
    }
    return { store, resumed: true };
  }
  if (resume) ctx.progress.note(`${dir}: no scan to resume yet; starting it`);
  const svd = await runSvd(spec, { threads: opts.threads, input: setup.modelInput, vectors: 'float32' }, ctx);
  await writeSvd(svd, dir, { figures: setup.figures });
  const { heads: H, width: d, headDim: dh } = spec;
  const U = svd.U as Float32Array;
  const V = svd.V as Float32Array;
  // [L, H, d, d_h] columns → mode-major [d_h, d] rows, the layout the graph and run.db use.
  const modeMajor = (src: Float32Array, l: number, h: number) => {
    const out = new Float32Array(dh * d);
    const base = (l * H + h) * d * dh;
    for (let i = 0; i < d; i++) for (let n = 0; n < dh; n++) out[n * d + i] = src[base + i * dh + n];
    return out;
  };
  const heads: { layer: number; head: number; sigma: Float64Array; cosine: Float64Array; relGap: Float64Array; u: Float32Array; v: Float32Array }[] = [];
  for (const l of r.layers) {
    for (let h = 0; h < H; h++) {
      const at = (l * H + h) * dh;
      heads.push({ layer: l, head: h, sigma: svd.sigma.subarray(at, at + dh), cosine: svd.cosine.subarray(at, at + dh), relGap: svd.relGap.subarray(at, at + dh), u: modeMajor(U, l, h), v: modeMajor(V, l, h) });
    }
  }
  const layout = tokenLayout(spec, spec.imageSize);
  const { pp } = preprocessFor(spec);
  const images = [];
  for (let id = r.range[0]; id < r.range[1]; id++) {
    const e = setup.listing.entries[id];
    images.push({ id, locator: e.locator, kind: e.kind, container: e.container, member: e.member });
  }
  const store = ScanStore.create(
    dir,
    {
      meta: {
        schema_version: SCAN_SCHEMA_VERSION,
        tool_version: VERSION,
        created: new Date().toISOString(),
        model: { id: spec.modelId, input: setup.modelInput, options: setup.modelOptions ?? {}, family: spec.family, layers: spec.layers, heads: H, width: d, head_dim: dh },
        layers: r.layers,
        embedding: r.embedding,
        top_k: r.topK,
        image_size: layout.imageSize,
        patch_grid: layout.grid,
        patch_start: layout.patchStart,
        centre_patch: centrePatch(layout),
        preprocess: pp,
        inputs: setup.inputs,
        image_count: setup.listing.entries.length,
        image_list_sha256: setup.listing.hash,
        shard: r.shard,
        id_ranges: [r.range],
        weights_sha256: fingerprint,
        status: 'scanning',
      },
      heads,
      images,
    },
    d,
  );
  return { store, resumed: false };
}

const NON_FINITE = 'non-finite values (NaN or infinity) in the model’s activations';

/** The image loop: every pending image of the store's shard, one committed batch at a time. */
export async function runScan(spec: VitSpec, store: ScanStore, setup: ScanSetup, opts: ScanOptions, context?: Partial<JobContext>, resumed = false): Promise<ScanResult> {
  const ctx = jobContext(context);
  const meta = store.meta;
  const { width: d, heads: H, headDim: dh } = spec;
  const C = H * dh;
  const layers = meta.layers;
  const embedding = meta.embedding;
  const vectors = store.vectors();
  const getVec = (l: number, h: number) => {
    const v = vectors.get(`${l}/${h}`);
    if (!v) throw new Error(`run.db: no vectors for layer ${l} head ${h}`);
    return v;
  };
  const plan = await planScanGraph(spec, { layers, embedding, vectors: getVec, directOnly: opts.directOnly });
  const rt = await VitRuntime.create(spec, { outputs: {}, extend: plan.extend, ...plan.graph, device: opts.device, threads: opts.threads });
  const { pp, options: ppOpts } = preprocessFor(spec);
  const source = new ListingSource(setup.listing, pp, ppOpts, { imageColumn: opts.imageColumn, decode: { maxPixels: opts.maxPixels } });
  try {
    const fellBack = plan.fallback.filter((f) => !f.check).length;
    if (plan.routes.includes('direct') && embedding === 'ln' && !opts.directOnly) ctx.progress.note(`scan: projecting ${plan.routes.filter((x) => x === 'direct').length} layer(s) directly (slower route)`);
    if (fellBack) ctx.progress.note(`scan: ${fellBack} ill-conditioned mode column(s) projected directly`);
    store.setMeta({ routes: plan.routes });

    const idx = new ListIndex(layers, H, dh);
    const lists = new TopKLists(idx.size, meta.top_k);
    store.loadLists(lists, idx);
    // `topk` rows may lag heap_state after a kill: rewrite them all at the next sync.
    if (resumed) lists.markAllDirty(1);
    const centre = new CentreSums(layers.length, d);
    store.loadCentre(centre, layers);
    const prog0 = store.progress();
    const pending = store.pendingIds();
    if (resumed) ctx.progress.note(`scan: resuming: ${prog0.done + prog0.skipped} of ${prog0.total} images already processed, ${pending.length} to go`);

    let done = prog0.done;
    let skippedCount = prog0.skipped;
    const sessionStart = performance.now();
    const cpuStart = process.cpuUsage();
    let session = 0;
    const syncMs = (opts.topkSyncSeconds ?? 120) * 1000;
    let lastSync = performance.now();
    const R = layers.length * 2 * C;
    const timing = { waitImages: 0, forward: 0, lists: 0, commit: 0 };
    let tMark = performance.now();
    const lap = (k: keyof typeof timing) => {
      const now = performance.now();
      timing[k] += (now - tMark) / 1000;
      tMark = now;
    };
    let interrupted = false;
    ctx.progress.start('scan', prog0.total, { done: prog0.done + prog0.skipped });
    try {
      const batches = imageBatches(source, { ids: pending, batch: opts.batch ?? DEFAULT_BATCH, progress: ctx.progress });
      tMark = performance.now();
      for await (const b of batches) {
        lap('waitImages');
        const nonFiniteIds = new Set<number>();
        if (b.items.length) {
          const r = await rt.run(b.pixels, b.items.length);
          lap('forward');
          const S = r.extra.scan_stats.data;
          const F = r.extra.scan_fallback?.data;
          const Cn = r.extra.scan_centre.data;
          const Fc = plan.fallback.length;
          b.items.forEach((item, i) => {
            const base = i * R * NSTATS;
            if (F) {
              for (let j = 0; j < Fc; j++) {
                const fc = plan.fallback[j];
                const src = (i * Fc + j) * NSTATS;
                const dst = base + ((fc.li * 2 + fc.side) * C + fc.col) * NSTATS;
                if (fc.check) {
                  const scale = Math.max(Math.abs(F[src + STAT.max]), Math.abs(F[src + STAT.min]), 1e-6);
                  if (!(Math.abs(S[dst + STAT.max] - F[src + STAT.max]) <= 1e-3 * scale && Math.abs(S[dst + STAT.min] - F[src + STAT.min]) <= 1e-3 * scale) && Number.isFinite(F[src + STAT.max])) {
                    throw new Error(
                      `scan: the fast projection route disagrees with the direct projection (layer ${layers[fc.li]}, column ${fc.col}: ${S[dst + STAT.max]} vs ${F[src + STAT.max]}); the runtime graph's conventions changed?`,
                    );
                  }
                }
                for (let k = 0; k < NSTATS; k++) S[dst + k] = F[src + k];
              }
            }
            // A NaN or infinity anywhere in a column shows in its mean (and max/min).
            for (let k = base; k < base + R * NSTATS; k += NSTATS) {
              if (!Number.isFinite(S[k + STAT.mean]) || !Number.isFinite(S[k + STAT.max]) || !Number.isFinite(S[k + STAT.min])) {
                nonFiniteIds.add(item.id);
                return;
              }
            }
            const id = item.id;
            const nt = plan.topCount;
            // Means of the 5 largest / smallest values, summed in rank order (deterministic).
            const mean5 = (at: number) => {
              let s = 0;
              for (let j = 0; j < nt; j++) s += S[at + j];
              return s / nt;
            };
            for (let li = 0; li < layers.length; li++) {
              for (let c = 0; c < C; c++) {
                const q = base + (li * 2 * C + c) * NSTATS;
                const k = base + ((li * 2 + 1) * C + c) * NSTATS;
                const hi = (li * C + c) * 2; // == idx.index(li, h, n, +1) with c = h·dh + n
                const qmax = S[q + STAT.max];
                const kmax = S[k + STAT.max];
                const pos = qmax * kmax;
                if (lists.wouldEnter(hi, pos, id)) {
                  lists.offer(hi, pos, id, qmax, kmax, S[q + STAT.argmax], S[k + STAT.argmax], S[q + STAT.mean], S[k + STAT.mean], mean5(q + STAT.top), mean5(k + STAT.top));
                }
                const qneg = -S[q + STAT.min];
                const kneg = -S[k + STAT.min];
                const neg = qneg * kneg;
                if (lists.wouldEnter(hi + 1, neg, id)) {
                  lists.offer(hi + 1, neg, id, qneg, kneg, S[q + STAT.argmin], S[k + STAT.argmin], -S[q + STAT.mean], -S[k + STAT.mean], -mean5(q + STAT.bottom), -mean5(k + STAT.bottom));
                }
              }
              centre.add(li, Cn, (i * layers.length + li) * d);
            }
          });
        }
        lap('lists');
        const ok: DoneImage[] = [];
        const skipped: SkippedRow[] = b.skipped.map((s) => ({ id: s.id, bytes: s.info?.bytes ?? null, sha256: s.info?.sha256 ?? null, name: s.info?.name ?? null, reason: s.reason }));
        for (const it of b.items) {
          const row = { id: it.id, bytes: it.info.bytes, sha256: it.info.sha256, width: it.info.width, height: it.info.height, name: it.info.name };
          if (nonFiniteIds.has(it.id)) skipped.push({ ...row, reason: NON_FINITE });
          else ok.push(row);
        }
        const syncTopk = performance.now() - lastSync >= syncMs;
        store.commit({ done: ok, skipped, lists, index: idx, centre, syncTopk, elapsedSeconds: prog0.elapsed_s + (performance.now() - sessionStart) / 1000 });
        if (syncTopk) lastSync = performance.now();
        done += ok.length;
        skippedCount += skipped.length;
        session += b.items.length + b.skipped.length;
        lap('commit');
        if (opts.batchDelayMs) await new Promise((res) => setTimeout(res, opts.batchDelayMs));
        if (ctx.stop?.stop) {
          interrupted = done + skippedCount < prog0.total;
          break;
        }
        tMark = performance.now();
      }
    } finally {
      ctx.progress.end();
    }
    const seconds = (performance.now() - sessionStart) / 1000;
    const cpu = process.cpuUsage(cpuStart);
    const { complete } = store.finish(lists, idx);
    return {
      outDir: store.dir,
      dbPath: store.path,
      total: prog0.total,
      done,
      skipped: skippedCount,
      complete,
      interrupted,
      session,
      imagesPerSec: seconds > 0 ? session / seconds : 0,
      loopCpuSeconds: (cpu.user + cpu.system) / 1e6,
      timing,
      firstSkipped: store.skippedRows(20),
      routes: plan.routes,
      fallbackColumns: plan.fallback.filter((f) => !f.check).length,
      resumed,
    };
  } finally {
    source.close();
    await rt.close();
  }
}

/** Adds the scan's section to summary.json (anisotropy and relative cosines). Atomic rewrite. */
export function writeScanSummary(outDir: string, scan: { meta: ScanMeta; anisotropy: { layer: number; value: number | null; n: number }[]; progress: { total: number; done: number; skipped: number } }): void {
  const summary = readSvdSummary(outDir);
  const byLayer = new Map(scan.anisotropy.map((r) => [r.layer, r]));
  const meta = scan.meta;
  summary.scan = {
    database: 'run.db',
    status: meta.status,
    embedding: meta.embedding,
    top_k: meta.top_k,
    layers: meta.layers,
    shard: meta.shard,
    images: { total: scan.progress.total, done: scan.progress.done, skipped: scan.progress.skipped },
    anisotropy_definition:
      'per layer, the mean cosine between the centre-patch embeddings (same embedding as the scan) of different images; relative cosine = cosine − anisotropy (docs/method.md §3)',
    layers_detail: summary.layers
      .filter((l) => byLayer.has(l.layer))
      .map((l) => {
        const a = byLayer.get(l.layer)!;
        const v = a.value;
        return {
          layer: l.layer,
          anisotropy: v,
          images: a.n,
          mean_weighted_cosine: l.mean_weighted_cosine,
          relative_mean_weighted_cosine: v === null ? null : l.mean_weighted_cosine - v,
          relative_weighted_cosine: l.heads.map((h) => (v === null ? null : h.weighted_cosine - v)),
        };
      }),
  };
  writeFileAtomic(join(outDir, 'summary.json'), JSON.stringify(summary, null, 1) + '\n');
}

/**
 * The whole scan into `dir` as the CLI runs it (and library callers may): holding the run
 * directory's lock, prepare (create or verify), the image loop, then summary.json's scan section.
 */
export async function scanIntoDir(spec: VitSpec, dir: string, setup: ScanSetup, opts: ScanOptions & { resume?: boolean }, context?: Partial<JobContext>): Promise<ScanResult> {
  return withRunLock(dir, 'scan', async () => {
    const { store, resumed } = await prepareScan(spec, dir, setup, opts, !!opts.resume, context);
    try {
      const res = await runScan(spec, store, setup, opts, context, resumed);
      if (res.complete) writeScanSummary(dir, store.state());
      return res;
    } finally {
      store.close();
    }
  });
}
