/**
 * `scan` as a library call (METHOD.md §5): streams images through the model, keeps for every
 * (layer, head, mode, sign) the top-k images by S = max_t Q_n(t) × max_t K_n(t), and the
 * anisotropy baseline per layer, in the run database `RUN/run.db` (one SQLite transaction per
 * batch; see store/scan-db.ts). Memory is bounded by the batch and by lists × k, whatever the
 * number of images.
 *
 * Definitions (docs/scan.md): for sign s = ±1, Q(t) = s·x_t·u_n, K(t) = s·x_t·v_n over the patch
 * tokens t (special tokens excluded), x = LN output (default) or residual stream. qmax =
 * max_t Q(t), its patch index q_token (lowest index on ties), q_mean = mean_t Q(t), q_top5 =
 * mean of the 5 largest Q(t); likewise for K; score = qmax × kmax. Ranking: score descending,
 * then image id ascending.
 */
import { closeSync, existsSync, openSync, readFileSync, readSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import type Database from 'better-sqlite3';
import sharp from 'sharp';
import { loadWeight, type VitSpec } from '../arch/spec.js';
import { UserError } from '../errors.js';
import { preprocessFor, preprocessImage } from '../images/preprocess.js';
import { readNpyHeader } from '../io/npy.js';
import type { Device } from '../runtime/device.js';
import { tokenLayout } from '../arch/tokens.js';
import { VitRuntime } from '../runtime/vit-runtime.js';
import { runSvd } from './svd.js';
import {
  ListIndex,
  SCAN_SCHEMA_VERSION,
  SCHEMA_SQL,
  IDENTITY_KEYS,
  loadHeapState,
  openScanDb,
  readMeta,
  writeHeapState,
  writeMeta,
  writeTopkRows,
  type ScanMeta,
} from '../store/scan-db.js';
import { VERSION } from '../version.js';
import { NSTATS, STAT, planScanGraph, type Embedding, type HeadVectors } from '../runtime/projections.js';
import { shardRange, type Shard } from '../images/shard.js';
import { ImageReader, sha256, type ImageListing } from '../images/sources.js';
import { TopKLists } from '../analysis/topk.js';
import { ImageDecodeError, decodeImageBytes } from '../images/decode.js';
import { CentreSums } from '../analysis/anisotropy.js';
import { readSvdSummary, type SvdSummary } from '../store/svd-run.js';

export interface ScanProgress {
  /** Images of this shard processed (done + skipped), including earlier sessions. */
  processed: number;
  skipped: number;
  /** Images of this shard. */
  total: number;
  /** Processed in this session, and its seconds (for the rate). */
  session: number;
  sessionSeconds: number;
}

export interface ScanOptions {
  outDir: string;
  listing: ImageListing;
  /** The <images> arguments (recorded). */
  inputs: string[];
  /** What the user passed as <model>. */
  modelInput: string;
  /** Model flags needed to open it again (figures): revision, part, numHeads. */
  modelOptions?: { revision?: string; part?: string; numHeads?: number };
  topK?: number;
  /** Scanned layers (0-based); default all. */
  layers?: number[];
  batch?: number;
  resume?: boolean;
  shard?: Shard;
  embedding?: Embedding;
  device?: Device;
  threads?: number;
  imageColumn?: string;
  onProgress?: (p: ScanProgress) => void;
  /** Called once with notes for the user (route fallbacks, resume state). */
  onNote?: (msg: string) => void;
  /** `topk` rows are rewritten at least this often (seconds; heap_state is written every batch). */
  topkSyncSeconds?: number;
  /** Set `.stop = true` to end after the batch in flight (SIGINT/SIGTERM). */
  control?: { stop: boolean };
  /** Force the direct projection route (benchmarks, tests). */
  directOnly?: boolean;
  /** Test hook: sleep this long after each batch commit. */
  batchDelayMs?: number;
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

const DB_NAME = 'run.db';

function vectorsHash(db: Database.Database): string {
  const h = createHash('sha256');
  for (const r of db.prepare('SELECT layer, head, u, v FROM vectors ORDER BY layer, head').iterate() as IterableIterator<{ layer: number; head: number; u: Buffer; v: Buffer }>) {
    h.update(`${r.layer}/${r.head}\n`);
    h.update(r.u);
    h.update(r.v);
  }
  return h.digest('hex');
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

/** Reads head (l, h) of U.npy / V.npy ([L, H, d, d_h], f4 or f8) as mode-major float32 [d_h, d]. */
function readHeadVectors(path: string, L: number, H: number, d: number, dh: number, l: number, h: number): Float32Array {
  const hdr = readNpyHeader(path);
  if (hdr.shape.join() !== [L, H, d, dh].join()) throw new Error(`${path}: shape [${hdr.shape}], expected [${L}, ${H}, ${d}, ${dh}]`);
  const item = hdr.dtype === '<f8' ? 8 : 4;
  const buf = Buffer.alloc(d * dh * item);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, buf, 0, buf.length, hdr.dataOffset + (l * H + h) * d * dh * item);
  } finally {
    closeSync(fd);
  }
  const out = new Float32Array(dh * d);
  for (let i = 0; i < d; i++)
    for (let n = 0; n < dh; n++) out[n * d + i] = item === 8 ? buf.readDoubleLE((i * dh + n) * 8) : buf.readFloatLE((i * dh + n) * 4);
  return out;
}

function f32Blob(a: Float32Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

function blobF32(b: Buffer): Float32Array {
  const out = new Float32Array(b.length / 4);
  new Uint8Array(out.buffer).set(b);
  return out;
}

interface SetupInfo {
  layers: number[];
  embedding: Embedding;
  topK: number;
  shard: Shard;
  range: [number, number];
}

/** Creates run.db (through a temporary file renamed at the end, so a half-made database never exists). */
async function createRun(spec: VitSpec, o: ScanOptions, s: SetupInfo, weightsSha: string): Promise<void> {
  const out = o.outDir;
  const summary: SvdSummary = await runSvd(spec, { outDir: out, input: o.modelInput, threads: o.threads });
  const { layers: L, heads: H, width: d, headDim: dh } = spec;
  const tmp = join(out, `${DB_NAME}.partial`);
  for (const f of [tmp, `${tmp}-wal`, `${tmp}-shm`]) rmSync(f, { force: true });
  const db = openScanDb(tmp, { create: true });
  try {
    const layout = tokenLayout(spec, spec.imageSize);
    const { pp } = preprocessFor(spec);
    db.exec(SCHEMA_SQL);
    db.transaction(() => {
      const vec = db.prepare('INSERT INTO vectors (layer, head, u, v) VALUES (?, ?, ?, ?)');
      const mode = db.prepare('INSERT INTO modes (layer, head, mode, sigma, cosine, rel_gap) VALUES (?, ?, ?, ?, ?, ?)');
      for (const l of s.layers) {
        const ls = summary.layers.find((x) => x.layer === l)!;
        for (let h = 0; h < H; h++) {
          const u = readHeadVectors(join(out, 'U.npy'), L, H, d, dh, l, h);
          const v = readHeadVectors(join(out, 'V.npy'), L, H, d, dh, l, h);
          vec.run(l, h, f32Blob(u), f32Blob(v));
          const hs = ls.heads.find((x) => x.head === h)!;
          for (let n = 0; n < dh; n++) mode.run(l, h, n, hs.sigma[n], hs.cosine[n], hs.rel_gap[n]);
        }
      }
      const img = db.prepare('INSERT INTO images (id, path, source, container, member) VALUES (?, ?, ?, ?, ?)');
      for (let id = s.range[0]; id < s.range[1]; id++) {
        const e = o.listing.entries[id];
        img.run(id, e.locator, e.kind, e.container, e.member);
      }
      const an = db.prepare('INSERT INTO anisotropy (layer, value, n, sums) VALUES (?, NULL, 0, ?)');
      for (const l of s.layers) an.run(l, Buffer.alloc(d * 8));
      db.prepare('INSERT INTO progress (id, total, done, skipped, batches, elapsed_s, updated) VALUES (1, ?, 0, 0, 0, 0, ?)').run(s.range[1] - s.range[0], new Date().toISOString());
      const meta: ScanMeta = {
        schema_version: SCAN_SCHEMA_VERSION,
        tool_version: VERSION,
        created: new Date().toISOString(),
        model: { id: spec.modelId, input: o.modelInput, options: o.modelOptions ?? {}, family: spec.family, layers: L, heads: H, width: d, head_dim: dh },
        layers: s.layers,
        embedding: s.embedding,
        top_k: s.topK,
        image_size: layout.imageSize,
        patch_grid: layout.grid,
        patch_start: layout.patchStart,
        centre_patch: Math.floor(layout.grid[0] / 2) * layout.grid[1] + Math.floor(layout.grid[1] / 2),
        preprocess: pp,
        inputs: o.inputs,
        image_count: o.listing.entries.length,
        image_list_sha256: o.listing.hash,
        shard: s.shard,
        id_ranges: [s.range],
        modes_sha256: '',
        weights_sha256: weightsSha,
        status: 'scanning',
      };
      writeMeta(db, meta);
    })();
    writeMeta(db, { modes_sha256: vectorsHash(db) });
  } finally {
    db.close();
  }
  renameSync(tmp, join(out, DB_NAME));
}

function checkSame(meta: ScanMeta, want: Partial<ScanMeta>, dbPath: string): void {
  for (const k of [...IDENTITY_KEYS, 'shard'] as const) {
    if (want[k] === undefined) continue;
    const a = JSON.stringify(meta[k]);
    const b = JSON.stringify(want[k]);
    if (a !== b) {
      const what: Record<string, string> = {
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
      throw new UserError(`${dbPath}: cannot resume: the ${what[k] ?? k} differs from the interrupted scan (${a.slice(0, 80)} there, ${b.slice(0, 80)} now); use the same arguments, or another --out`);
    }
  }
}

export function loadVectors(db: Database.Database): Map<string, HeadVectors> {
  const m = new Map<string, HeadVectors>();
  for (const r of db.prepare('SELECT layer, head, u, v FROM vectors').iterate() as IterableIterator<{ layer: number; head: number; u: Buffer; v: Buffer }>) {
    m.set(`${r.layer}/${r.head}`, { u: blobF32(r.u), v: blobF32(r.v) });
  }
  return m;
}

interface Prepared {
  pixels: Float32Array;
  ok: { id: number; bytes: number; sha: string; width: number; height: number; name: string | null }[];
  skipped: { id: number; bytes: number | null; sha: string | null; name: string | null; reason: string }[];
}

export async function runScan(spec: VitSpec, o: ScanOptions): Promise<ScanResult> {
  const out = o.outDir;
  const dbPath = join(out, DB_NAME);
  const topK = o.topK ?? 8;
  const batch = o.batch ?? 8;
  const embedding = o.embedding ?? 'ln';
  const shard = o.shard ?? { index: 0, count: 1 };
  const layers = o.layers ?? Array.from({ length: spec.layers }, (_, i) => i);
  const n = o.listing.entries.length;
  const range = shardRange(shard, n);
  const { width: d, heads: H, headDim: dh } = spec;
  const C = H * dh;

  if (existsSync(dbPath) && !o.resume) {
    let state = '';
    try {
      const db = openScanDb(dbPath, { readonly: true });
      const p = db.prepare('SELECT done, skipped, total FROM progress').get() as { done: number; skipped: number; total: number } | undefined;
      db.close();
      if (p) state = ` (${p.done + p.skipped} of ${p.total} images processed)`;
    } catch {
      // unreadable: say nothing more
    }
    throw new UserError(`${out}: already holds a scan${state}; pass --resume to continue it, or choose another --out`);
  }
  const fingerprint = await weightsFingerprint(spec, layers);
  const setup: SetupInfo = { layers, embedding, topK, shard, range };
  let resumed = false;
  if (!existsSync(dbPath)) {
    await createRun(spec, o, setup, fingerprint);
  } else {
    resumed = true;
    if (!existsSync(join(out, 'summary.json'))) throw new UserError(`${out}: run.db is there but summary.json is missing; the run directory is damaged, use another --out`);
  }
  // Every image is decoded once: libvips' operation cache would only grow the resident memory.
  sharp.cache(false);
  const db = openScanDb(dbPath);
  let rt: VitRuntime | null = null;
  const reader = new ImageReader({ imageColumn: o.imageColumn });
  try {
    const meta = readMeta(db, dbPath);
    checkSame(meta, { layers, embedding, top_k: topK, image_count: n, image_list_sha256: o.listing.hash, weights_sha256: fingerprint, shard }, dbPath);
    if (meta.model.width !== d || meta.model.heads !== H || meta.model.head_dim !== dh) throw new UserError(`${dbPath}: cannot resume: the model's dimensions differ`);
    const vectors = loadVectors(db);
    const getVec = (l: number, h: number) => {
      const v = vectors.get(`${l}/${h}`);
      if (!v) throw new Error(`run.db: no vectors for layer ${l} head ${h}`);
      return v;
    };
    const plan = await planScanGraph(spec, { layers, embedding, vectors: getVec, directOnly: o.directOnly });
    rt = await VitRuntime.create(spec, { outputs: {}, extend: plan.extend, device: o.device, threads: o.threads });
    const fellBack = plan.fallback.filter((f) => !f.check).length;
    if (plan.routes.includes('direct') && embedding === 'ln' && !o.directOnly) o.onNote?.(`scan: projecting ${plan.routes.filter((r) => r === 'direct').length} layer(s) directly (slower route)`);
    if (fellBack) o.onNote?.(`scan: ${fellBack} ill-conditioned mode column(s) projected directly`);
    writeMeta(db, { routes: plan.routes });

    const idx = new ListIndex(layers, H, dh);
    const lists = new TopKLists(idx.size, topK);
    loadHeapState(db, lists, idx);
    // `topk` rows may lag heap_state after a kill: rewrite them all at the next sync.
    if (resumed) lists.markAllDirty(1);
    const centre = new CentreSums(layers.length, d);
    for (const r of db.prepare('SELECT layer, n, sums FROM anisotropy').all() as { layer: number; n: number; sums: Buffer }[]) {
      const li = layers.indexOf(r.layer);
      if (li >= 0) centre.load(li, r.n, r.sums);
    }
    const prog0 = db.prepare('SELECT done, skipped, total, batches, elapsed_s FROM progress').get() as { done: number; skipped: number; total: number; batches: number; elapsed_s: number };
    const pending = (db.prepare("SELECT id FROM images WHERE status = 'pending' ORDER BY id").all() as { id: number }[]).map((r) => r.id);
    if (resumed) o.onNote?.(`scan: resuming: ${prog0.done + prog0.skipped} of ${prog0.total} images already processed, ${pending.length} to go`);

    const { pp, options: ppOpts } = preprocessFor(spec);
    const [ih, iw] = rt.layout.imageSize;
    const per = 3 * ih * iw;
    const prepare = async (ids: number[]): Promise<Prepared> => {
      // Each image is preprocessed straight into its slot; failed slots are squeezed out.
      const pixels = new Float32Array(ids.length * per);
      const ok: Prepared['ok'] = [];
      const skipped: Prepared['skipped'] = [];
      const results = await Promise.all(
        ids.map(async (id, i) => {
          const e = o.listing.entries[id];
          let bytes: Uint8Array | null = null;
          let name: string | null = null;
          try {
            const r = await reader.read(e);
            bytes = r.bytes;
            name = r.name;
          } catch (err) {
            const code = (err as NodeJS.ErrnoException).code;
            return { id, bytes: null, sha: null, name, reason: `cannot read${code ? ` (${code})` : `: ${(err as Error).message.split('\n')[0]}`}` };
          }
          const sha = sha256(bytes);
          try {
            const img = await decodeImageBytes(bytes);
            preprocessImage(img, pp, ppOpts, pixels, i * per);
            return { id, bytes: bytes.length, sha, width: img.width, height: img.height, name };
          } catch (err) {
            if (err instanceof ImageDecodeError) return { id, bytes: bytes.length, sha, name, reason: err.message };
            return { id, bytes: bytes.length, sha, name, reason: `cannot preprocess (${(err as Error).message.split('\n')[0]})` };
          }
        }),
      );
      let j = 0;
      results.forEach((r, i) => {
        if ('reason' in r) skipped.push(r as Prepared['skipped'][number]);
        else {
          if (j !== i) pixels.copyWithin(j * per, i * per, (i + 1) * per);
          ok.push(r as Prepared['ok'][number]);
          j++;
        }
      });
      return { pixels: j === ids.length ? pixels : pixels.subarray(0, j * per), ok, skipped };
    };

    const updImg = db.prepare('UPDATE images SET bytes = ?, sha256 = ?, width = ?, height = ?, name = ?, status = ?, reason = ? WHERE id = ?');
    const updAn = db.prepare('UPDATE anisotropy SET value = ?, n = ?, sums = ? WHERE layer = ?');
    const updProg = db.prepare('UPDATE progress SET done = ?, skipped = ?, batches = ?, elapsed_s = ?, updated = ? WHERE id = 1');
    let done = prog0.done;
    let skippedCount = prog0.skipped;
    let batches = prog0.batches;
    const sessionStart = performance.now();
    const cpuStart = process.cpuUsage();
    let session = 0;
    const syncMs = (o.topkSyncSeconds ?? 120) * 1000;
    let lastSync = performance.now();
    const R = layers.length * 2 * C;
    const nonFinite = 'non-finite values (NaN or infinity) in the model’s activations';

    const chunks: number[][] = [];
    for (let i = 0; i < pending.length; i += batch) chunks.push(pending.slice(i, i + batch));
    let next: Promise<Prepared> | null = chunks.length ? prepare(chunks[0]) : null;
    next?.catch(() => undefined);
    let interrupted = false;
    const timing = { waitImages: 0, forward: 0, lists: 0, commit: 0 };
    let tMark = performance.now();
    const lap = (k: keyof typeof timing) => {
      const now = performance.now();
      timing[k] += (now - tMark) / 1000;
      tMark = now;
    };
    for (let bi = 0; bi < chunks.length; bi++) {
      tMark = performance.now();
      const cur = await next!;
      lap('waitImages');
      next = bi + 1 < chunks.length ? prepare(chunks[bi + 1]) : null;
      next?.catch(() => undefined);
      const nonFiniteIds = new Set<number>();
      if (cur.ok.length) {
        const r = await rt.run(cur.pixels, cur.ok.length);
        lap('forward');
        const S = r.extra.scan_stats.data;
        const F = r.extra.scan_fallback?.data;
        const Cn = r.extra.scan_centre.data;
        const Fc = plan.fallback.length;
        cur.ok.forEach((img, i) => {
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
              nonFiniteIds.add(img.id);
              return;
            }
          }
          const id = img.id;
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
      const now = performance.now();
      const syncTopk = now - lastSync >= syncMs;
      db.transaction(() => {
        for (const img of cur.ok) {
          if (nonFiniteIds.has(img.id)) {
            updImg.run(img.bytes, img.sha, img.width, img.height, img.name, 'skipped', nonFinite, img.id);
            skippedCount++;
          } else {
            updImg.run(img.bytes, img.sha, img.width, img.height, img.name, 'done', null, img.id);
            done++;
          }
        }
        for (const s of cur.skipped) {
          updImg.run(s.bytes, s.sha, null, null, s.name, 'skipped', s.reason, s.id);
          skippedCount++;
        }
        writeHeapState(db, lists, idx, lists.takeDirty(0));
        centre.flush();
        layers.forEach((l, li) => updAn.run(centre.value(li), centre.n[li], centre.blob(li), l));
        if (syncTopk) writeTopkRows(db, lists, idx, lists.takeDirty(1));
        batches++;
        updProg.run(done, skippedCount, batches, prog0.elapsed_s + (performance.now() - sessionStart) / 1000, new Date().toISOString());
      })();
      if (syncTopk) lastSync = performance.now();
      lap('commit');
      session += cur.ok.length + cur.skipped.length;
      o.onProgress?.({ processed: done + skippedCount, skipped: skippedCount, total: prog0.total, session, sessionSeconds: (performance.now() - sessionStart) / 1000 });
      if (o.batchDelayMs) await new Promise((r) => setTimeout(r, o.batchDelayMs));
      if (o.control?.stop) {
        interrupted = bi + 1 < chunks.length;
        break;
      }
    }
    const seconds = (performance.now() - sessionStart) / 1000;
    const cpu = process.cpuUsage(cpuStart);
    const left = (db.prepare("SELECT COUNT(*) AS c FROM images WHERE status = 'pending'").get() as { c: number }).c;
    const complete = left === 0;
    db.transaction(() => {
      writeTopkRows(db, lists, idx, lists.takeDirty(1));
      if (complete) writeMeta(db, { status: 'complete' });
    })();
    db.pragma('wal_checkpoint(TRUNCATE)');
    const firstSkipped = db.prepare("SELECT id, path, reason FROM images WHERE status = 'skipped' ORDER BY id LIMIT 20").all() as ScanResult['firstSkipped'];
    if (complete) writeScanSummary(out, db);
    return {
      outDir: out,
      dbPath,
      total: prog0.total,
      done,
      skipped: skippedCount,
      complete,
      interrupted,
      session,
      imagesPerSec: seconds > 0 ? session / seconds : 0,
      loopCpuSeconds: (cpu.user + cpu.system) / 1e6,
      timing,
      firstSkipped,
      routes: plan.routes,
      fallbackColumns: fellBack,
      resumed,
    };
  } finally {
    reader.close();
    await rt?.close();
    db.close();
  }
}

/** Adds the scan's section to summary.json (anisotropy and relative cosines). Atomic rewrite. */
export function writeScanSummary(outDir: string, db: Database.Database): void {
  const meta = readMeta(db);
  const summary = readSvdSummary(outDir) as SvdSummary & { scan?: unknown };
  const an = db.prepare('SELECT layer, value, n FROM anisotropy ORDER BY layer').all() as { layer: number; value: number | null; n: number }[];
  const prog = db.prepare('SELECT total, done, skipped FROM progress').get() as { total: number; done: number; skipped: number };
  const byLayer = new Map(an.map((r) => [r.layer, r]));
  summary.scan = {
    database: DB_NAME,
    status: meta.status,
    embedding: meta.embedding,
    top_k: meta.top_k,
    layers: meta.layers,
    shard: meta.shard,
    images: { total: prog.total, done: prog.done, skipped: prog.skipped },
    anisotropy_definition:
      'per layer, the mean cosine between the centre-patch embeddings (same embedding as the scan) of different images; relative cosine = cosine − anisotropy (METHOD.md §3)',
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
  const p = join(outDir, 'summary.json');
  writeFileSync(`${p}.partial`, JSON.stringify(summary, null, 1) + '\n');
  renameSync(`${p}.partial`, p);
}

/** The scan section of a run's summary.json, if the run has one. */
export function readScanSection(outDir: string): unknown {
  try {
    return (JSON.parse(readFileSync(join(outDir, 'summary.json'), 'utf8')) as { scan?: unknown }).scan ?? null;
  } catch {
    return null;
  }
}
