/**
 * `anisotropy` (docs/method.md §3): the anisotropy baseline (per layer, the mean cosine between the
 * centre-patch embeddings of different images) with n and a jackknife interval, and the
 * relative cosine curves (σ-weighted cosine − baseline).
 *
 *   const b = await anisotropyBaseline(spec, source, { layers: 'all' }, ctx);   // the baseline alone (the explorer)
 *   const r = await runAnisotropy(spec, source, { cosines }, ctx);               // + relative curves
 *   await writeAnisotropy(r, 'runs/vit-b16');                                     // anisotropy.json/.csv/.svg/.png
 *
 * The accumulation is GroupedCentreSums (exact sums, as `scan`'s CentreSums), so the CLI, the
 * explorer and a scan give the same value on the same images.
 */
import type { VitSpec } from '../arch/spec.js';
import { centrePatch } from '../arch/tokens.js';
import { UserError } from '../errors.js';
import type { ImageSource } from '../images/source.js';
import { GroupedCentreSums, JACKKNIFE_GROUPS, relativeCurves, type AnisotropyLayer, type BaselineValue, type LayerCosines } from '../analysis/anisotropy.js';
import { INTERVAL_LEVEL } from '../analysis/intervals.js';
import { DEFAULT_BATCH, imageBatches, skippedEntries, type SkippedImage } from '../runtime/batch-loop.js';
import type { Device } from '../runtime/device.js';
import { resolveLayers, type LayerSelection } from '../runtime/vit-graph.js';
import { VitRuntime } from '../runtime/vit-runtime.js';
import { anisotropyFigure } from '../report/figures/anisotropy.js';
import { RunDir, modelInfo, type ModelInfo } from '../store/run-dir.js';
import { jobContext, type JobContext } from './job.js';
import { runSvd } from './svd.js';

export const ANISOTROPY_DEFINITION =
  'per layer, the mean cosine between the centre-patch embeddings of different images, mean_{i≠j} ê_i·ê_j (centre patch = raster index ⌊rows/2⌋·cols + ⌊cols/2⌋, as scan); ' +
  'relative cosine = σ-weighted cosine − anisotropy (docs/method.md §3). n = images used. Interval: 95 % delete-a-group jackknife over images ' +
  `(image k in group k mod ${JACKKNIFE_GROUPS}, i.e. the delete-one jackknife up to ${JACKKNIFE_GROUPS} images; SE² = (G−1)/G Σ_g (θ₋g − mean θ₋·)², ` +
  'interval θ ± t_{G−1, 0.975}·SE); the σ-weighted cosine is weight-only (exact), so the relative interval is cosine − the anisotropy interval.';

export interface AnisotropyBaselineOptions {
  /** ln: LayerNorm output feeding attention (default); residual: the stream before it. */
  embedding?: 'ln' | 'residual';
  layers?: LayerSelection;
  batch?: number;
  device?: Device;
  threads?: number;
}

export interface BaselineLayer extends BaselineValue {
  layer: number;
  interval: [number, number] | null;
  se: number | null;
  /** Jackknife groups used (degrees of freedom + 1). */
  groups: number;
}

export interface AnisotropyBaseline {
  embedding: 'ln' | 'residual';
  centre_patch: number;
  patch_grid: [number, number];
  values: BaselineLayer[];
  /** Images used, and the source's count. */
  images: number;
  count: number;
  /** Labels of the images used, in order. */
  used: string[];
  skipped: SkippedImage[];
  /** Stopped early (ctx.stop). */
  interrupted: boolean;
}

/** The per-layer baseline over the images of `source` (unusable images skipped and reported). */
export async function anisotropyBaseline(spec: VitSpec, source: ImageSource, opts: AnisotropyBaselineOptions = {}, context?: Partial<JobContext>): Promise<AnisotropyBaseline> {
  const ctx = jobContext(context);
  if (source.count < 2) throw new UserError(`anisotropy: give at least two images (got ${source.count}); the baseline is a cosine between different images`);
  const embedding = opts.embedding ?? 'ln';
  const layers = resolveLayers(opts.layers ?? 'all', spec.blocks.length, 'layers');
  const rt = await VitRuntime.create(spec, { outputs: { [embedding]: layers }, imageSize: source.imageSize, device: opts.device, threads: opts.threads });
  const d = spec.width, L = layers.length;
  const sums = new GroupedCentreSums(L, d);
  const skipped: SkippedImage[] = [];
  const used: string[] = [];
  const T = rt.layout.tokens;
  const centre = centrePatch(rt.layout);
  const tok = rt.layout.patchStart + centre;
  let done = 0;
  ctx.progress.start('anisotropy', source.count);
  try {
    for await (const b of imageBatches(source, { batch: opts.batch ?? DEFAULT_BATCH, progress: ctx.progress, stop: ctx.stop })) {
      skipped.push(...b.skipped);
      if (b.items.length === 0) continue;
      const x = (await rt.run(b.pixels, b.items.length))[embedding]!;
      b.items.forEach((it, i) => {
        for (let li = 0; li < L; li++) sums.add(li, it.id, x, ((i * L + li) * T + tok) * d);
        used.push(source.label(it.id));
      });
      done += b.items.length;
    }
    sums.flush();
  } finally {
    ctx.progress.end();
    await rt.close();
  }
  if (used.length < 2) {
    const why = skipped.length ? ` (${skipped.length} skipped; first: ${skipped[0].label}: ${skipped[0].reason})` : '';
    throw new UserError(`anisotropy: only ${used.length} of ${source.count} images could be used${why}; the baseline needs two`);
  }
  return {
    embedding,
    centre_patch: centre,
    patch_grid: rt.layout.grid,
    values: layers.map((layer, li) => ({ layer, ...sums.estimate(li, INTERVAL_LEVEL) })),
    images: used.length,
    count: source.count,
    used,
    skipped,
    interrupted: !!ctx.stop?.stop && done + skipped.length < source.count,
  };
}

