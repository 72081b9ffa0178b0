/**
 * `svd`: the singular modes of every head (docs/method.md §2–4), weights only.
 *
 *   const r = await runSvd(spec, { vectors: 'float32' });   // in memory: statistics, U, V
 *   await writeSvd(r, 'runs/vit-b16');                       // summary.json, .npy, CSV, figures
 */
import { analyzeModel } from '../analysis/model-modes.js';
import { chanceBands, weightedMeanBand } from '../analysis/chance.js';
import type { HeadModes } from '../analysis/types.js';
import type { VitSpec } from '../arch/spec.js';
import { heatmapFigure } from '../report/figures/heatmap.js';
import { headsFigure } from '../report/figures/heads.js';
import { RunDir, modelInfo, type ModelInfo } from '../store/run-dir.js';
import type { HeadSummary, LayerSummary, SvdStats } from '../store/svd-run.js';
import { jobContext, type JobContext } from './job.js';

export interface SvdOptions {
  /** Compute threads; default 1 for models whose q/k weights are under 128 MB, else all cores (at most 8). */
  threads?: number;
  /** Keep U and V in this dtype (default float32), or not at all (false: statistics only). */
  vectors?: 'float32' | 'float64' | false;
  /** What the user passed as <model> (a path or hub id), recorded in the manifest. */
  input?: string;
}

export interface SvdResult {
  model: ModelInfo;
  options: { threads: number | null; vectors: 'float32' | 'float64' | false };
  stats: SvdStats;
  /** [L, H, d_h] σ_n (unscaled), descending. */
  sigma: Float64Array;
  /** [L, H, d_h] c_n = u_n·v_n. */
  cosine: Float64Array;
  /** [L, H, d_h] relative gap. */
  relGap: Float64Array;
  /** [L, H] Σσc/Σσ and plain mean of c. */
  headWeighted: Float64Array;
  headMean: Float64Array;
  /** [L, H, d] s = W_kᵀ b_q. */
  salience: Float64Array;
  /** [L, H, d, d_h]: column n is u_n / v_n (null without `vectors`). */
  U: Float32Array | Float64Array | null;
  V: Float32Array | Float64Array | null;
}

/** Small models: one thread. A second costs ~80 MB of fixed V8 memory and a start-up that a ViT-B's ~0.5 s of work does not win back. */
export const SMALL_MODEL_QK_BYTES = 128 * 2 ** 20;

export function defaultSvdThreads(spec: VitSpec): number | undefined {
  const qkBytes = spec.layers * 2 * spec.width * spec.heads * spec.headDim * 4;
  return qkBytes < SMALL_MODEL_QK_BYTES ? 1 : undefined;
}

const depthOf = (l: number, L: number) => (L > 1 ? l / (L - 1) : 0);
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

