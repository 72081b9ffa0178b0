/**
 * `contributions`: one head's singular modes ranked by their contribution to the attention
 * scores on one image (paper figure 5, docs/method.md §5).
 *
 *   const r = await runContributions(spec, { source, index: 0 }, { layer: 5, head: 3 });
 *   await writeContributions(r, 'runs/contrib');   // contributions.json/.csv, maps, figure
 *
 * The image comes from any ImageSource (the CLI's one-file listing, the explorer's images), so
 * the server and the CLI compute the same numbers. With a source that keeps crops
 * (`ListingSource(..., { keepCrops: true })`) the figure draws the maps over the photo.
 */
import { basename } from 'node:path';
import type { VitSpec } from '../arch/spec.js';
import { checkLayerHead, headWeights } from '../arch/head-weights.js';
import { patchToken, type TokenLayout } from '../arch/tokens.js';
import { UserError } from '../errors.js';
import type { RgbImage } from '../images/decode.js';
import type { ImageSource } from '../images/source.js';
import { pngDataUri, rgbToPng } from '../io/png.js';
import { headModes } from '../analysis/modes.js';
import type { HeadModes } from '../analysis/types.js';
import { modeContributions, type ContributionResult } from '../analysis/contributions.js';
import { BadImageError, imageBatches } from '../runtime/batch-loop.js';
import type { Device } from '../runtime/device.js';
import { relPosBiasHead, scoresTap } from '../runtime/taps.js';
import { VitRuntime } from '../runtime/vit-runtime.js';
import { normaliseMap, overlayRgb, upsampleGrid } from '../report/overlay.js';
import { contributionsFigure } from '../report/figures/contributions.js';
import { RunDir, modelInfo, type ModelInfo } from '../store/run-dir.js';
import { jobContext, type JobContext } from './job.js';

export const CONTRIBUTION_DEFINITION =
  'C_n = Σ_{i∈R} Σ_j A_ij σ_n (x_i·u_n)(v_n·x_j)/sqrt(d_h): x = LayerNorm output feeding the block, A = the model’s attention of this head, ' +
  'j over all tokens, R = all tokens (or the --query-patch token); σ_n of W_qᵀW_k (unscaled). Bias terms get the same weighting: ' +
  'key_bias = Σ A_ij b_q·W_k x_j/√d_h, query_bias = Σ A_ij W_q x_i·b_k/√d_h, constant = Σ A_ij b_q·b_k/√d_h, relative_position = Σ A_ij r_ij. ' +
  'Σ_n C_n + bias terms = Σ_{i∈R} Σ_j A_ij a_ij. Modes ranked by C_n, largest first. ' +
  'orientation: the figure draws s·Q_n, s·K_n with s = −1 when query tokens with Q_n < 0 carry more of C_n than those with Q_n > 0 ((u,v) → (−u,−v) is the same mode).';

export interface ContributionsOptions {
  layer: number;
  head: number;
  /** Only this query patch (row, col of the patch grid, 0-based); default every query token. */
  queryPatch?: [number, number];
  device?: Device;
  threads?: number;
  /** What the user passed as <model>. */
  input?: string;
}

/** Which image: image `index` (default 0) of `source`. */
export interface ContributionsImage {
  source: ImageSource;
  index?: number;
}

export interface ContributionsResult {
  model: ModelInfo;
  options: { layer: number; head: number; query_patch: [number, number] | null; device: Device };
  /** How the source names the image. */
  image: string;
  layout: TokenLayout;
  /** Query token indices R. */
  rows: number[];
  result: ContributionResult;
  /** The model's crop of the photo (when the source keeps crops). */
  crop: RgbImage | null;
}

export async function runContributions(spec: VitSpec, image: ContributionsImage, opts: ContributionsOptions, context?: Partial<JobContext>): Promise<ContributionsResult> {
  const ctx = jobContext(context);
  const { layer: l, head: h } = opts;
  checkLayerHead(spec, l, h);
  const { source } = image;
  const index = image.index ?? 0;
  if (!Number.isInteger(index) || index < 0 || index >= source.count) throw new UserError(`image ${index}: the source has images 0..${source.count - 1}`);
  const tap = scoresTap([l]);
  const rt = await VitRuntime.create(spec, { outputs: { ln: [l], attention: [l] }, imageSize: source.imageSize, device: opts.device, threads: opts.threads, extend: tap.extend });
  let run;
  let crop: RgbImage | null = null;
  ctx.progress.start('contributions', 1);
  try {
    for await (const b of imageBatches(source, { ids: [index], batch: 1, progress: ctx.progress, onBadImage: 'fail' })) {
      crop = b.items[0].info.crop ?? null;
      run = await rt.run(b.pixels, 1);
    }
  } catch (e) {
    if (e instanceof BadImageError) throw new UserError(`${e.label}: ${e.reason}`);
    throw e;
  } finally {
    ctx.progress.end();
    await rt.close();
  }
  if (!run) throw new Error('contributions: the image did not run');
  const layout = rt.layout;
  const T = layout.tokens;
  const [R, C] = layout.grid;
  let rows: number[];
  if (opts.queryPatch) {
    const [r, c] = opts.queryPatch;
    if (r >= R || c >= C) throw new UserError(`--query-patch ${r},${c}: the patch grid is ${R}x${C} (rows 0..${R - 1}, columns 0..${C - 1})`);
    rows = [patchToken(layout, r, c)];
  } else rows = Array.from({ length: T }, (_, i) => i);
  const per = T * T;
  const { result } = await contributionsOf(
    spec,
    { layout, x: run.ln!, attention: run.attention!.subarray(h * per, (h + 1) * per), scores: tap.found() ? run.extra[`scores.${l}`].data.subarray(h * per, (h + 1) * per) : null },
    { layer: l, head: h, rows },
  );
  return {
    model: modelInfo(spec, opts.input ?? spec.modelId),
    options: { layer: l, head: h, query_patch: opts.queryPatch ?? null, device: rt.device },
    image: source.label(index),
    layout,
    rows,
    result,
    crop,
  };
}

