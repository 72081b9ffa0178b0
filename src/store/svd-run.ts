import { writeFileSync, renameSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { analyzeModel } from '../analysis/model-modes.js';
import { chanceBands, weightedMeanBand } from '../analysis/chance.js';
import type { Band, HeadModes } from '../analysis/types.js';
import type { VitSpec } from '../arch/spec.js';
import { UserError } from '../errors.js';
import { NpyStreamWriter, writeNpy } from '../report/npy.js';
import { toCsv } from '../report/csv.js';
import { VERSION } from '../version.js';
import { ensureDir } from './ensure-dir.js';

/** Per-head statistics kept for summary.json (everything but the d-length vectors). */
export interface HeadSummary {
  head: number;
  weighted_cosine: number;
  mean_cosine: number;
  weighted_band95: Band;
  weighted_band99: Band;
  sigma: number[];
  cosine: number[];
  rel_gap: number[];
  min_rel_gap: number;
  salience_norm: number;
}

export interface LayerSummary {
  layer: number;
  depth: number;
  mean_weighted_cosine: number;
  mean_plain_cosine: number;
  heads: HeadSummary[];
}

/** The content of summary.json (format documented in the README). */
export interface SvdSummary {
  tool: { name: 'qkscope'; version: string };
  kind: 'svd';
  created: string;
  model: { id: string; input: string; family: string; modality: string; notes: string[] };
  dims: { layers: number; heads: number; kv_heads: number; width: number; head_dim: number };
  index_base: 0;
  sigma_scale: string;
  sign_convention: string;
  space: string;
  rel_gap_definition: string;
  chance: { d: number; mode95: Band; mode99: Band; weighted_mean_method: string };
  layers: LayerSummary[];
  files: Record<string, string>;
}

export interface SvdRunOptions {
  /** Output directory; when absent nothing is written (compare on models). */
  outDir?: string;
  threads?: number;
  /** dtype of U.npy / V.npy. */
  vectorsDtype?: 'float32' | 'float64';
  /** What the user passed as <model> (a path or hub id), recorded in the summary. */
  input?: string;
  /** Called after each layer (progress). */
  onLayer?: (layer: number, total: number) => void;
}

const FILES: Record<string, string> = {
  'summary.json': 'everything below except the vectors; per layer and head: σ, cosines, gaps, head means, chance bands',
  'singular_values.npy': 'float64 [L,H,d_h]: σ_n of W_qᵀW_k (unscaled), descending',
  'cosine.npy': 'float64 [L,H,d_h]: c_n = u_n·v_n',
  'rel_gap.npy': 'float64 [L,H,d_h]: relative singular-value gap of mode n',
  'head_weighted_cosine.npy': 'float64 [L,H]: Σσ_n c_n / Σσ_n',
  'head_mean_cosine.npy': 'float64 [L,H]: plain mean of c_n',
  'U.npy': '[L,H,d,d_h]: column n is u_n (query side)',
  'V.npy': '[L,H,d,d_h]: column n is v_n (key side)',
  'key_salience.npy': 'float64 [L,H,d]: s = W_kᵀ b_q (zeros where the query has no bias)',
  'heads.csv': 'one row per head: layer, head, depth, weighted/mean cosine, bands, σ stats, salience norm',
  'heatmap.svg/.png': 'layer × head σ-weighted cosine',
  'heads.svg/.png': 'per-head panels: mode cosines with the 95% chance band, σ/σ_max',
};

function depthOf(l: number, L: number): number {
  return L > 1 ? l / (L - 1) : 0;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/**
 * Runs the weight-only analysis of METHOD.md §2–4 on a spec, streaming each layer's vectors to
 * disk, and returns the summary. Writes into `<out>.partial` files renamed at the end so an
 * interrupted run never leaves a directory that looks complete.
 */
export async function runSvd(spec: VitSpec, opts: SvdRunOptions = {}): Promise<SvdSummary> {
  const { layers: L, heads: H, width: d, headDim: dh } = spec;
  const out = opts.outDir;
  const vdt = opts.vectorsDtype === 'float64' ? '<f8' : '<f4';
  let uw: NpyStreamWriter | null = null;
  let vw: NpyStreamWriter | null = null;
  if (out) {
    ensureDir(out);
    if (existsSync(join(out, 'summary.json'))) {
      const prev = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as { kind?: string };
      if (prev.kind !== 'svd') throw new UserError(`${out}: already holds a run of another kind; choose another --out`);
    }
    uw = NpyStreamWriter.create(join(out, 'U.npy.partial'), vdt, [L, H, d, dh]);
    vw = NpyStreamWriter.create(join(out, 'V.npy.partial'), vdt, [L, H, d, dh]);
  }
  const sigma = new Float64Array(L * H * dh);
  const cosine = new Float64Array(L * H * dh);
  const gaps = new Float64Array(L * H * dh);
  const hw = new Float64Array(L * H);
  const hm = new Float64Array(L * H);
  const salience = new Float64Array(L * H * d);
  const layers: LayerSummary[] = [];
  const chance = chanceBands(d);
  const colBuf = vdt === '<f8' ? new Float64Array(d * dh) : new Float32Array(d * dh);

  // Mode-major rows (u_n) → [d, d_h] columns, the layout numpy users expect (U[..., :, n]).
  const writeVectors = (w: NpyStreamWriter, m: Float64Array, l: number, h: number) => {
    for (let n = 0; n < dh; n++) for (let i = 0; i < d; i++) colBuf[i * dh + n] = m[n * d + i];
    w.writeAt((l * H + h) * d * dh, colBuf);
  };

  // Small models: one thread. A second one costs ~80 MB of fixed V8 memory and a start-up that
  // a ViT-B's ~0.5 s of work does not win back; large models (ViT-L/H) use every core.
  const qkBytes = L * 2 * d * H * dh * 4;
  await analyzeModel(spec, {
    threads: opts.threads ?? (qkBytes < 128 * 2 ** 20 ? 1 : undefined),
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
        if (uw && vw) {
          writeVectors(uw, m.U, l, h);
          writeVectors(vw, m.V, l, h);
        }
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
        });
      }
      hs.sort((a, b) => a.head - b.head);
      layers.push({
        layer: l,
        depth: depthOf(l, L),
        mean_weighted_cosine: mean(hs.map((x) => x.weighted_cosine)),
        mean_plain_cosine: mean(hs.map((x) => x.mean_cosine)),
        heads: hs,
      });
      opts.onLayer?.(l, L);
    },
  });
  layers.sort((a, b) => a.layer - b.layer);

  const summary: SvdSummary = {
    tool: { name: 'qkscope', version: VERSION },
    kind: 'svd',
    created: new Date().toISOString(),
    model: { id: spec.modelId, input: opts.input ?? spec.modelId, family: spec.family, modality: spec.modality, notes: spec.notes ?? [] },
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
    files: out ? FILES : {},
  };

  if (out && uw && vw) {
    uw.close();
    vw.close();
    writeNpy(join(out, 'singular_values.npy'), '<f8', [L, H, dh], sigma);
    writeNpy(join(out, 'cosine.npy'), '<f8', [L, H, dh], cosine);
    writeNpy(join(out, 'rel_gap.npy'), '<f8', [L, H, dh], gaps);
    writeNpy(join(out, 'head_weighted_cosine.npy'), '<f8', [L, H], hw);
    writeNpy(join(out, 'head_mean_cosine.npy'), '<f8', [L, H], hm);
    writeNpy(join(out, 'key_salience.npy'), '<f8', [L, H, d], salience);
    writeFileSync(join(out, 'heads.csv'), headsCsv(summary));
    renameSync(join(out, 'U.npy.partial'), join(out, 'U.npy'));
    renameSync(join(out, 'V.npy.partial'), join(out, 'V.npy'));
    // summary.json last: its presence marks a complete run.
    writeFileSync(join(out, 'summary.json'), JSON.stringify(summary, null, 1) + '\n');
  }
  return summary;
}