export async function runSvd(spec: VitSpec, opts: SvdOptions = {}, context?: Partial<JobContext>): Promise<SvdResult> {
  const ctx = jobContext(context);
  const { layers: L, heads: H, width: d, headDim: dh } = spec;
  const vectors = opts.vectors ?? 'float32';
  const sigma = new Float64Array(L * H * dh);
  const cosine = new Float64Array(L * H * dh);
  const gaps = new Float64Array(L * H * dh);
  const hw = new Float64Array(L * H);
  const hm = new Float64Array(L * H);
  const salience = new Float64Array(L * H * d);
  // [L, H, d, d_h] (column n = u_n, the layout numpy users expect), filled by the analysis
  // threads themselves (shared memory), with no per-head copies.
  const shared = (n: number) => (vectors === 'float64' ? new Float64Array(new SharedArrayBuffer(8 * n)) : new Float32Array(new SharedArrayBuffer(4 * n)));
  const U = vectors === false ? null : shared(L * H * d * dh);
  const V = vectors === false ? null : shared(L * H * d * dh);
  const layers: LayerSummary[] = [];
  const chance = chanceBands(d);

  const threads = opts.threads ?? defaultSvdThreads(spec);
  const nonfiniteHeads: string[] = [];
  ctx.progress.start('svd', L, { unit: 'layers' });
  try {
    await analyzeModel(spec, {
      threads,
      vectors: U && V ? { U, V } : false,
      onLayer: (l: number, heads: HeadModes[]) => {
        const hs: HeadSummary[] = [];
        for (const m of heads) {
          const h = m.head;
          const base = (l * H + h) * dh;
          sigma.set(m.sigma, base);
          cosine.set(m.cosine, base);
          gaps.set(m.relGap, base);
          hw[l * H + h] = m.weightedCosine;
          hm[l * H + h] = m.meanCosine;
          if (m.salience) salience.set(m.salience, (l * H + h) * d);
          // --allow-nonfinite: NaN/Inf weights give non-finite σ or c; mark the head, never average it in silently.
          const nonfinite = !m.sigma.every(Number.isFinite) || !m.cosine.every(Number.isFinite) || !Number.isFinite(m.salienceNorm);
          if (nonfinite) nonfiniteHeads.push(`L${l} H${h}`);
          const ssum = m.sigma.reduce((a, b) => a + b, 0);
          const w = Array.from(m.sigma, (s) => (ssum > 0 ? s / ssum : 1 / dh));
          hs.push({
            head: h,
            weighted_cosine: m.weightedCosine,
            mean_cosine: m.meanCosine,
            weighted_band95: weightedMeanBand(d, w, 0.95),
            weighted_band99: weightedMeanBand(d, w, 0.99),
            sigma: Array.from(m.sigma),
            cosine: Array.from(m.cosine),
            rel_gap: Array.from(m.relGap),
            min_rel_gap: Math.min(...m.relGap),
            salience_norm: m.salienceNorm,
            ...(nonfinite ? { nonfinite: true } : {}),
          });
        }
        hs.sort((a, b) => a.head - b.head);
        layers.push({
          layer: l,
          depth: depthOf(l, L),
          mean_weighted_cosine: mean(hs.filter((x) => !x.nonfinite).map((x) => x.weighted_cosine)),
          mean_plain_cosine: mean(hs.filter((x) => !x.nonfinite).map((x) => x.mean_cosine)),
          heads: hs,
        });
        ctx.progress.advance(1);
      },
    });
  } finally {
    ctx.progress.end();
  }
  if (nonfiniteHeads.length) {
    ctx.progress.note(
      `warning: ${nonfiniteHeads.length} head${nonfiniteHeads.length === 1 ? '' : 's'} with non-finite weights (${nonfiniteHeads.slice(0, 8).join(', ')}${nonfiniteHeads.length > 8 ? ', …' : ''}): ` +
        'marked "nonfinite": true in summary.json and left out of the layer means',
    );
  }
  layers.sort((a, b) => a.layer - b.layer);
  const stats: SvdStats = {
    kind: 'svd',
    dims: { layers: L, heads: H, kv_heads: spec.kvHeads, width: d, head_dim: dh },
    index_base: 0,
    sigma_scale: 'unscaled: σ_n are the singular values of W_qᵀW_k; the attention logit uses σ_n/sqrt(d_h)',
    sign_convention: '(u_n, v_n) flipped jointly so that the entry of u_n with the largest magnitude is positive (lowest index on ties)',
    space: 'the LayerNorm output x = LN(h) feeding the attention (γ and β included); biases enter only through key_salience',
    rel_gap_definition: 'min(|σ_n − σ_{n−1}|, |σ_n − σ_{n+1}|) / σ_1; near 0 means u_n, v_n are not individually identifiable',
    chance: {
      d,
      mode95: chance.mode95,
      mode99: chance.mode99,
      weighted_mean_method: 'Σ w_n c_n with independent c_n, (c+1)/2 ~ Beta((d−1)/2,(d−1)/2): variance Σw²/d, Cornish–Fisher with the exact 4th cumulant',
    },
    layers,
  };
  return {
    model: modelInfo(spec, opts.input ?? spec.modelId),
    options: { threads: threads ?? null, vectors },
    stats,
    sigma,
    cosine,
    relGap: gaps,
    headWeighted: hw,
    headMean: hm,
    salience,
    U,
    V,
  };
}

