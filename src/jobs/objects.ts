/**
 * `objects` (paper figure 2, docs/method.md §7): where the tokens of an object attend — same
 * object, other object, background — per layer, with n and bootstrap intervals over images.
 *
 *   const r = await runObjects(spec, objectsDataset('odd-one-out/'), {}, ctx);
 *   await writeObjects(r, 'runs/objects');   // objects.json/.csv, objects_per_image.csv, figure
 *
 * Images go through the one batch loop: an image that cannot be decoded is skipped and listed;
 * a wrong mask (size, values, overlap, outside the crop) stops the run with one line naming it.
 */
import type { VitSpec } from '../arch/spec.js';
import { tokenLayout } from '../arch/tokens.js';
import { UserError } from '../errors.js';
import { preprocessFor } from '../images/preprocess.js';
import { ListingSource } from '../images/source.js';
import { fileListing } from '../images/sources.js';
import type { ObjectsItem } from '../data/datasets.js';
import { argmax, downscaleMask, readBinaryMask } from '../data/masks.js';
import { bootstrapInfo, bootstrapLabel, type BootstrapInfo, type BootstrapOptions } from '../analysis/intervals.js';
import { ObjectShareSums, imageStatistics, objectIntervals, rowShares, type Interval } from '../analysis/objects.js';
import { DEFAULT_BATCH, imageBatches, skippedEntries, type SkippedImage } from '../runtime/batch-loop.js';
import type { Device } from '../runtime/device.js';
import { VitRuntime } from '../runtime/vit-runtime.js';
import { objectsFigure } from '../report/figures/objects.js';
import { RunDir, modelInfo, type ModelInfo } from '../store/run-dir.js';
import { jobContext, type JobContext } from './job.js';

export const OBJECTS_DEFINITION =
  'Masks are resized and cropped like the image; down-scaled mask = fraction of each patch inside the mask (area-weighted, no threshold). ' +
  'Query = the patch at the maximum of each down-scaled mask (target, distractor; first in raster order on ties). Its attention row over patch tokens is renormalised to sum to 1; ' +
  'shares = Σ_p a_p t_p (target), Σ_p a_p d_p (distractor), Σ_p a_p max(0, 1 − t_p − d_p) (background). same object = target share of the target query and distractor share of the distractor query (averaged), other object = the crossed shares. ' +
  'Per layer: mean over heads and over the n images used (per head: over the images); every *_interval = 95 % percentile bootstrap over images (see bootstrap).';

export interface ObjectsOptions {
  batch?: number;
  device?: Device;
  threads?: number;
  /** Decoding limit (pixels); larger images are skipped. */
  maxPixels?: number;
  /** What the user passed as <model>. */
  input?: string;
  bootstrap?: BootstrapOptions;
}

export interface ObjectsLayer {
  layer: number;
  depth: number;
  same_object: number;
  other_object: number;
  background: number;
  /** Images the means are over. */
  n: number;
  same_object_interval: Interval;
  other_object_interval: Interval;
  background_interval: Interval;
  by_query: { target: { target: number; distractor: number; background: number }; distractor: { target: number; distractor: number; background: number } };
  by_query_interval: { target: { target: Interval; distractor: Interval; background: Interval }; distractor: { target: Interval; distractor: Interval; background: Interval } };
  heads: { head: number; same_object: number; other_object: number; background: number; same_object_interval: Interval; other_object_interval: Interval; background_interval: Interval }[];
}

export interface ObjectsImage {
  name: string;
  /** Query patches (raster index among patches) of the target and the distractor. */
  query: [number, number];
  /** Shares [L, H, 2 queries, 3 (target, distractor, background)]. */
  shares: Float64Array;
}

export interface ObjectsResult {
  model: ModelInfo;
  options: { batch: number; device: Device | null; threads: number | null };
  layers: ObjectsLayer[];
  /** Images used. */
  images: number;
  count: number;
  skipped: { index: number; path: string; reason: string }[];
  patch_grid: [number, number];
  perImage: ObjectsImage[];
  bootstrap: BootstrapInfo;
  dataset: { name: string; image: string; target: string; distractor: string }[];
  interrupted: boolean;
}

