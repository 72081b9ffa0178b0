/**
 * `embed` as a library call: run a pixel source through a VitSpec in batches and stream the
 * requested tensors to .npy files (memory bounded by one batch, whatever the image count).
 *
 * Writes into `outDir`:
 *   ln.npy        [N, L, T, d] float32  LayerNorm output feeding each selected block's attention
 *   residual.npy  [N, L, T, d] float32  residual stream entering each selected block
 *   attention.npy [N, L, H, T, T]       attention probabilities (when asked)
 *   logits.npy    [N, classes]          when the checkpoint has a classifier
 *   tokens.json   token roles (CLS / distillation / registers / patches, patch grid) and layers
 *   images.json   input order and paths
 *   embed.json    manifest: tool version, model, options, shapes
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { VitSpec } from '../arch/spec.js';
import { NpyStreamWriter } from '../report/npy.js';
import type { PixelSource } from '../images/pixels.js';
import { VERSION } from '../version.js';
import type { Device } from './device.js';
import { tokensJson } from './tokens.js';
import type { LayerSelection } from './vit-graph.js';
import { VitRuntime } from './vit-runtime.js';
import { ensureDir } from '../store/ensure-dir.js';

export interface EmbedJobOptions {
  outDir: string;
  layers?: LayerSelection;
  attention?: boolean;
  batch?: number;
  device?: Device;
  threads?: number;
  /** Called after each batch with images done and total. */
  onProgress?: (done: number, total: number) => void;
  /** Extra manifest fields (e.g. the command line). */
  manifest?: Record<string, unknown>;
}

export interface EmbedJobResult {
  files: string[];
  count: number;
  tokens: number;
  layers: number[];
  classes: number | null;
  imagesPerSec: number;
}

export async function runEmbedJob(spec: VitSpec, source: PixelSource, opts: EmbedJobOptions): Promise<EmbedJobResult> {
  const batch = opts.batch ?? 8;
  const layers = opts.layers ?? 'all';
  const hasHead = !!spec.head && spec.pooling !== 'none';
  const rt = await VitRuntime.create(spec, {
    outputs: { ln: layers, residual: layers, attention: opts.attention ? layers : undefined, logits: hasHead },
    imageSize: source.imageSize,
    device: opts.device,
    threads: opts.threads,
  });
  const writers: NpyStreamWriter[] = [];
  try {
    ensureDir(opts.outDir);
    const N = source.count;
    const T = rt.layout.tokens;
    const d = spec.width;
    const H = spec.heads;
    const L = rt.layers.ln.length;
    const classes = hasHead ? spec.head!.weight.shape[0] : null;
    const open = (name: string, shape: number[]) => {
      const w = NpyStreamWriter.create(join(opts.outDir, name), '<f4', shape);
      writers.push(w);
      return w;
    };
    const lnW = open('ln.npy', [N, L, T, d]);
    const resW = open('residual.npy', [N, L, T, d]);
    const attW = opts.attention ? open('attention.npy', [N, L, H, T, T]) : undefined;
    const logW = classes !== null ? open('logits.npy', [N, classes]) : undefined;

    const t0 = performance.now();
    // Prefetch the next batch (decoding runs on libuv threads) while this one runs.
    let next: Promise<Float32Array> | null = N > 0 ? source.read(0, Math.min(batch, N)) : null;
    next?.catch(() => undefined);
    for (let start = 0; start < N; start += batch) {
      const n = Math.min(batch, N - start);
      const pixels = await next!;
      next = start + batch < N ? source.read(start + batch, Math.min(batch, N - start - batch)) : null;
      // Keep an unhandled rejection from surfacing before we await it.
      next?.catch(() => undefined);
      const r = await rt.run(pixels, n);
      lnW.append(r.ln!);
      resW.append(r.residual!);
      if (attW) attW.append(r.attention!);
      if (logW) logW.append(r.logits!);
      opts.onProgress?.(start + n, N);
    }
    const sec = (performance.now() - t0) / 1000;
    for (const w of writers) w.close();
    writers.length = 0;

    const layerList = rt.layers.ln;
    writeFileSync(join(opts.outDir, 'tokens.json'), JSON.stringify({ ...tokensJson(rt.layout), layers: layerList, heads: H, width: d }, null, 2) + '\n');
    writeFileSync(join(opts.outDir, 'images.json'), JSON.stringify(source.describe(), null, 2) + '\n');
    const files = ['ln.npy', 'residual.npy', ...(attW ? ['attention.npy'] : []), ...(logW ? ['logits.npy'] : []), 'tokens.json', 'images.json', 'embed.json'];
    const shapes: Record<string, number[]> = { ln: [N, L, T, d], residual: [N, L, T, d] };
    if (attW) shapes.attention = [N, L, H, T, T];
    if (logW) shapes.logits = [N, classes!];
    writeFileSync(
      join(opts.outDir, 'embed.json'),
      JSON.stringify(
        {
          tool: 'qkscope',
          version: VERSION,
          command: 'embed',
          created: new Date().toISOString(),
          model: { id: spec.modelId, family: spec.family, layers: spec.layers, heads: H, width: d, patchSize: spec.patchSize, notes: spec.notes ?? [] },
          imageSize: source.imageSize,
          layers: layerList,
          attention: !!opts.attention,
          batch,
          device: rt.device,
          threads: opts.threads ?? null,
          files,
          shapes,
          dtype: 'float32',
          ln: 'LayerNorm output feeding each block’s attention (x = LN1(h))',
          residual: 'residual stream h entering each block',
          ...(opts.manifest ?? {}),
        },
        null,
        2,
      ) + '\n',
    );
    return { files, count: N, tokens: T, layers: layerList, classes, imagesPerSec: N / sec };
  } catch (e) {
    for (const w of writers) w.abort();
    throw e;
  } finally {
    await rt.close();
    source.close();
  }
}
