/**
 * The weight-only analysis of a whole model: singular modes of every head of every block
 * (docs/method.md §2–3), streamed layer by layer.
 *
 * - Reads only what the analysis needs: each block's query weight, key weight and query bias
 *   (through `loadWeight`, so fused qkv tensors are read by row range). Value, output and MLP
 *   weights are never read.
 * - Heads: query head h owns rows h·d_h..(h+1)·d_h. Grouped-query attention (kvHeads < heads):
 *   query head h uses key head ⌊h / (heads/kvHeads)⌋.
 * - Streaming: layer results go to `onLayer` in layer order and are not retained here (only
 *   the small per-head scalars are returned), so memory holds at most two layers' inputs and
 *   vectors at once (a ViT-H/14 would need 32·16·1280·80·2 doubles ≈ 840 MB otherwise).
 * - Parallelism: `threads` compute threads = the calling thread plus threads−1 worker_threads,
 *   one job per head, dynamically dispatched (each worker holds up to two jobs so it never
 *   waits while the calling thread is busy with a head of its own; the calling thread runs a
 *   head per event-loop turn, so reading the next layer proceeds in between). Using the
 *   calling thread instead of an extra worker matters on small machines: a worker costs
 *   start-up time and a third busy thread would compete for two cores. A layer's q/k weights
 *   and q bias are read straight into SharedArrayBuffers that every thread reads its head's
 *   rows from (no per-head copies; two buffers per tensor, reused layer after layer, since
 *   fresh memory is what costs on small machines); the vectors go straight into the caller's
 *   arrays (`vectors`) or come back as transferred ArrayBuffers (no copies of the d_h×d
 *   vectors).
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { loadWeightInto, type VitSpec } from '../arch/spec.js';
import type { FloatArray } from '../checkpoint/types.js';
import { kernelModule } from '../linalg/kernels.js';
import { headModes } from './modes.js';
import { SharedRing, asShared, jobVectors, sliceView, type HeadJob, type HeadReply, type SharedSlice } from './shared-slice.js';
import type { HeadModes } from './types.js';

export interface AnalyzeModelOptions {
  /** Block indices to analyse (0-based), in the order wanted; default all. */
  layers?: number[];
  /**
   * Compute threads (the calling thread plus threads−1 workers); default
   * os.availableParallelism() capped at 8. 1 computes on the calling thread only.
   */
  threads?: number;
  /** Receives each layer's heads (ordered by head) in layer order; awaited before the layer is released. */
  onLayer?: (layer: number, heads: HeadModes[]) => void | Promise<void>;
  /**
   * Where the singular vectors go. Default: each HeadModes' `U`, `V` ([d_h, d] rows). `false`:
   * not kept (HeadModes' `U`, `V` empty). `{ U, V }`: arrays of [blocks, heads, d, d_h] (the
   * layout of a run's U.npy: column n of block (l, h) is u_n), filled as heads finish; on
   * SharedArrayBuffers every thread writes its heads there itself, otherwise the calling
   * thread copies them. Either spares the d_h×d arrays of every head (fresh memory is what
   * costs on small machines: 2 × 420 MB for a ViT-H).
   */
  vectors?: { U: Float32Array | Float64Array; V: Float32Array | Float64Array } | false;
}

/** HeadModes without the d-length vectors (what `analyzeModel` keeps and returns). */
export type HeadSummary = Omit<HeadModes, 'U' | 'V' | 'salience'>;

export interface LayerModes {
  layer: number;
  heads: HeadSummary[];
}

export const MAX_THREADS = 8;

interface LayerInput {
  layer: number;
  wq: FloatArray;
  wk: FloatArray;
  bq: FloatArray | null;
}

function dims(spec: VitSpec) {
  const d = spec.width, dh = spec.headDim, H = spec.heads, KV = spec.kvHeads || spec.heads;
  if (!(d > 0 && dh > 0 && H > 0)) throw new RangeError(`${spec.modelId}: bad dimensions width=${d} headDim=${dh} heads=${H}`);
  if (H % KV) throw new RangeError(`${spec.modelId}: ${H} query heads are not a multiple of ${KV} key heads`);
  return { d, dh, H, KV, group: H / KV };
}

/** Float32 buffers to read a layer's weights into (reused layer after layer), by tensor and length. */
type Scratch = (which: 'wq' | 'wk' | 'bq', length: number) => Float32Array;

/** Plain buffers reused from layer to layer (the single-thread path). */
function reusedScratch(): Scratch {
  const bufs: Record<string, Float32Array> = {};
  return (which, length) => {
    if (!(bufs[which]?.length >= length)) bufs[which] = new Float32Array(length);
    return bufs[which].subarray(0, length);
  };
}