export async function runObjects(spec: VitSpec, items: ObjectsItem[], opts: ObjectsOptions = {}, context?: Partial<JobContext>): Promise<ObjectsResult> {
  const ctx = jobContext(context);
  const { pp, options } = preprocessFor(spec);
  const source = new ListingSource(fileListing(items.map((it) => it.image)), pp, options, { decode: { maxPixels: opts.maxPixels } });
  const layout = tokenLayout(spec, source.imageSize);
  const L = spec.blocks.length, H = spec.heads;
  const T = layout.tokens, ps = layout.patchStart;
  const sums = new ObjectShareSums(L, H);
  const perImage: ObjectsImage[] = [];
  const skipped: SkippedImage[] = [];
  // Masks are read during the prefetch, against the decoded image's size.
  const prepare = async (id: number, info: { width: number | null; height: number | null }) => {
    const it = items[id];
    const ref = { width: info.width!, height: info.height!, path: it.image };
    const tm = await readBinaryMask(it.target, 'target mask', ref);
    const dm = await readBinaryMask(it.distractor, 'distractor mask', ref);
    let overlap = 0;
    for (let p = 0; p < tm.data.length; p++) if (tm.data[p] && dm.data[p]) overlap++;
    if (overlap) throw new UserError(`${it.distractor}: overlaps the target mask ${it.target} in ${overlap} pixels; target and distractor must be disjoint`);
    const t = downscaleMask(tm, pp, options, layout);
    const d = downscaleMask(dm, pp, options, layout);
    if (!(t[argmax(t)] > 0)) throw new UserError(`${it.target}: the target mask falls outside the model's crop of ${it.image}`);
    if (!(d[argmax(d)] > 0)) throw new UserError(`${it.distractor}: the distractor mask falls outside the model's crop of ${it.image}`);
    return { t, d, qt: argmax(t), qd: argmax(d) };
  };
  const batch = opts.batch ?? DEFAULT_BATCH;
  const rt = await VitRuntime.create(spec, { outputs: { attention: 'all' }, imageSize: source.imageSize, device: opts.device, threads: opts.threads });
  let done = 0;
  ctx.progress.start('objects', items.length);
  try {
    for await (const b of imageBatches(source, { batch, progress: ctx.progress, stop: ctx.stop, prepare })) {
      skipped.push(...b.skipped);
      if (b.items.length === 0) continue;
      const A = (await rt.run(b.pixels, b.items.length)).attention!;
      b.items.forEach((it, i) => {
        const m = it.extra;
        const shares = new Float64Array(L * H * 6);
        for (let l = 0; l < L; l++)
          for (let h = 0; h < H; h++) {
            const base = ((i * L + l) * H + h) * T * T;
            for (const [qk, q] of [[0, m.qt], [1, m.qd]] as const) {
              const tok = ps + q;
              const sh = rowShares(A.subarray(base + tok * T, base + (tok + 1) * T), ps, m.t, m.d);
              sums.add(l, h, qk, sh);
              shares.set([sh.target, sh.distractor, sh.background], ((l * H + h) * 2 + qk) * 3);
            }
          }
        sums.n++;
        perImage.push({ name: items[it.id].name, query: [m.qt, m.qd], shares });
      });
      done += b.items.length;
    }
  } finally {
    ctx.progress.end();
    await rt.close();
    source.close();
  }
  if (perImage.length === 0) {
    throw new UserError(`objects: none of the ${items.length} images could be used${skipped.length ? ` (first: ${skipped[0].label}: ${skipped[0].reason})` : ''}`);
  }
  const intervals = objectIntervals(
    perImage.map((p) => imageStatistics(p.shares, L, H)),
    L,
    H,
    opts.bootstrap,
  );
  const layers: ObjectsLayer[] = [];
  for (let l = 0; l < L; l++) {
    const heads = Array.from({ length: H }, (_, h) => {
      const c = sums.categories(l, h);
      const iv = intervals.heads[l][h];
      return {
        head: h,
        same_object: c.same,
        other_object: c.other,
        background: c.background,
        same_object_interval: iv.same_object,
        other_object_interval: iv.other_object,
        background_interval: iv.background,
      };
    });
    const mean = (f: (h: number) => number) => Array.from({ length: H }, (_, h) => f(h)).reduce((a, b) => a + b, 0) / H;
    const q = (k: 0 | 1) => ({
      target: mean((h) => sums.mean(l, h, k).target),
      distractor: mean((h) => sums.mean(l, h, k).distractor),
      background: mean((h) => sums.mean(l, h, k).background),
    });
    layers.push({
      layer: l,
      depth: L > 1 ? l / (L - 1) : 0,
      same_object: mean((h) => heads[h].same_object),
      other_object: mean((h) => heads[h].other_object),
      background: mean((h) => heads[h].background),
      n: perImage.length,
      same_object_interval: intervals.layers[l].same_object,
      other_object_interval: intervals.layers[l].other_object,
      background_interval: intervals.layers[l].background,
      by_query: { target: q(0), distractor: q(1) },
      by_query_interval: intervals.byQuery[l],
      heads,
    });
  }
  return {
    model: modelInfo(spec, opts.input ?? spec.modelId),
    options: { batch, device: opts.device ?? null, threads: opts.threads ?? null },
    layers,
    images: perImage.length,
    count: items.length,
    skipped: skippedEntries(skipped),
    patch_grid: layout.grid,
    perImage,
    bootstrap: bootstrapInfo(opts.bootstrap),
    dataset: items.map((it) => ({ ...it })),
    interrupted: !!ctx.stop?.stop && done + skipped.length < items.length,
  };
}

