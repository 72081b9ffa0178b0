import { weightedMeanBand } from './chance.js';
import type { Band } from './types.js';

/** What a curve needs of an svd run's statistics (summary.json has all of it). */
export interface CurveSource {
  model: { id: string };
  dims: { width: number };
  layers: { layer: number; depth: number; mean_weighted_cosine: number; mean_plain_cosine: number; heads: { sigma: number[] }[] }[];
}

export interface LayerCurve {
  label: string;
  d: number;
  depth: number[];
  value: number[];
  band95: { lo: number[]; hi: number[] };
}

/**
 * One model's curve for the compare figure: per layer, the mean over heads of the head score.
 * Its chance band: the layer mean is Σ_h Σ_n (w_hn / H) c_hn with independent random c, so the
 * same weighted-sum band applies with the concatenated weights divided by H. With a per-layer
 * anisotropy `baseline`, values and band are relative cosines (docs/method.md §3).
 */
export function layerCurve(s: CurveSource, statistic: 'weighted' | 'plain', baseline?: number[]): LayerCurve {
  const d = s.dims.width;
  const lo: number[] = [];
  const hi: number[] = [];
  for (const l of s.layers) {
    const H = l.heads.length;
    const w: number[] = [];
    for (const h of l.heads) {
      const sum = h.sigma.reduce((a, b) => a + b, 0);
      for (const sg of h.sigma) w.push(statistic === 'plain' || sum === 0 ? 1 / h.sigma.length / H : sg / sum / H);
    }
    const b: Band = weightedMeanBand(d, w, 0.95);
    // Relative curves: the chance band moves with the baseline (cosine − anisotropy).
    const shift = baseline ? baseline[l.layer] : 0;
    lo.push(b.lo - shift);
    hi.push(b.hi - shift);
  }
  return {
    label: s.model.id,
    d,
    depth: s.layers.map((l) => l.depth),
    value: s.layers.map((l) => (statistic === 'plain' ? l.mean_plain_cosine : l.mean_weighted_cosine) - (baseline ? baseline[l.layer] : 0)),
    band95: { lo, hi },
  };
}
