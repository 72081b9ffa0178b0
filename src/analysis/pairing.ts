/**
 * Semantic pairing (paper figure 6, docs/method.md §7). For a mode's top images (from a scan), on
 * each image: the object with the largest mean query-map value and the object with the
 * largest mean key-map value, where an object's mean is coverage-weighted over patches,
 * mean_o(M) = Σ_p c_o(p) M(p) / Σ_p c_o(p) (c_o = the instance's down-scaled mask). The mode's
 * probability p_n = fraction of its images where the two are the same object; per layer the
 * σ-weighted probability Σ_{h,n} σ_{h,n} p_{h,n} / Σ_{h,n} σ_{h,n} over the modes that have
 * at least one usable image (also the plain mean).
 *
 * An image is usable when at least two objects remain (after the ignored labels and the
 * minimum size): with one object "same" is certain and says nothing, so such images are
 * counted apart (n_single). Chance baseline: the key object drawn at random in proportion to
 * object area, so P(same) on an image = area share of its top query object, Σ_p c_q(p) / Σ_o Σ_p c_o(p);
 * averaged per mode over the same images and per layer with the same σ weights. Intervals:
 * percentile bootstrap over the usable images (all modes and layers from the same resample).
 */
import { bootstrapIntervals, clopperPearson, type BootstrapOptions } from './intervals.js';

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

/** Area (Σ coverage) of each object, in the order given. */
function areaOf(o: CoveredObject): number {
  let a = 0;
  for (let p = 0; p < o.cov.length; p++) a += o.cov[p];
  return a;
}

export interface PairOutcome {
  query: number;
  key: number;
  same: boolean;
  /** P(same) when the key object is drawn in proportion to area: the top query object's area share. */
  chance: number;
}

/** The outcome of one (image, mode): null when fewer than two objects have area (excluded image). */
export function pairOutcome(queryMap: ArrayLike<number>, keyMap: ArrayLike<number>, objects: ReadonlyArray<CoveredObject>): PairOutcome | null {
  const areas = objects.map(areaOf);
  const live = objects.filter((_, i) => areas[i] > 0);
  if (live.length < 2) return null;
  const query = topObject(queryMap, live)!;
  const key = topObject(keyMap, live)!;
  let total = 0, q = 0;
  objects.forEach((o, i) => {
    total += areas[i];
    if (o.id === query) q += areas[i];
  });
  return { query, key, same: query === key, chance: q / total };
}

export interface ModePairing {
  layer: number;
  head: number;
  mode: number;
  sigma: number;
  /** Usable images (two objects or more). */
  images: number;
  same: number;
  /** same / images (null without usable images). */
  probability: number | null;
  /** Mean chance P(same) over the same images (null without usable images). */
  baseline?: number | null;
  /** Top-k images of this mode left out for having fewer than two objects. */
  single?: number;
  /** 95 % Clopper–Pearson interval of probability (same of images). */
  interval?: [number, number] | null;
}

export interface LayerPairing {
  layer: number;
  depth: number;
  weighted_probability: number | null;
  mean_probability: number | null;
  modes: number;
  /** σ-weighted chance baseline over the same modes. */
  baseline?: number | null;
  mean_baseline?: number | null;
  /** Distinct usable images among this layer's modes' top-k images. */
  n?: number;
  /** Distinct images among them excluded for having fewer than two objects. */
  n_single?: number;
  /** 95 % bootstrap interval of weighted_probability, and of mean_probability. */
  interval?: [number, number] | null;
  mean_interval?: [number, number] | null;
  /** weighted_probability − baseline, and its bootstrap interval. */
  excess?: number | null;
  excess_interval?: [number, number] | null;
}

export function layerPairing(modes: ReadonlyArray<ModePairing>, layers: number[], totalLayers: number): LayerPairing[] {
  return layers.map((l) => {
    const ms = modes.filter((m) => m.layer === l && m.probability !== null);
    let num = 0, den = 0, sum = 0, bnum = 0, bsum = 0;
    let haveBaseline = ms.length > 0;
    for (const m of ms) {
      num += m.sigma * m.probability!;
      den += m.sigma;
      sum += m.probability!;
      if (m.baseline === undefined || m.baseline === null) haveBaseline = false;
      else {
        bnum += m.sigma * m.baseline;
        bsum += m.baseline;
      }
    }
    const weighted = den > 0 ? num / den : null;
    const out: LayerPairing = {
      layer: l,
      depth: totalLayers > 1 ? l / (totalLayers - 1) : 0,
      weighted_probability: weighted,
      mean_probability: ms.length ? sum / ms.length : null,
      modes: ms.length,
    };
    if (haveBaseline) {
      out.baseline = den > 0 ? bnum / den : null;
      out.mean_baseline = bsum / ms.length;
      out.excess = weighted !== null && out.baseline !== null ? weighted - out.baseline : null;
    }
    return out;
  });
}

