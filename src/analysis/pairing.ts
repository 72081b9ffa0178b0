/**
 * Semantic pairing (paper figure 6, METHOD.md §6). For a mode's top images (from a scan), on
 * each image: the object with the largest mean query-map value and the object with the
 * largest mean key-map value, where an object's mean is coverage-weighted over patches,
 * mean_o(M) = Σ_p c_o(p) M(p) / Σ_p c_o(p) (c_o = the instance's down-scaled mask). The mode's
 * probability p_n = fraction of its images where the two are the same object; per layer the
 * σ-weighted probability Σ_{h,n} σ_{h,n} p_{h,n} / Σ_{h,n} σ_{h,n} over the modes that have
 * at least one usable image (also the plain mean).
 */

export interface CoveredObject {
  id: number;
  cov: ArrayLike<number>;
}

/** The object with the largest coverage-weighted mean of `map` (patches, raster order); null without objects. */
export function topObject(map: ArrayLike<number>, objects: ReadonlyArray<CoveredObject>): number | null {
  let best: number | null = null, bestV = -Infinity;
  for (const o of objects) {
    let s = 0, w = 0;
    for (let p = 0; p < map.length; p++) {
      s += o.cov[p] * map[p];
      w += o.cov[p];
    }
    if (!(w > 0)) continue;
    const v = s / w;
    if (v > bestV) {
      bestV = v;
      best = o.id;
    }
  }
  return best;
}

export interface ModePairing {
  layer: number;
  head: number;
  mode: number;
  sigma: number;
  images: number;
  same: number;
  /** same / images (null without usable images). */
  probability: number | null;
}

export interface LayerPairing {
  layer: number;
  depth: number;
  weighted_probability: number | null;
  mean_probability: number | null;
  modes: number;
}

export function layerPairing(modes: ReadonlyArray<ModePairing>, layers: number[], totalLayers: number): LayerPairing[] {
  return layers.map((l) => {
    const ms = modes.filter((m) => m.layer === l && m.probability !== null);
    let num = 0, den = 0, sum = 0;
    for (const m of ms) {
      num += m.sigma * m.probability!;
      den += m.sigma;
      sum += m.probability!;
    }
    return {
      layer: l,
      depth: totalLayers > 1 ? l / (totalLayers - 1) : 0,
      weighted_probability: den > 0 ? num / den : null,
      mean_probability: ms.length ? sum / ms.length : null,
      modes: ms.length,
    };
  });
}