/** The run's two figures as SVG: the layer × head heat map and the per-head panels. */
export function svdFigures(r: Pick<SvdResult, 'model' | 'stats'>): { heatmap: string; heads: string } {
  const s = r.stats;
  return {
    heatmap: heatmapFigure({
      title: r.model.id,
      subtitle: 'σ-weighted cosine Σσₙcₙ/Σσₙ of each head (LayerNorm space; indices 0-based)',
      values: s.layers.map((l) => l.heads.map((h) => h.weighted_cosine)),
    }),
    heads: headsFigure({
      title: r.model.id,
      subtitle: `mode cosines cₙ = uₙ·vₙ (dots), 95% chance band for d=${s.dims.width} (grey), σₙ/σ_max (line); 0-based`,
      layers: s.layers.map((l) => ({
        layer: l.layer,
        heads: l.heads.map((h) => ({ head: h.head, sigma: h.sigma, cosine: h.cosine, weightedCosine: h.weighted_cosine, band95: s.chance.mode95 })),
      })),
    }),
  };
}

function headsCsv(s: SvdStats): (string | number)[][] {
  const rows: (string | number)[][] = [
    ['layer', 'head', 'depth', 'weighted_cosine', 'mean_cosine', 'weighted_band95_lo', 'weighted_band95_hi', 'weighted_band99_lo', 'weighted_band99_hi', 'sigma_max', 'sigma_sum', 'top_mode_cosine', 'min_rel_gap', 'salience_norm'],
  ];
  for (const l of s.layers)
    for (const h of l.heads)
      rows.push([l.layer, h.head, l.depth, h.weighted_cosine, h.mean_cosine, h.weighted_band95.lo, h.weighted_band95.hi, h.weighted_band99.lo, h.weighted_band99.hi, h.sigma[0], h.sigma.reduce((a, b) => a + b, 0), h.cosine[0], h.min_rel_gap, h.salience_norm]);
  return rows;
}

/** Writes an svd run directory (summary.json last: its presence marks a complete run). */
export async function writeSvd(r: SvdResult, dir: string, opts: { figures?: boolean } = {}): Promise<string> {
  const { layers: L, heads: H, width: d, head_dim: dh } = r.stats.dims;
  const out = new RunDir(dir, 'svd', { manifest: 'summary.json', refuseOtherCommand: true });
  // The figures rasterise on libuv's threads while this thread writes the arrays.
  let figures: Promise<unknown> | null = null;
  try {
    if (opts.figures !== false) {
      const f = svdFigures(r);
      figures = Promise.all([
        out.figure('heatmap', f.heatmap, 'layer × head σ-weighted cosine'),
        out.figure('heads', f.heads, 'per-head panels: mode cosines with the 95% chance band, σ/σ_max'),
      ]);
      figures.catch(() => {}); // awaited below; no unhandled rejection while the arrays are written
    }
    out.npy('singular_values.npy', '<f8', [L, H, dh], r.sigma, 'float64 [L,H,d_h]: σ_n of W_qᵀW_k (unscaled), descending');
    out.npy('cosine.npy', '<f8', [L, H, dh], r.cosine, 'float64 [L,H,d_h]: c_n = u_n·v_n');
    out.npy('rel_gap.npy', '<f8', [L, H, dh], r.relGap, 'float64 [L,H,d_h]: relative singular-value gap of mode n');
    out.npy('head_weighted_cosine.npy', '<f8', [L, H], r.headWeighted, 'float64 [L,H]: Σσ_n c_n / Σσ_n');
    out.npy('head_mean_cosine.npy', '<f8', [L, H], r.headMean, 'float64 [L,H]: plain mean of c_n');
    if (r.U && r.V) {
      const dt = r.U instanceof Float64Array ? '<f8' : '<f4';
      out.npy('U.npy', dt, [L, H, d, dh], r.U, '[L,H,d,d_h]: column n is u_n (query side)');
      out.npy('V.npy', dt, [L, H, d, dh], r.V, '[L,H,d,d_h]: column n is v_n (key side)');
    }
    out.npy('key_salience.npy', '<f8', [L, H, d], r.salience, 'float64 [L,H,d]: s = W_kᵀ b_q (zeros where the query has no bias)');
    out.csv('heads.csv', headsCsv(r.stats), 'one row per head: layer, head, depth, weighted/mean cosine, bands, σ stats, salience norm');
    await figures;
    return out.commit(out.header(r.model, { ...r.options }, { model: r.model.input }), { ...r.stats });
  } catch (e) {
    await figures?.catch(() => {}); // let them finish before their partial files are removed
    out.abort();
    throw e;
  }
}
