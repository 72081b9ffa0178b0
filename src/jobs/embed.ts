/**
 * `embed`: run images through the model and keep what each attention layer sees.
 *
 * `runEmbed` returns a lazy result: its `batches` are computed as they are consumed, once, by
 * either `writeEmbed` (streams them into .npy files: memory bounded by one batch, whatever the
 * image count) or `collectEmbed` (typed arrays in memory, for library callers). Unusable images
 * are skipped and reported (runtime/batch-loop.ts); the arrays hold the images that ran, in
 * input order, and images.json maps each input to its row.
 *
 * Files: ln.npy [N, L, T, d] (LayerNorm output feeding each selected block's attention),
 * residual.npy [N, L, T, d] (residual stream entering the block), attention.npy [N, L, H, T, T]
 * (when asked), logits.npy [N, classes] (when the checkpoint has a classifier), tokens.json,
 * images.json, embed.json (the manifest). All float32.
 */
import type { VitSpec } from '../arch/spec.js';
import { tokensJson, type TokenLayout } from '../arch/tokens.js';
import { logitsWidth, requireForward } from '../arch/runnable.js';
import { ListingSource, type ImageSource } from '../images/source.js';
import { fileListing } from '../images/sources.js';
import { preprocessFor } from '../images/preprocess.js';
import { imageBatches, DEFAULT_BATCH, skippedEntries, type SkippedImage } from '../runtime/batch-loop.js';
import type { Device } from '../runtime/device.js';
import type { LayerSelection } from '../runtime/vit-graph.js';
import { VitRuntime } from '../runtime/vit-runtime.js';
import { RunDir, modelInfo, type ModelInfo } from '../store/run-dir.js';
import { jobContext, type JobContext } from './job.js';

export interface EmbedOptions {
  /** Blocks whose inputs are kept (0-based), or 'all' (default). */
  layers?: LayerSelection;
  /** Also keep attention probabilities [N, L, H, T, T]. */
  attention?: boolean;
  batch?: number;
  device?: Device;
  /** CPU threads for onnxruntime (default: onnxruntime's choice, one per core). */
  threads?: number;
  /** What the user passed as <model>. */
  input?: string;
}

export interface EmbedBatch {
  /** Source indices of the rows of this batch. */
  ids: number[];
  ln: Float32Array;
  residual: Float32Array;
  attention?: Float32Array;
  logits?: Float32Array;
  skipped: SkippedImage[];
}

export interface EmbedRun {
  model: ModelInfo;
  options: { layers: number[]; attention: boolean; batch: number; device: Device; threads: number | null };
  layout: TokenLayout;
  /** Per image: the shapes of one row of each output. */
  rowShapes: { ln: number[]; residual: number[]; attention?: number[]; logits?: number[] };
  classes: number | null;
  /** Number of input images. */
  count: number;
  source: Record<string, unknown>;
  labels: string[];
  /** The batches, computed as they are consumed (once). */
  batches: AsyncIterable<EmbedBatch>;
  /** Filled as the batches are consumed. */
  stats: { done: number; skipped: SkippedImage[]; seconds: number };
  /** Releases the model and the source when the batches are never consumed (they release them themselves otherwise). */
  close(): Promise<void>;
}

const prod = (s: number[]) => s.reduce((a, b) => a * b, 1);

