/**
 * The explorer's weight-side payloads (src/api-types.ts) from a run directory's stored files:
 * the run list entry, the Models view's curves, a head's and a mode's numbers, the stored
 * anisotropy baseline. Pure reads of summary.json, U/V/key_salience.npy and run.db, so the
 * static site (`qkscope export`, jobs/export.ts) shows exactly what `serve` shows; the image-side
 * payloads (maps, decompositions) need the model and are computed where it runs.
 */
import { basename } from 'node:path';
import type * as A from '../api-types.js';
import { layerCurve } from '../analysis/compare.js';
import type { NpyArray } from '../io/npy.js';
import { readStoredBaseline, type SvdSummary } from './svd-run.js';
import type { TopkImageLocator, TopkReader } from './scan-run.js';

export interface ExplorerRun {
  id: string;
  dir: string;
  summary: SvdSummary;
  /** The run's scan database (run.db), or null. */
  scan: TopkReader | null;
  /** A whole array of the run (throws when it is missing). */
  array(file: 'U.npy' | 'V.npy' | 'key_salience.npy'): NpyArray;
}

export const MAPS_DEFINITION = 'Q(t) = sign·x_t·u_n, K(t) = sign·x_t·v_n over the patch tokens (raster order), x = LN(h) feeding the block; S = max Q × max K';

/**
 * The Mode view's payload around its images, the same for `serve` (computed now) and the static
 * site (stored by `export`, with its own image type).
 */
export function modeMapsPayload<I>(
  run: string,
  at: { layer: number; head: number; mode: number },
  layout: { grid: [number, number]; imageSize: [number, number]; patchSize: number },
  images: I[],
  refused: { count: number; hint: string | null },
  computeMs: number,
): Omit<A.ModeMaps, 'images'> & { images: I[] } {
  return {
    run,
    ...at,
    grid: layout.grid,
    image_size: layout.imageSize,
    patch_size: layout.patchSize,
    normalization: 'percentile',
    definition: MAPS_DEFINITION,
    images,
    refused: refused.count,
    refused_hint: refused.hint,
    compute_ms: computeMs,
  };
}
const SALIENCE_NOTE = 'key salience s = W_kᵀ b_q adds (s·x_j)/sqrt(d_h) to every query’s logit for key j; salience_along_v[n] = s·v_n';

/** Whether a run's model is a vision model (text runs have no image views). */
export function modalityOf(s: SvdSummary): 'vision' | 'text' {
  const m = (s.model as { modality?: string }).modality;
  if (m === 'text' || m === 'vision') return m;
  return /^text-/.test(s.model.family ?? '') ? 'text' : 'vision';
}

/** A short, path-free name for an image: the file name, or the member / row of its container. */
export function imageLabel(loc: Pick<TopkImageLocator, 'kind' | 'path' | 'container' | 'member'>): string {
  if (loc.kind === 'file') return basename(loc.path);
  if (loc.kind === 'tar') return `${basename(loc.container)}#${basename(loc.member ?? '')}`;
  return `${basename(loc.container)}#row ${loc.member ?? '?'}`;
}

/** u_n (or v_n) of one head as float64 [d_h][d], mode-major, from U.npy / V.npy [L, H, d, d_h]. */
export function headVectors(a: NpyArray, l: number, h: number): Float64Array[] {
  const [, H, d, dh] = a.shape;
  const base = (l * H + h) * d * dh;
  const out: Float64Array[] = [];
  for (let n = 0; n < dh; n++) {
    const v = new Float64Array(d);
    for (let i = 0; i < d; i++) v[i] = Number(a.data[base + i * dh + n]);
    out.push(v);
  }
  return out;
}

/** s = W_kᵀ b_q of one head from key_salience.npy [L, H, d]. */
export function salienceVector(a: NpyArray, l: number, h: number): Float64Array {
  const [, H, d] = a.shape;
  const base = (l * H + h) * d;
  return Float64Array.from({ length: d }, (_, i) => Number(a.data[base + i]));
}

export function runBrief(r: ExplorerRun): A.RunBrief {
  const s = r.summary;
  return {
    id: r.id,
    label: s.model.id,
    family: s.model.family,
    modality: modalityOf(s),
    input: s.model.input ?? s.model.id,
    dims: s.dims,
    created: s.created,
    has_scan: !!r.scan,
    chance: { d: s.chance.d, mode95: s.chance.mode95 },
  };
}

/** One run of the Models view: the layer-mean curves with their chance bands, and every head's score. */
export function modelRun(r: ExplorerRun): A.ModelRun {
  const w = layerCurve(r.summary, 'weighted');
  const p = layerCurve(r.summary, 'plain');
  return {
    ...runBrief(r),
    depth: w.depth,
    weighted: { value: w.value, band95: w.band95 },
    plain: { value: p.value, band95: p.band95 },
    heads: r.summary.layers.map((l) => l.heads.map((h) => ({ weighted: h.weighted_cosine, plain: h.mean_cosine }))),
  };
}