async function loadLayer(spec: VitSpec, l: number, scratch: Scratch): Promise<LayerInput> {
  const { d, dh, H, KV } = dims(spec);
  const blk = spec.blocks[l];
  const [wq, wk, bq] = await Promise.all([
    loadWeightInto(blk.q.weight, scratch('wq', H * dh * d)),
    loadWeightInto(blk.k.weight, scratch('wk', KV * dh * d)),
    blk.q.bias ? loadWeightInto(blk.q.bias, scratch('bq', H * dh)) : Promise.resolve(null),
  ]);
  const where = `${spec.modelId} block ${l}`;
  if (wq.length !== H * dh * d) throw new RangeError(`${where}: query weight has ${wq.length} entries, expected ${H}·${dh}·${d}`);
  if (wk.length !== KV * dh * d) throw new RangeError(`${where}: key weight has ${wk.length} entries, expected ${KV}·${dh}·${d}`);
  if (bq && bq.length !== H * dh) throw new RangeError(`${where}: query bias has ${bq.length} entries, expected ${H}·${dh}`);
  return { layer: l, wq, wk, bq };
}

/** Element ranges [offset, length] of head h's rows: query rows, its key head's rows, its bias. */
function headRanges(spec: VitSpec, h: number) {
  const { d, dh, group } = dims(spec);
  const kv = Math.floor(h / group);
  return { wq: [h * dh * d, dh * d], wk: [kv * dh * d, dh * d], bq: [h * dh, dh] } as const;
}

function summarize(m: HeadModes): HeadSummary {
  const { U: _u, V: _v, salience: _s, ...rest } = m;
  return rest;
}

interface Task {
  job: HeadJob;
  resolve: (r: HeadModes) => void;
  reject: (e: Error) => void;
}

function runJob(job: HeadJob): HeadModes {
  return headModes(sliceView(job.wq), sliceView(job.wk), job.bq && sliceView(job.bq), job.d, job.dh, job.layer, job.head, { vectors: jobVectors(job) });
}

/** Copies a head's vector rows ([d_h, d]) into a [.., d, d_h] destination at `offset` (column n = row n). */
function putColumns(dst: Float32Array | Float64Array, rows: Float64Array, offset: number, d: number, dh: number): void {
  for (let i = 0; i < d; i++) for (let n = 0; n < dh; n++) dst[offset + i * dh + n] = rows[n * d + i];
}

/**
 * `workers` worker threads running modes-worker.js (each with up to DEPTH jobs in flight) plus,
 * when `local`, the calling thread, which takes a job whenever it is free (one per
 * event-loop turn, via setImmediate).
 */
class Pool {
  static readonly DEPTH = 2;
  private workers: { w: Worker; inflight: Map<number, Task> }[] = [];
  private queue: Task[] = [];
  private localBusy = false;
  private failure: Error | null = null;
  private closing = false;

  constructor(workers: number, private readonly local: boolean) {
    const url = new URL('./modes-worker.js', import.meta.url);
    const kernels = kernelModule() ?? undefined; // shared compiled code: workers skip compiling it
    for (let i = 0; i < workers; i++) {
      const w = new Worker(url, { workerData: { kernels } });
      const slot = { w, inflight: new Map<number, Task>() };
      w.on('message', (msg: HeadReply) => {
        const t = slot.inflight.get(msg.id);
        slot.inflight.delete(msg.id);
        if (t) {
          if (msg.ok) t.resolve(msg.result);
          else t.reject(new Error(`worker failed on layer ${t.job.layer} head ${t.job.head}: ${msg.error}`));
        }
        this.pump();
      });
      w.on('error', (e) => this.fail(e instanceof Error ? e : new Error(String(e))));
      w.on('exit', (code) => {
        if (!this.closing) this.fail(new Error(`modes worker exited with code ${code}`));
      });
      this.workers.push(slot);
    }
  }

  private fail(e: Error): void {
    if (!this.failure) this.failure = e;
    for (const s of this.workers) {
      for (const t of s.inflight.values()) t.reject(e);
      s.inflight.clear();
    }
    for (const t of this.queue.splice(0)) t.reject(e);
  }

  private pump(): void {
    if (this.failure) return;
    for (const s of this.workers) {
      while (s.inflight.size < Pool.DEPTH && this.queue.length) {
        const t = this.queue.shift()!;
        s.inflight.set(t.job.id, t);
        s.w.postMessage(t.job);
      }
    }
    if (this.local && !this.localBusy && this.queue.length) {
      this.localBusy = true;
      const t = this.queue.shift()!;
      setImmediate(() => {
        try {
          t.resolve(runJob(t.job));
        } catch (e) {
          t.reject(e instanceof Error ? e : new Error(String(e)));
        }
        this.localBusy = false;
        this.pump();
      });
    }
  }

  run(job: HeadJob): Promise<HeadModes> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.queue.push({ job, resolve, reject });
      this.pump();
    });
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const t of this.queue.splice(0)) t.reject(new Error('analysis stopped'));
    await Promise.all(this.workers.map((s) => s.w.terminate()));
  }
}

/** Default thread count: the machine's parallelism, capped. */
export function defaultThreads(): number {
  return Math.max(1, Math.min(MAX_THREADS, availableParallelism()));
}