export async function runEmbed(spec: VitSpec, source: ImageSource, opts: EmbedOptions = {}, context?: Partial<JobContext>): Promise<EmbedRun> {
  const ctx = jobContext(context);
  requireForward(spec, 'embed');
  const batch = opts.batch ?? DEFAULT_BATCH;
  const classes = logitsWidth(spec);
  const hasHead = classes !== null;
  const rt = await VitRuntime.create(spec, {
    outputs: { ln: opts.layers ?? 'all', residual: opts.layers ?? 'all', attention: opts.attention ? (opts.layers ?? 'all') : undefined, logits: hasHead },
    imageSize: source.imageSize,
    device: opts.device,
    threads: opts.threads,
  });
  const T = rt.layout.tokens, d = spec.width, H = spec.heads, L = rt.layers.ln.length;
  const stats: EmbedRun['stats'] = { done: 0, skipped: [], seconds: 0 };
  let started = false;
  async function* batches(): AsyncGenerator<EmbedBatch> {
    started = true;
    const t0 = performance.now();
    ctx.progress.start('embed', source.count);
    try {
      for await (const b of imageBatches(source, { batch, progress: ctx.progress, stop: ctx.stop })) {
        stats.skipped.push(...b.skipped);
        if (b.items.length === 0) continue;
        const r = await rt.run(b.pixels, b.items.length);
        stats.done += b.items.length;
        yield { ids: b.items.map((it) => it.id), ln: r.ln!, residual: r.residual!, attention: r.attention, logits: r.logits, skipped: b.skipped };
      }
    } finally {
      stats.seconds = (performance.now() - t0) / 1000;
      ctx.progress.end();
      await rt.close();
      source.close();
    }
  }
  return {
    model: modelInfo(spec, opts.input ?? spec.modelId),
    options: { layers: rt.layers.ln, attention: !!opts.attention, batch, device: rt.device, threads: opts.threads ?? null },
    layout: rt.layout,
    rowShapes: { ln: [L, T, d], residual: [L, T, d], ...(opts.attention ? { attention: [L, H, T, T] } : {}), ...(classes !== null ? { logits: [classes] } : {}) },
    classes,
    count: source.count,
    source: source.describe(),
    labels: Array.from({ length: source.count }, (_, i) => source.label(i)),
    batches: batches(),
    stats,
    async close() {
      if (started) return;
      started = true;
      await rt.close();
      source.close();
    },
  };
}

export interface EmbedArrays {
  /** Source index of each row. */
  ids: number[];
  layers: number[];
  /** [N, L, T, d] */
  ln: Float32Array;
  residual: Float32Array;
  /** [N, L, H, T, T] */
  attention?: Float32Array;
  /** [N, classes] */
  logits?: Float32Array;
  skipped: SkippedImage[];
  layout: TokenLayout;
}

/** Consumes the batches into typed arrays (library use: memory grows with the image count). */
export async function collectEmbed(run: EmbedRun): Promise<EmbedArrays> {
  const parts: EmbedBatch[] = [];
  for await (const b of run.batches) parts.push(b);
  const cat = (k: 'ln' | 'residual' | 'attention' | 'logits') => {
    if (!run.rowShapes[k]) return undefined;
    const out = new Float32Array(parts.reduce((a, b) => a + b.ids.length, 0) * prod(run.rowShapes[k]!));
    let o = 0;
    for (const p of parts) {
      out.set(p[k]!, o);
      o += p[k]!.length;
    }
    return out;
  };
  return {
    ids: parts.flatMap((p) => p.ids),
    layers: run.options.layers,
    ln: cat('ln')!,
    residual: cat('residual')!,
    attention: cat('attention'),
    logits: cat('logits'),
    skipped: run.stats.skipped,
    layout: run.layout,
  };
}

export interface EmbedWritten {
  manifest: string;
  files: string[];
  rows: number;
  tokens: number;
  layers: number[];
  classes: number | null;
  skipped: SkippedImage[];
  imagesPerSec: number;
  interrupted: boolean;
}

