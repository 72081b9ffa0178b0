/**
 * Anisotropy control (METHOD.md §3, paper supplementary): per layer, the mean cosine between
 * the centre-patch embeddings of *different* images, and the relative cosine curves
 * (head / layer σ-weighted cosine minus that baseline).
 *
 * The accumulation itself is shared with `scan` (src/scan/anisotropy.ts, `CentreSums`: exact
 * fixed-point sums of unit vectors, mean_{i≠j} ê_i·ê_j = (|Σ ê_i|² − n) / (n (n − 1))), so the
 * two give the same value for the same images.
 */
import { CentreSums } from '../scan/anisotropy.js';

export { CentreSums };

/** Mean pairwise cosine over distinct pairs, computed directly (O(n² d); tests and small n). */
export function meanPairwiseCosine(vectors: ReadonlyArray<ArrayLike<number>>): number | null {
  const unit = vectors
    .map((v) => {
      let s = 0;
      for (let i = 0; i < v.length; i++) s += v[i] * v[i];
      const n = Math.sqrt(s);
      return n > 0 ? Array.from(v, (x) => x / n) : null;
    })
    .filter((v): v is number[] => v !== null);
  const n = unit.length;
  if (n < 2) return null;
  let sum = 0;
  for (let a = 0; a < n; a++)
    for (let b = a + 1; b < n; b++) {
      let c = 0;
      for (let i = 0; i < unit[a].length; i++) c += unit[a][i] * unit[b][i];
      sum += c;
    }
  return sum / ((n * (n - 1)) / 2);
}

export interface LayerCosines {
  layer: number;
  mean_weighted_cosine: number;
  mean_plain_cosine?: number;
  heads: { weighted_cosine: number }[];
}

export interface AnisotropyLayer {
  layer: number;
  /** l / (L − 1). */
  depth: number;
  anisotropy: number | null;
  images: number;
  mean_weighted_cosine: number;
  relative_mean_weighted_cosine: number | null;
  relative_weighted_cosine: (number | null)[];
}

/** Joins a per-layer baseline with the weight-only cosines: relative = cosine − anisotropy. */
export function relativeCurves(cosines: ReadonlyArray<LayerCosines>, baseline: ReadonlyMap<number, { value: number | null; n: number }>, totalLayers: number): AnisotropyLayer[] {
  return cosines
    .filter((c) => baseline.has(c.layer))
    .map((c) => {
      const b = baseline.get(c.layer)!;
      const v = b.value;
      return {
        layer: c.layer,
        depth: totalLayers > 1 ? c.layer / (totalLayers - 1) : 0,
        anisotropy: v,
        images: b.n,
        mean_weighted_cosine: c.mean_weighted_cosine,
        relative_mean_weighted_cosine: v === null ? null : c.mean_weighted_cosine - v,
        relative_weighted_cosine: c.heads.map((h) => (v === null ? null : h.weighted_cosine - v)),
      };
    });
}