/** Head `h` of block `l`'s singular modes from the model's weights (as svd computes them; grouped-query heads mapped). */
export async function modesOf(spec: VitSpec, l: number, h: number): Promise<HeadModes> {
  checkLayerHead(spec, l, h);
  const w = await headWeights(spec, l, h);
  return headModes(w.wq, w.wk, w.bq, spec.width, spec.headDim, l, h);
}

/** What one forward pass gave for one block of one image. */
export interface HeadActivations {
  layout: TokenLayout;
  /** LayerNorm output feeding the block, [T, d]. */
  x: ArrayLike<number>;
  /** This head's attention probabilities, [T, T]. */
  attention: ArrayLike<number>;
  /** This head's pre-softmax scores as the model computed them, [T, T] (null: not tapped). */
  scores: ArrayLike<number> | null;
}

/**
 * The contributions of head `head` of block `layer` from activations already computed (the
 * explorer keeps a runtime open and calls this per request; `runContributions` runs the image
 * first): modes from the weights (grouped-query mapping included), relative position bias as the
 * runtime adds it. `rows`: the query tokens R; `modes`: `modesOf(spec, layer, head)` when the caller keeps them.
 */
export async function contributionsOf(
  spec: VitSpec,
  act: HeadActivations,
  o: { layer: number; head: number; rows: number[]; modes?: HeadModes },
): Promise<{ result: ContributionResult; modes: HeadModes; relPos: Float64Array | null }> {
  const { layer: l, head: h } = o;
  checkLayerHead(spec, l, h);
  const T = act.layout.tokens, d = spec.width, dh = spec.headDim;
  const w = await headWeights(spec, l, h);
  const modes = o.modes ?? headModes(w.wq, w.wk, w.bq, d, dh, l, h);
  const relPos = await relPosBiasHead(spec, l, h, act.layout);
  const result = modeContributions({ x: act.x, T, d, dh, wq: w.wq, wk: w.wk, bq: w.bq, bk: w.bk, modes, attention: act.attention, relPos, rows: o.rows, modelScores: act.scores });
  return { result, modes, relPos };
}

/** Mode maps over the patch tokens only, [modes, P] float32 (mode index order). */
function patchMaps(M: Float64Array, modes: number, layout: TokenLayout): Float32Array {
  const { tokens: T, patches: P, patchStart: ps } = layout;
  const o = new Float32Array(modes * P);
  for (let n = 0; n < modes; n++) for (let p = 0; p < P; p++) o[n * P + p] = M[n * T + ps + p];
  return o;
}

/** The manifest's own fields (everything but the header). */
export function contributionsSummary(r: ContributionsResult): Record<string, unknown> {
  const res = r.result;
  return {
    input: r.model.input,
    image: r.image,
    index_base: 0,
    layer: r.options.layer,
    head: r.options.head,
    query: r.options.query_patch ? { patch: r.options.query_patch, token: r.rows[0] } : 'all tokens',
    embedding: 'ln',
    definition: CONTRIBUTION_DEFINITION,
    sigma_scale: 'σ_n of W_qᵀW_k, not divided by sqrt(d_h) (the 1/sqrt(d_h) is in the contribution)',
    modes: res.modes,
    terms: res.terms,
    total: res.total,
    sum_check: { modes_plus_terms: res.modes.reduce((a, m) => a + m.contribution, 0) + Object.values(res.terms).reduce((a, b) => a + b, 0), total: res.total },
    residual: {
      relative_to_model_scores: res.check.model_relative,
      relative_to_float64_logits: res.check.direct_relative,
      softmax_vs_model_attention_max_abs: res.check.softmax_max_abs,
      note: 'max |Σ_n parts + bias terms − logits| / max |logits| over the rows; model scores are the graph’s own pre-softmax tensor (float32)',
    },
    maps_order: 'mode index (not rank); patch tokens only, raster order',
    patch_grid: r.layout.grid,
  };
}