/** One (image, mode) of the run: its outcome, or null for an image with fewer than two objects. */
export interface PairingRecord {
  image: number;
  /** Index into the modes list. */
  mode: number;
  outcome: PairOutcome | null;
}

export interface PairingSummary {
  modes: ModePairing[];
  layers: LayerPairing[];
  /** Distinct usable images over all layers, and distinct excluded (single-object) ones. */
  images: number;
  single: number;
}

/**
 * Per-mode and per-layer pairing from the (image, mode) records, with per-layer n, n_single,
 * the chance baseline and bootstrap intervals (over the usable images) of the σ-weighted
 * probability and of its excess over the baseline.
 */
export function summarisePairing(
  modeInfo: ReadonlyArray<{ layer: number; head: number; mode: number; sigma: number }>,
  records: ReadonlyArray<PairingRecord>,
  layers: number[],
  totalLayers: number,
  opts: BootstrapOptions = {},
): PairingSummary {
  const modes: ModePairing[] = modeInfo.map((m) => ({ ...m, images: 0, same: 0, probability: null, baseline: null, single: 0 }));
  const chance = new Float64Array(modes.length);
  const used = new Map<number, number>(); // image → slot among usable images
  const usedIn = layers.map(() => new Set<number>());
  const singleIn = layers.map(() => new Set<number>());
  const singles = new Set<number>();
  const li = (l: number) => layers.indexOf(l);
  for (const r of records) {
    const m = modes[r.mode];
    const k = li(m.layer);
    if (r.outcome === null) {
      m.single!++;
      singles.add(r.image);
      if (k >= 0) singleIn[k].add(r.image);
      continue;
    }
    if (!used.has(r.image)) used.set(r.image, used.size);
    if (k >= 0) usedIn[k].add(r.image);
    m.images++;
    if (r.outcome.same) m.same++;
    chance[r.mode] += r.outcome.chance;
  }
  modes.forEach((m, i) => {
    m.probability = m.images ? m.same / m.images : null;
    m.baseline = m.images ? chance[i] / m.images : null;
    m.interval = clopperPearson(m.same, m.images);
  });
  const curve = layerPairing(modes, layers, totalLayers);
  curve.forEach((c, k) => {
    c.n = usedIn[k].size;
    c.n_single = singleIn[k].size;
  });

  // Bootstrap: per resample, every mode's p and baseline from the resampled images, then each layer's σ-weighted values.
  const usable = records.filter((r) => r.outcome !== null).map((r) => ({ slot: used.get(r.image)!, mode: r.mode, same: r.outcome!.same ? 1 : 0, chance: r.outcome!.chance }));
  const L = layers.length;
  const modeLayer = modes.map((m) => li(m.layer));
  const den = new Float64Array(modes.length), num = new Float64Array(modes.length), bas = new Float64Array(modes.length);
  const iv = bootstrapIntervals(
    used.size,
    3 * L,
    (w, out) => {
      den.fill(0);
      num.fill(0);
      bas.fill(0);
      for (const u of usable) {
        const c = w[u.slot];
        if (c === 0) continue;
        den[u.mode] += c;
        num[u.mode] += c * u.same;
        bas[u.mode] += c * u.chance;
      }
      const sp = new Float64Array(L), sb = new Float64Array(L), ss = new Float64Array(L), pm = new Float64Array(L), nm = new Float64Array(L);
      for (let m = 0; m < modes.length; m++) {
        const k = modeLayer[m];
        if (k < 0 || den[m] === 0) continue;
        const s = modes[m].sigma;
        sp[k] += (s * num[m]) / den[m];
        sb[k] += (s * bas[m]) / den[m];
        ss[k] += s;
        pm[k] += num[m] / den[m];
        nm[k]++;
      }
      for (let k = 0; k < L; k++) {
        out[3 * k] = ss[k] > 0 ? sp[k] / ss[k] : NaN;
        out[3 * k + 1] = ss[k] > 0 ? (sp[k] - sb[k]) / ss[k] : NaN;
        out[3 * k + 2] = nm[k] > 0 ? pm[k] / nm[k] : NaN;
      }
    },
    opts,
  );
  curve.forEach((c, k) => {
    c.interval = c.weighted_probability === null ? null : iv[3 * k];
    c.excess_interval = c.weighted_probability === null ? null : iv[3 * k + 1];
    c.mean_interval = c.mean_probability === null ? null : iv[3 * k + 2];
  });
  return { modes, layers: curve, images: used.size, single: [...singles].filter((i) => !used.has(i)).length };
}