/**
 * Singular modes of every head of the selected blocks. Heads of a layer are handed to
 * `onLayer` together, ordered by head, layers in the order of `opts.layers`; the returned
 * summaries (no vectors) follow the same order.
 */
export async function analyzeModel(spec: VitSpec, opts: AnalyzeModelOptions = {}): Promise<LayerModes[]> {
  const { d, dh, H } = dims(spec);
  const L = spec.blocks.length;
  const layers = opts.layers ?? Array.from({ length: L }, (_, i) => i);
  for (const l of layers) if (!Number.isInteger(l) || l < 0 || l >= L) throw new RangeError(`${spec.modelId}: no block ${l} (it has ${L})`);
  const threads = Math.max(1, Math.min(MAX_THREADS, Math.floor(opts.threads ?? defaultThreads()), H * layers.length));
  const out: LayerModes[] = [];
  const dest = opts.vectors || null;
  if (dest && (dest.U.length < L * H * d * dh || dest.V.length < L * H * d * dh)) {
    throw new RangeError(`analyzeModel: vectors need ${L}·${H}·${d}·${dh} entries each, got ${dest.U.length} and ${dest.V.length}`);
  }
  const blockAt = (l: number, h: number) => (l * H + h) * d * dh;
  /** Without a destination: vectors in each HeadModes (undefined) or not kept (false). */
  const keep = opts.vectors === false ? false : undefined;

  if (threads === 1 || layers.length === 0) {
    const scratch = reusedScratch();
    for (const l of layers) {
      const x = await loadLayer(spec, l, scratch);
      const heads: HeadModes[] = [];
      for (let h = 0; h < H; h++) {
        const r = headRanges(spec, h);
        const view = (a: FloatArray, [o, n]: readonly [number, number]) => a.subarray(o, o + n);
        const vectors = dest ? { U: dest.U, V: dest.V, offset: blockAt(l, h) } : keep;
        heads.push(headModes(view(x.wq, r.wq), view(x.wk, r.wk), x.bq ? view(x.bq, r.bq) : null, d, dh, l, h, { vectors }));
      }
      out.push({ layer: l, heads: heads.map(summarize) });
      await opts.onLayer?.(l, heads);
    }
    return out;
  }

  const pool = new Pool(threads - 1, true);
  // Two slots each: layer l+1 is read in only after layer l−1 has been delivered (below).
  const rings = { wq: new SharedRing(2), wk: new SharedRing(2), bq: new SharedRing(2) };
  const delivered: Promise<void>[] = [];
  let failed = false;
  let nextId = 0;
  const part = (s: SharedSlice, [offset, length]: readonly [number, number]): SharedSlice => ({ ...s, offset, length });
  try {
    for (let idx = 0; idx < layers.length && !failed; idx++) {
      const l = layers[idx];
      // Read layer l while the pool computes layer l−1, straight into the next shared slots
      // (a copy only for sources that cannot read in place).
      const taken: Partial<Record<'wq' | 'wk' | 'bq', Float32Array>> = {};
      const x = await loadLayer(spec, l, (which, n) => (taken[which] = rings[which].take(n)));
      const sq = rings.wq.adopt(x.wq, taken.wq!), sk = rings.wk.adopt(x.wk, taken.wk!), sb = x.bq ? rings.bq.adopt(x.bq, taken.bq!) : null;
      const computed = Promise.all(
        Array.from({ length: H }, async (_, h) => {
          const r = headRanges(spec, h);
          // Shared destination: the thread computing the head writes its block; otherwise the rows come back and are copied here.
          const su = dest && asShared(dest.U, blockAt(l, h), d * dh);
          const sv = dest && asShared(dest.V, blockAt(l, h), d * dh);
          const vectors = su && sv ? { U: su, V: sv } : dest ? undefined : keep;
          const m = await pool.run({ id: nextId++, wq: part(sq, r.wq), wk: part(sk, r.wk), bq: sb && part(sb, r.bq), d, dh, layer: l, head: h, vectors });
          if (dest && !(su && sv)) {
            putColumns(dest.U, m.U, blockAt(l, h), d, dh);
            putColumns(dest.V, m.V, blockAt(l, h), d, dh);
            m.U = m.V = new Float64Array(0);
          }
          return m;
        }),
      );
      computed.catch(() => {}); // handled through `delivered` below; avoid an unhandled-rejection crash meanwhile
      const prev = idx > 0 ? delivered[idx - 1] : Promise.resolve();
      const done = prev.then(async () => {
        const heads = await computed;
        out.push({ layer: l, heads: heads.map(summarize) });
        await opts.onLayer?.(l, heads);
      });
      done.catch(() => {
        failed = true;
      });
      delivered.push(done);
      // At most two layers in flight: before reading layer l+1, layer l−1 must be delivered.
      if (idx > 0) await delivered[idx - 1];
    }
    for (const p of delivered) await p;
  } finally {
    await pool.close();
  }
  return out;
}