/** The figure's SVG: the top `top` modes' maps over the photo, the ranked bars, the bias terms. */
export async function contributionsSvg(r: ContributionsResult, top = 8): Promise<string> {
  const res = r.result;
  const layout = r.layout;
  const nm = res.modes.length;
  const P = layout.patches;
  const [R, C] = layout.grid;
  const [ih, iw] = layout.imageSize;
  const qm = patchMaps(res.Q, nm, layout), km = patchMaps(res.K, nm, layout);
  const photo = r.crop ?? { data: new Uint8Array(iw * ih * 3).fill(128), width: iw, height: ih };
  const png = async (rgb: Uint8Array) => pngDataUri(await rgbToPng(rgb, photo.width, photo.height, 224));
  const k = Math.min(top, nm);
  const ranked = res.modes.slice(0, k);
  const tiles = [];
  for (const m of ranked) {
    const s = m.orientation;
    const q = normaliseMap(Array.from(qm.subarray(m.mode * P, (m.mode + 1) * P), (v) => s * v));
    const kk = normaliseMap(Array.from(km.subarray(m.mode * P, (m.mode + 1) * P), (v) => s * v));
    const href = await png(overlayRgb(photo.data, photo.width, photo.height, upsampleGrid(q, R, C, photo.height, photo.width), upsampleGrid(kk, R, C, photo.height, photo.width)));
    tiles.push({ label: `M${m.mode}${s < 0 ? ' (−u,−v)' : ''}`, contribution: m.contribution, share: m.share, cosine: m.cosine, href });
  }
  const rest = res.modes.slice(k);
  const bars = ranked.map((m) => ({ label: `M${m.mode}`, value: m.contribution }));
  const restInfo = { count: rest.length, value: rest.reduce((a, m) => a + m.contribution, 0), share: rest.reduce((a, m) => a + m.share, 0) };
  const t = res.terms;
  const terms = [{ label: 'key bias', value: t.key_bias }, ...(t.relative_position !== 0 ? [{ label: 'rel. position', value: t.relative_position }] : [])];
  const q = r.options.query_patch;
  const fmt = (v: number) => v.toPrecision(3).replace('-', '\u2212');
  return contributionsFigure({
    title: `${r.model.id}: mode contributions, layer ${r.options.layer} head ${r.options.head}`,
    subtitle: `${basename(r.image)}${q ? `, query patch ${q.join(',')}` : ', all queries'}; 0-based; maps: query red, key cyan, white both`,
    photo: r.crop ? await png(r.crop.data) : null,
    grid: [R, C],
    queryPatch: q ?? undefined,
    tiles,
    bars,
    rest: restInfo,
    terms,
    note: `(%) = C/Σ|C| over all modes. Query bias ${fmt(t.query_bias)} and constant ${fmt(t.constant)} are constant along each query row and cancel in the softmax; Σ A·logit = ${fmt(res.total)}`,
  });
}

export interface ContributionsWriteOptions {
  figures?: boolean;
  /** Modes drawn in the figure (default 8). */
  top?: number;
}

/** Writes contributions.json (manifest), contributions.csv, query_maps.npy, key_maps.npy, logits.npy and the figure. */
export async function writeContributions(r: ContributionsResult, dir: string, opts: ContributionsWriteOptions = {}): Promise<string> {
  const res = r.result;
  const nm = res.modes.length;
  const [R, C] = r.layout.grid;
  const T = r.layout.tokens;
  const out = new RunDir(dir, 'contributions');
  try {
    out.csv(
      'contributions.csv',
      [['rank', 'mode', 'sigma', 'cosine', 'contribution', 'share', 'orientation'], ...res.modes.map((m) => [m.rank, m.mode, m.sigma, m.cosine, m.contribution, m.share, m.orientation])],
      'one row per mode, ranked by contribution',
    );
    out.npy('query_maps.npy', '<f4', [nm, R, C], patchMaps(res.Q, nm, r.layout), 'float32 [modes,rows,cols]: Q_n(p) = x_p·u_n over the patch grid (mode index order)');
    out.npy('key_maps.npy', '<f4', [nm, R, C], patchMaps(res.K, nm, r.layout), 'float32 [modes,rows,cols]: K_n(p) = x_p·v_n over the patch grid (mode index order)');
    out.npy('logits.npy', '<f8', [r.rows.length, T], res.logits, 'float64 [rows,T]: reconstructed logits of the query rows (Σ_n parts + bias terms)');
    if (opts.figures !== false) await out.figure('contributions', await contributionsSvg(r, opts.top), 'top modes’ query (red) and key (cyan) maps over the photo; ranked contributions; bias terms');
    return out.commit(out.header(r.model, { ...r.options, top: opts.top ?? 8, figures: opts.figures !== false }, { model: r.model.input, image: r.image }), contributionsSummary(r));
  } catch (e) {
    out.abort();
    throw e;
  }
}