/** Streams the batches into `dir` (rows of skipped images are left out; images.json says which row each input is). */
export async function writeEmbed(run: EmbedRun, dir: string, opts: { argv?: string[]; stop?: { stop: boolean } } = {}): Promise<EmbedWritten> {
  const out = new RunDir(dir, 'embed');
  const N = run.count;
  const s = run.rowShapes;
  try {
    const w = {
      ln: out.npyStream('ln.npy', '<f4', [N, ...s.ln], 'float32 [N,L,T,d]: LayerNorm output feeding each selected block’s attention (x = LN1(h))'),
      residual: out.npyStream('residual.npy', '<f4', [N, ...s.residual], 'float32 [N,L,T,d]: residual stream h entering each selected block'),
      attention: s.attention ? out.npyStream('attention.npy', '<f4', [N, ...s.attention], 'float32 [N,L,H,T,T]: attention probabilities') : undefined,
      logits: s.logits ? out.npyStream('logits.npy', '<f4', [N, ...s.logits], 'float32 [N,classes]: classifier logits (CLIP: the projected image embedding; SigLIP: the attention-pooled image embedding)') : undefined,
    };
    const rowOf = new Array<number | null>(N).fill(null);
    let rows = 0;
    for await (const b of run.batches) {
      w.ln.append(b.ln);
      w.residual.append(b.residual);
      w.attention?.append(b.attention!);
      w.logits?.append(b.logits!);
      for (const id of b.ids) rowOf[id] = rows++;
    }
    const interrupted = !!opts.stop?.stop && rows + run.stats.skipped.length < N;
    for (const [k, wr] of Object.entries(w)) {
      if (!wr) continue;
      wr.closeRows(rows);
      out.reshape(`${k}.npy`, [rows, ...s[k as keyof typeof s]!]);
    }
    const reasons = new Map(run.stats.skipped.map((x) => [x.id, x.reason]));
    out.json('tokens.json', { ...tokensJson(run.layout), layers: run.options.layers, heads: run.model.heads, width: run.model.width }, 'token roles (CLS / distillation / registers / patches), patch grid, layers saved');
    out.json(
      'images.json',
      {
        ...run.source,
        rows,
        skipped: run.stats.skipped.length,
        images: run.labels.map((path, index) => ({ index, path, row: rowOf[index], ...(reasons.has(index) ? { skipped: reasons.get(index) } : {}) })),
      },
      'input order, paths, the row of each image in the arrays (null: skipped, with the reason)',
    );
    const manifest = out.commit(out.header(run.model, { ...run.options }, { count: N, argv: opts.argv ?? null }), {
      imageSize: run.layout.imageSize,
      layers: run.options.layers,
      attention: run.options.attention,
      batch: run.options.batch,
      device: run.options.device,
      threads: run.options.threads,
      rows,
      skipped: skippedEntries(run.stats.skipped),
      interrupted,
      dtype: 'float32',
      ln: 'LayerNorm output feeding each block’s attention (x = LN1(h))',
      residual: 'residual stream h entering each block',
    });
    return {
      manifest,
      files: Object.keys(out.header(null, {}, null).files).concat('embed.json'),
      rows,
      tokens: run.layout.tokens,
      layers: run.options.layers,
      classes: run.classes,
      skipped: run.stats.skipped,
      imagesPerSec: run.stats.seconds > 0 ? rows / run.stats.seconds : 0,
      interrupted,
    };
  } catch (e) {
    out.abort();
    await run.close();
    throw e;
  }
}

/** One array per requested layer: what `embedImages` returns. */
export interface EmbedByLayer {
  /** Block indices, in the order of the arrays below. */
  layers: number[];
  /** Source index of each row (skipped images have none). */
  ids: number[];
  /** Per layer: [N, T, d] LayerNorm output feeding the attention. */
  ln: Float32Array[];
  /** Per layer: [N, T, d] residual stream entering the block. */
  residual: Float32Array[];
  /** Per layer: [N, H, T, T] attention probabilities (with `attention`). */
  attention?: Float32Array[];
  /** [N, classes] when the model has a classifier (CLIP/SigLIP: the image embedding). */
  logits?: Float32Array;
  skipped: SkippedImage[];
  layout: TokenLayout;
}

/**
 * The library's embed: image files (or any ImageSource) through the model, typed arrays per
 * requested layer in memory (use `runEmbed` + `writeEmbed` to stream large sets to disk).
 */
export async function embedImages(spec: VitSpec, images: string[] | ImageSource, opts: EmbedOptions = {}, context?: Partial<JobContext>): Promise<EmbedByLayer> {
  let source: ImageSource;
  if (Array.isArray(images)) {
    const { pp, options } = preprocessFor(spec);
    source = new ListingSource(fileListing(images), pp, options);
  } else source = images;
  const a = await collectEmbed(await runEmbed(spec, source, opts, context));
  const N = a.ids.length;
  const L = a.layers.length;
  const split = (x: Float32Array | undefined) => {
    if (!x) return undefined;
    const per = x.length / Math.max(1, N * L);
    return a.layers.map((_, j) => {
      const out = new Float32Array(N * per);
      for (let i = 0; i < N; i++) out.set(x.subarray((i * L + j) * per, (i * L + j + 1) * per), i * per);
      return out;
    });
  };
  return { layers: a.layers, ids: a.ids, ln: split(a.ln)!, residual: split(a.residual)!, attention: split(a.attention), logits: a.logits, skipped: a.skipped, layout: a.layout };
}
