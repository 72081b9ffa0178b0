/**
 * Anisotropy control (docs/method.md §3, paper supplementary): per layer, the mean cosine between
 * the centre-patch embeddings of *different* images, and the relative cosine curves
 * (head / layer σ-weighted cosine minus that baseline).
 *
 * The accumulation (`CentreSums`, below) is shared by `scan`, `anisotropy` and the explorer:
 * exact fixed-point sums of unit vectors, mean_{i≠j} ê_i·ê_j = (|Σ ê_i|² − n) / (n (n − 1)), so
 * all of them give the same value for the same images. `GroupedCentreSums` keeps the same sums
 * per group of images (image index mod G) for a jackknife interval in bounded memory.
 */
import { studentTQuantile } from './intervals.js';

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
  /** 95 % interval of the anisotropy (null when it cannot be estimated, e.g. under 3 images). */
  anisotropy_interval: [number, number] | null;
  mean_weighted_cosine: number;
  relative_mean_weighted_cosine: number | null;
  /** The anisotropy interval carried over: [cosine − hi, cosine − lo] (the cosine is weight-only, exact). */
  relative_interval: [number, number] | null;
  relative_weighted_cosine: (number | null)[];
  /** Per head, the anisotropy interval carried over: [cosine_h − hi, cosine_h − lo]. */
  relative_weighted_cosine_interval: ([number, number] | null)[];
}

/** A per-layer baseline: the value, its image count and (optionally) its interval. */
export interface BaselineValue {
  value: number | null;
  n: number;
  interval?: [number, number] | null;
}

/** Joins a per-layer baseline with the weight-only cosines: relative = cosine − anisotropy. */
export function relativeCurves(cosines: ReadonlyArray<LayerCosines>, baseline: ReadonlyMap<number, BaselineValue>, totalLayers: number): AnisotropyLayer[] {
  return cosines
    .filter((c) => baseline.has(c.layer))
    .map((c) => {
      const b = baseline.get(c.layer)!;
      const v = b.value;
      const iv = v === null ? null : (b.interval ?? null);
      return {
        layer: c.layer,
        depth: totalLayers > 1 ? c.layer / (totalLayers - 1) : 0,
        anisotropy: v,
        images: b.n,
        anisotropy_interval: iv,
        mean_weighted_cosine: c.mean_weighted_cosine,
        relative_mean_weighted_cosine: v === null ? null : c.mean_weighted_cosine - v,
        relative_interval: iv ? [c.mean_weighted_cosine - iv[1], c.mean_weighted_cosine - iv[0]] : null,
        relative_weighted_cosine: c.heads.map((h) => (v === null ? null : h.weighted_cosine - v)),
        relative_weighted_cosine_interval: c.heads.map((h): [number, number] | null => (iv ? [h.weighted_cosine - iv[1], h.weighted_cosine - iv[0]] : null)),
      };
    });
}

/**
 * CentreSums: the anisotropy baseline of docs/method.md §3: per layer, the mean cosine between the centre-patch
 * embeddings of different images, mean_{i≠j} ê_i·ê_j = (|Σ ê_i|² − n) / (n (n − 1)) with ê the
 * unit vectors. Only Σ ê_i and n are kept, as exact integers (each component rounded to a
 * multiple of 2⁻³²), so the sum is the same in any order: resumed and merged scans give
 * bit-identical values to a single scan.
 */
export const FIXED_SCALE = 2 ** 32;

export class CentreSums {
  readonly sums: BigInt64Array;
  readonly n: Float64Array;
  private batch: Float64Array;
  private batchN: Float64Array;
  private pending = 0;

  constructor(
    readonly layers: number,
    readonly d: number,
  ) {
    this.sums = new BigInt64Array(layers * d);
    this.n = new Float64Array(layers);
    this.batch = new Float64Array(layers * d);
    this.batchN = new Float64Array(layers);
  }

  /** Adds one image's centre-patch vector of layer slot `li` (zero vectors are not counted). */
  add(li: number, v: ArrayLike<number>, offset = 0): void {
    const d = this.d;
    let s = 0;
    for (let i = 0; i < d; i++) s += v[offset + i] * v[offset + i];
    const norm = Math.sqrt(s);
    if (!(norm > 0) || !Number.isFinite(norm)) return;
    const b = li * d;
    for (let i = 0; i < d; i++) this.batch[b + i] += Math.round((v[offset + i] / norm) * FIXED_SCALE);
    this.batchN[li]++;
    // Keep the float64 batch sums exact (< 2^53).
    if (++this.pending >= 1 << 19) this.flush();
  }

  /** Moves the batch sums into the exact totals. */
  flush(): void {
    for (let i = 0; i < this.batch.length; i++) {
      if (this.batch[i] !== 0) this.sums[i] += BigInt(this.batch[i]);
    }
    for (let l = 0; l < this.layers; l++) this.n[l] += this.batchN[l];
    this.batch.fill(0);
    this.batchN.fill(0);
    this.pending = 0;
  }