/** Writes objects.json (manifest), objects.csv (per layer and head), objects_per_image.csv and the figure. */
export async function writeObjects(r: ObjectsResult, dir: string, opts: { figures?: boolean } = {}): Promise<string> {
  const out = new RunDir(dir, 'objects');
  const H = r.model.heads;
  try {
    out.csv(
      'objects.csv',
      [
        ['layer', 'depth', 'head', 'same_object', 'other_object', 'background', 'n', 'same_lo', 'same_hi', 'other_lo', 'other_hi', 'background_lo', 'background_hi'],
        ...r.layers.flatMap((x) => [
          [
            x.layer,
            x.depth,
            'mean',
            x.same_object,
            x.other_object,
            x.background,
            x.n,
            x.same_object_interval?.[0],
            x.same_object_interval?.[1],
            x.other_object_interval?.[0],
            x.other_object_interval?.[1],
            x.background_interval?.[0],
            x.background_interval?.[1],
          ],
          ...x.heads.map((h) => [
            x.layer,
            x.depth,
            h.head,
            h.same_object,
            h.other_object,
            h.background,
            x.n,
            h.same_object_interval?.[0],
            h.same_object_interval?.[1],
            h.other_object_interval?.[0],
            h.other_object_interval?.[1],
            h.background_interval?.[0],
            h.background_interval?.[1],
          ]),
        ]),
      ],
      'per layer (head = mean) and per head: same-object, other-object, background shares, n images, 95 % bootstrap intervals',
    );
    const rows: (string | number)[][] = [['image', 'layer', 'head', 'query', 'query_patch', 'target', 'distractor', 'background']];
    for (const p of r.perImage)
      for (let l = 0; l < r.layers.length; l++)
        for (let h = 0; h < H; h++)
          for (const qk of [0, 1]) {
            const o = ((l * H + h) * 2 + qk) * 3;
            rows.push([p.name, l, h, qk === 0 ? 'target' : 'distractor', p.query[qk], p.shares[o], p.shares[o + 1], p.shares[o + 2]]);
          }
    out.csv('objects_per_image.csv', rows, 'per image, layer, head and query (target / distractor): its attention shares');
    if (opts.figures !== false) {
      await out.figure('objects', objectsFigure({ model: r.model.id, images: r.images, layers: r.layers, intervalLabel: bootstrapLabel(r.bootstrap) }), 'same / other / background share against depth with 95 % bootstrap intervals');
    }
    return out.commit(out.header(r.model, { ...r.options }, { dataset: r.dataset }), {
      index_base: 0,
      definition: OBJECTS_DEFINITION,
      bootstrap: r.bootstrap,
      images: r.images,
      skipped: r.skipped,
      interrupted: r.interrupted,
      patch_grid: r.patch_grid,
      layers: r.layers,
    });
  } catch (e) {
    out.abort();
    throw e;
  }
}