function headsCsv(s: SvdSummary): string {
  const rows: (string | number)[][] = [
    ['layer', 'head', 'depth', 'weighted_cosine', 'mean_cosine', 'weighted_band95_lo', 'weighted_band95_hi', 'weighted_band99_lo', 'weighted_band99_hi', 'sigma_max', 'sigma_sum', 'top_mode_cosine', 'min_rel_gap', 'salience_norm'],
  ];
  for (const l of s.layers)
    for (const h of l.heads)
      rows.push([l.layer, h.head, l.depth, h.weighted_cosine, h.mean_cosine, h.weighted_band95.lo, h.weighted_band95.hi, h.weighted_band99.lo, h.weighted_band99.hi, h.sigma[0], h.sigma.reduce((a, b) => a + b, 0), h.cosine[0], h.min_rel_gap, h.salience_norm]);
  return toCsv(rows);
}

/** Reads a finished run's summary.json (compare and serve use it). */
export function readSvdSummary(dir: string): SvdSummary {
  const p = join(dir, 'summary.json');
  if (!existsSync(p)) throw new UserError(`${dir}: no summary.json; run \`qkscope svd <model> --out ${dir}\` first (or the run was interrupted)`);
  let s: SvdSummary;
  try {
    s = JSON.parse(readFileSync(p, 'utf8'));
  } catch {
    throw new UserError(`${p}: not valid JSON; re-run qkscope svd`);
  }
  if (s.kind !== 'svd' || !Array.isArray(s.layers)) throw new UserError(`${p}: not a qkscope svd summary`);
  return s;
}