  /** The mean pairwise cosine of layer slot `li` (null with fewer than two images). */
  value(li: number): number | null {
    return anisotropyFrom(this.sums.subarray(li * this.d, (li + 1) * this.d), this.n[li]);
  }

  blob(li: number): Buffer {
    const a = this.sums.slice(li * this.d, (li + 1) * this.d);
    return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  }

  load(li: number, n: number, blob: Uint8Array): void {
    if (blob.length !== this.d * 8) throw new Error(`anisotropy sums: ${blob.length} bytes, expected ${this.d * 8}`);
    const a = new BigInt64Array(blob.buffer.slice(blob.byteOffset, blob.byteOffset + blob.length));
    this.sums.set(a, li * this.d);
    this.n[li] = n;
  }
}

export function anisotropyFrom(sums: BigInt64Array, n: number): number | null {
  if (n < 2) return null;
  let s2 = 0;
  for (let i = 0; i < sums.length; i++) {
    const x = Number(sums[i]) / FIXED_SCALE;
    s2 += x * x;
  }
  return (s2 - n) / (n * (n - 1));
}

/** Number of jackknife groups (images go to group index mod G; with n ≤ G it is the delete-one jackknife). */
export const JACKKNIFE_GROUPS = 64;

export interface JackknifeEstimate {
  value: number | null;
  n: number;
  /** Two-sided interval at `level` (null without at least 3 images in 3 groups). */
  interval: [number, number] | null;
  /** Jackknife standard error. */
  se: number | null;
  /** Non-empty groups G' (degrees of freedom G' − 1). */
  groups: number;
}

/**
 * The anisotropy baseline with a delete-a-group jackknife interval. Each image goes to group
 * `index mod G` and its unit vector into that group's exact sums (CentreSums, one slot per
 * layer × group). With S_g, n_g the group sums, θ₋g = (|S − S_g|² − (n − n_g)) / ((n − n_g)(n − n_g − 1))
 * is the mean pairwise cosine without group g, the jackknife variance
 * (G' − 1)/G' Σ_g (θ₋g − mean θ₋·)², and the interval θ ± t_{G'−1, (1+level)/2}·SE.
 * The value itself equals CentreSums' (same exact sums) whatever the grouping.
 */
export class GroupedCentreSums {
  readonly sums: CentreSums;
  constructor(
    readonly layers: number,
    readonly d: number,
    readonly groups = JACKKNIFE_GROUPS,
  ) {
    this.sums = new CentreSums(layers * groups, d);
  }

  /** Adds image `index`'s centre-patch vector of layer slot `li`. */
  add(li: number, index: number, v: ArrayLike<number>, offset = 0): void {
    this.sums.add(li * this.groups + (index % this.groups), v, offset);
  }

  flush(): void {
    this.sums.flush();
  }

  /** Exact total sums of layer slot `li`, and the image count. */
  private total(li: number): { S: BigInt64Array; n: number } {
    const d = this.d;
    const S = new BigInt64Array(d);
    let n = 0;
    for (let g = 0; g < this.groups; g++) {
      const slot = li * this.groups + g;
      n += this.sums.n[slot];
      const o = slot * d;
      for (let i = 0; i < d; i++) S[i] += this.sums.sums[o + i];
    }
    return { S, n };
  }

  n(li: number): number {
    let n = 0;
    for (let g = 0; g < this.groups; g++) n += this.sums.n[li * this.groups + g];
    return n;
  }

  value(li: number): number | null {
    const { S, n } = this.total(li);
    return anisotropyFrom(S, n);
  }

  estimate(li: number, level = 0.95): JackknifeEstimate {
    const d = this.d;
    const { S, n } = this.total(li);
    const value = anisotropyFrom(S, n);
    const loo: number[] = [];
    const diff = new BigInt64Array(d);
    for (let g = 0; g < this.groups; g++) {
      const slot = li * this.groups + g;
      const ng = this.sums.n[slot];
      if (ng === 0) continue;
      const o = slot * d;
      for (let i = 0; i < d; i++) diff[i] = S[i] - this.sums.sums[o + i];
      const v = anisotropyFrom(diff, n - ng);
      if (v === null) return { value, n, interval: null, se: null, groups: 0 };
      loo.push(v);
    }
    const G = loo.length;
    if (value === null || G < 3) return { value, n, interval: null, se: null, groups: G };
    const mean = loo.reduce((a, b) => a + b, 0) / G;
    const ss = loo.reduce((a, b) => a + (b - mean) ** 2, 0);
    const se = Math.sqrt(((G - 1) / G) * ss);
    const t = studentTQuantile((1 + level) / 2, G - 1);
    return { value, n, interval: [value - t * se, value + t * se], se, groups: G };
  }
}