export interface AnisotropyOptions extends AnisotropyBaselineOptions {
  /** Per-layer weight-only cosines (from an svd run); computed now when absent. */
  cosines?: LayerCosines[];
  /** What the user passed as <model>. */
  input?: string;
  /** The svd run the cosines came from. */
  run?: string;
}

export interface AnisotropyResult {
  model: ModelInfo;
  options: { embedding: 'ln' | 'residual'; layers: number[]; batch: number; device: Device | null; threads: number | null };
  run: string | null;
  baseline: AnisotropyBaseline;
  layers: AnisotropyLayer[];
  source: Record<string, unknown>;
}

export async function runAnisotropy(spec: VitSpec, source: ImageSource, opts: AnisotropyOptions = {}, context?: Partial<JobContext>): Promise<AnisotropyResult> {
  const baseline = await anisotropyBaseline(spec, source, opts, context);
  const cosines = opts.cosines ?? (await runSvd(spec, { vectors: false, threads: opts.threads, input: opts.input }, context)).stats.layers;
  const layers = relativeCurves(cosines, new Map(baseline.values.map((v) => [v.layer, v])), spec.blocks.length);
  return {
    model: modelInfo(spec, opts.input ?? spec.modelId),
    options: { embedding: baseline.embedding, layers: baseline.values.map((v) => v.layer), batch: opts.batch ?? DEFAULT_BATCH, device: opts.device ?? null, threads: opts.threads ?? null },
    run: opts.run ?? null,
    baseline,
    layers,
    source: source.describe(),
  };
}

export const ANISOTROPY_INTERVAL_LABEL = '95% jackknife interval over images';

/** Writes anisotropy.json (manifest), anisotropy.csv and the figure into `dir` (an svd run keeps its own files). */
export async function writeAnisotropy(r: AnisotropyResult, dir: string, opts: { figures?: boolean } = {}): Promise<string> {
  const out = new RunDir(dir, 'anisotropy');
  const b = r.baseline;
  try {
    out.csv(
      'anisotropy.csv',
      [
        ['layer', 'depth', 'anisotropy', 'images', 'mean_weighted_cosine', 'relative_mean_weighted_cosine', 'anisotropy_lo', 'anisotropy_hi', 'relative_lo', 'relative_hi'],
        ...r.layers.map((c) => [
          c.layer,
          c.depth,
          c.anisotropy,
          c.images,
          c.mean_weighted_cosine,
          c.relative_mean_weighted_cosine,
          c.anisotropy_interval?.[0],
          c.anisotropy_interval?.[1],
          c.relative_interval?.[0],
          c.relative_interval?.[1],
        ]),
      ],
      'per layer: anisotropy with its 95 % interval, n images, layer-mean σ-weighted cosine, relative cosine',
    );
    if (opts.figures !== false && r.layers.length) {
      await out.figure('anisotropy', anisotropyFigure({ model: r.model.id, layers: r.layers, embedding: b.embedding, images: b.images, intervalLabel: ANISOTROPY_INTERVAL_LABEL }), 'anisotropy, relative and σ-weighted cosine against depth, with 95 % intervals');
    }
    return out.commit(out.header(r.model, { ...r.options }, r.source), {
      run: r.run,
      index_base: 0,
      embedding: b.embedding,
      definition: ANISOTROPY_DEFINITION,
      interval: { method: 'delete-a-group jackknife over images, Student t', level: INTERVAL_LEVEL, groups: JACKKNIFE_GROUPS },
      centre_patch: b.centre_patch,
      patch_grid: b.patch_grid,
      images: b.images,
      image_paths: b.used,
      skipped: skippedEntries(b.skipped),
      interrupted: b.interrupted,
      layers: r.layers.map((c) => {
        const v = b.values.find((x) => x.layer === c.layer);
        return { ...c, anisotropy_se: v?.se ?? null, jackknife_groups: v?.groups ?? 0 };
      }),
    });
  } catch (e) {
    out.abort();
    throw e;
  }
}