/** The Head view. `withImages`: modes that have top images (`layer/head/mode`; default: the scan's). */
export function headDetail(r: ExplorerRun, l: number, h: number, withImages?: Set<string> | null): A.HeadDetail {
  const s = r.summary;
  const hs = s.layers[l].heads[h];
  const dh = s.dims.head_dim;
  let salAlongV: number[] | null = null;
  try {
    const sal = salienceVector(r.array('key_salience.npy'), l, h);
    salAlongV = headVectors(r.array('V.npy'), l, h).map((v) => v.reduce((a, x, i) => a + x * sal[i], 0));
  } catch {
    salAlongV = null;
  }
  let images = withImages;
  if (images === undefined) {
    try {
      images = r.scan?.modesWithImages() ?? null;
    } catch {
      images = null;
    }
  }
  return {
    run: r.id,
    model: s.model.id,
    modality: modalityOf(s),
    layer: l,
    head: h,
    depth: s.layers[l].depth,
    dims: s.dims,
    weighted_cosine: hs.weighted_cosine,
    mean_cosine: hs.mean_cosine,
    weighted_band95: hs.weighted_band95,
    weighted_band99: hs.weighted_band99,
    chance: { mode95: s.chance.mode95, mode99: s.chance.mode99 },
    sigma_scale: s.sigma_scale,
    salience_norm: hs.salience_norm,
    salience_along_v: salAlongV,
    salience_note: SALIENCE_NOTE,
    has_scan: !!r.scan,
    modes: hs.sigma.map((sg, n) => ({
      mode: n,
      sigma: sg,
      sigma_scaled: sg / Math.sqrt(dh),
      cosine: hs.cosine[n],
      rel_gap: hs.rel_gap[n],
      has_images: images ? images.has(`${l}/${h}/${n}`) : false,
    })),
  };
}

/** The Mode view's numbers and the scan's top list of the mode (both signs). */
export function modeDetail(r: ExplorerRun, l: number, h: number, n: number): A.ModeDetail {
  const hs = r.summary.layers[l].heads[h];
  const top = r.scan ? r.scan.top(l, h, n) : [];
  const meta = r.scan?.meta() ?? null;
  const num = (v: unknown) => (typeof v === 'number' ? v : null);
  return {
    run: r.id,
    layer: l,
    head: h,
    mode: n,
    sigma: hs.sigma[n],
    sigma_scaled: hs.sigma[n] / Math.sqrt(r.summary.dims.head_dim),
    cosine: hs.cosine[n],
    rel_gap: hs.rel_gap[n],
    chance: { mode95: r.summary.chance.mode95, mode99: r.summary.chance.mode99 },
    has_scan: !!r.scan,
    scan: meta
      ? {
          embedding: typeof meta.embedding === 'string' ? meta.embedding : null,
          top_k: num(meta.top_k),
          image_count: num(meta.image_count),
          status: typeof meta.status === 'string' ? meta.status : null,
          layers: Array.isArray(meta.layers) ? (meta.layers as number[]) : null,
        }
      : null,
    top: top.map((t) => ({ sign: t.sign, rank: t.rank, label: imageLabel(t.locator), score: t.score, qmax: t.qmax, kmax: t.kmax, q_token: t.q_token, k_token: t.k_token })),
  };
}

/** A per-layer anisotropy baseline and where it came from. */
export interface BaselineValues {
  source: A.AnisotropySource;
  values: Map<number, { value: number; images: number | null; interval: [number, number] | null }>;
}

/** The run's stored baseline: anisotropy.json (qkscope anisotropy), else the scan's; null when it stores none. */
export function storedBaselineValues(r: Pick<ExplorerRun, 'dir' | 'summary' | 'scan'>): BaselineValues | null {
  const stored = readStoredBaseline(r.dir, r.summary);
  if (stored) return { source: stored.source, values: stored.layers };
  let fromDb: Map<number, { value: number; n: number | null }> | null = null;
  try {
    fromDb = r.scan?.anisotropy() ?? null;
  } catch {
    fromDb = null;
  }
  return fromDb ? { source: 'scan', values: new Map([...fromDb].map(([l, v]) => [l, { value: v.value, images: v.n, interval: null }])) } : null;
}

/** The Models view's anisotropy payload for a baseline: values per layer, the relative curves, and what it is. */
export function anisotropyPayload(r: Pick<ExplorerRun, 'id' | 'summary'>, b: BaselineValues, definition: string): A.Anisotropy {
  const L = r.summary.dims.layers;
  const layers: A.AnisotropyLayerValue[] = Array.from({ length: L }, (_, l) => {
    const v = b.values.get(l);
    return { layer: l, depth: r.summary.layers[l].depth, value: v && Number.isFinite(v.value) ? v.value : null, images: v?.images ?? null, interval: v?.interval ?? null };
  });
  const images = Math.max(0, ...layers.map((x) => x.images ?? 0));
  const baseline = layers.map((x) => (x.value === null ? NaN : x.value));
  const w = layerCurve(r.summary, 'weighted', baseline);
  const p = layerCurve(r.summary, 'plain', baseline);
  const what = { 'anisotropy.json': 'the run’s anisotropy.json (qkscope anisotropy)', scan: 'the run’s scan', live: `computed here from ${images} images (the run stores none)` }[b.source];
  const covered = layers.filter((x) => x.value !== null).length;
  return {
    available: covered > 0,
    ...(covered ? {} : { reason: `the baseline covers no layer of run ${r.id}` }),
    source: b.source,
    description: `baseline from ${what}${b.source === 'live' ? '' : `, ${images} images`}${covered < L ? `, ${covered} of ${L} layers` : ''}`,
    images,
    definition,
    layers,
    relative: { weighted: { value: w.value, band95: w.band95 }, plain: { value: p.value, band95: p.band95 } },
  };
}

/** The run's stored anisotropy baseline as the Models view reads it; null when the run stores none. */
export function storedAnisotropy(r: ExplorerRun, definition: string): A.Anisotropy | null {
  const b = storedBaselineValues(r);
  return b ? anisotropyPayload(r, b, definition) : null;
}
