/**
 * The weight-only analysis of a whole model: singular modes of every head of every block
 * (METHOD.md §2–3), streamed layer by layer.
 *
 * - Reads only what the analysis needs: each block's query weight, key weight and query bias
 *   (through `loadWeight`, so fused qkv tensors are read by row range). Value, output and MLP
 *   weights are never read.
 * - Heads: query head h owns rows h·d_h..(h+1)·d_h. Grouped-query attention (kvHeads < heads):
 *   query head h uses key head ⌊h / (heads/kvHeads)⌋.
 * - Streaming: layer results go to `onLayer` in layer order and are not retained here (only
 *   the small per-head scalars are returned), so memory holds at most two layers' inputs and
 *   vectors at once (a ViT-H/14 would need 32·16·1280·80·2 doubles ≈ 840 MB otherwise).
 * - Parallelism: with threads > 1, a pool of worker_threads computes heads (one job per head,
 *   dynamically dispatched) while the main thread reads the next layer. Inputs are copied once
 *   into per-head buffers that are transferred, results are transferred back: no further
 *   copies of the d_h×d matrices.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { loadWeight, type VitSpec } from '../arch/spec.js';
import type { FloatArray } from '../checkpoint/types.js';
import { headModes } from './modes.js';
import type { HeadModes } from './types.js';

export interface AnalyzeModelOptions {
  /** Block indices to analyse (0-based), in the order wanted; default all. */
  layers?: number[];
  /** Worker threads; default os.availableParallelism() capped at 8. 1 computes on the calling thread. */
  threads?: number;
  /** Receives each layer's heads (ordered by head) in layer order; awaited before the layer is released. */
  onLayer?: (layer: number, heads: HeadModes[]) => void | Promise<void>;
}

/** HeadModes without the d-length vectors (what `analyzeModel` keeps and returns). */
export type HeadSummary = Omit<HeadModes, 'U' | 'V' | 'salience'>;

export interface LayerModes {
  layer: number;
  heads: HeadSummary[];
}

/** Message to a worker: one head. */
export interface HeadJob {
  id: number;
  wq: FloatArray;
  wk: FloatArray;
  bq: FloatArray | null;
  d: number;
  dh: number;
  layer: number;
  head: number;
}

export type HeadReply = { id: number; ok: true; result: HeadModes } | { id: number; ok: false; error: string };

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

async function loadLayer(spec: VitSpec, l: number): Promise<LayerInput> {
  const { d, dh, H, KV } = dims(spec);
  const blk = spec.blocks[l];
  const [wq, wk, bq] = await Promise.all([
    loadWeight(blk.q.weight),
    loadWeight(blk.k.weight),
    blk.q.bias ? loadWeight(blk.q.bias) : Promise.resolve(null),
  ]);
  const where = `${spec.modelId} block ${l}`;
  if (wq.length !== H * dh * d) throw new RangeError(`${where}: query weight has ${wq.length} entries, expected ${H}·${dh}·${d}`);
  if (wk.length !== KV * dh * d) throw new RangeError(`${where}: key weight has ${wk.length} entries, expected ${KV}·${dh}·${d}`);
  if (bq && bq.length !== H * dh) throw new RangeError(`${where}: query bias has ${bq.length} entries, expected ${H}·${dh}`);
  return { layer: l, wq, wk, bq };
}

/** The per-head job of layer input `x` (copies of the head's rows, ready to transfer). */
function headJob(spec: VitSpec, x: LayerInput, h: number, id: number): HeadJob {
  const { d, dh, group } = dims(spec);
  const kv = Math.floor(h / group);
  return {
    id,
    wq: x.wq.slice(h * dh * d, (h + 1) * dh * d),
    wk: x.wk.slice(kv * dh * d, (kv + 1) * dh * d),
    bq: x.bq ? x.bq.slice(h * dh, (h + 1) * dh) : null,
    d,
    dh,
    layer: x.layer,
    head: h,
  };
}

function summarize(m: HeadModes): HeadSummary {
  const { U: _u, V: _v, salience: _s, ...rest } = m;
  return rest;
}

/** A fixed pool of workers running modes-worker.js, with a FIFO job queue. */
class Pool {
  private workers: Worker[] = [];
  private idle: Worker[] = [];
  private queue: { job: HeadJob; resolve: (r: HeadModes) => void; reject: (e: Error) => void }[] = [];
  private busy = new Map<Worker, { resolve: (r: HeadModes) => void; reject: (e: Error) => void }>();
  private failure: Error | null = null;

  constructor(n: number) {
    const url = new URL('./modes-worker.js', import.meta.url);
    for (let i = 0; i < n; i++) {
      const w = new Worker(url);
      w.on('message', (msg: HeadReply) => {
        const cb = this.busy.get(w);
        this.busy.delete(w);
        if (cb) {
          if (msg.ok) cb.resolve(msg.result);
          else cb.reject(new Error(`worker failed on a head: ${msg.error}`));
        }
        this.idle.push(w);
        this.pump();
      });
      w.on('error', (e) => this.fail(e instanceof Error ? e : new Error(String(e))));
      w.on('exit', (code) => {
        if (code !== 0 && !this.closing) this.fail(new Error(`modes worker exited with code ${code}`));
      });
      this.workers.push(w);
      this.idle.push(w);
    }
  }

  private closing = false;

  private fail(e: Error): void {
    if (!this.failure) this.failure = e;
    for (const cb of this.busy.values()) cb.reject(e);
    this.busy.clear();
    for (const q of this.queue.splice(0)) q.reject(e);
  }

  private pump(): void {
    while (this.idle.length && this.queue.length) {
      const w = this.idle.shift()!;
      const { job, resolve, reject } = this.queue.shift()!;
      this.busy.set(w, { resolve, reject });
      const transfer: ArrayBuffer[] = [job.wq.buffer as ArrayBuffer, job.wk.buffer as ArrayBuffer];
      if (job.bq) transfer.push(job.bq.buffer as ArrayBuffer);
      w.postMessage(job, transfer);
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
    await Promise.all(this.workers.map((w) => w.terminate()));
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
  const threads = Math.max(1, Math.min(MAX_THREADS, Math.floor(opts.threads ?? defaultThreads())));
  const out: LayerModes[] = [];

  if (threads === 1 || layers.length === 0) {
    for (const l of layers) {
      const x = await loadLayer(spec, l);
      const heads: HeadModes[] = [];
      for (let h = 0; h < H; h++) {
        const j = headJob(spec, x, h, h);
        heads.push(headModes(j.wq, j.wk, j.bq, d, dh, l, h));
      }
      out.push({ layer: l, heads: heads.map(summarize) });
      await opts.onLayer?.(l, heads);
    }
    return out;
  }

  const pool = new Pool(Math.min(threads, H * layers.length));
  const delivered: Promise<void>[] = [];
  let failed = false;
  let nextId = 0;
  try {
    for (let idx = 0; idx < layers.length && !failed; idx++) {
      const l = layers[idx];
      // Read layer l while the pool computes layer l−1.
      const x = await loadLayer(spec, l);
      const computed = Promise.all(Array.from({ length: H }, (_, h) => pool.run(headJob(spec, x, h, nextId++))));
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
