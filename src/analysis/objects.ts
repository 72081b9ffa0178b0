/**
 * Same-object / other-object / background attention (paper figure 2, docs/method.md §7).
 *
 * For an image with a target mask and a distractor mask, down-scaled to per-patch coverage
 * t_p, d_p ∈ [0, 1] (src/data/masks.ts) and background b_p = max(0, 1 − t_p − d_p):
 * the query token is the patch at the maximum of each down-scaled mask (one query from the
 * target, one from the distractor). Its attention row over the patch tokens is renormalised to
 * sum to 1 (a_p = A_{i,p} / Σ_p' A_{i,p'}; CLS and other special tokens are dropped), and its
 * shares are the inner products Σ_p a_p t_p, Σ_p a_p d_p, Σ_p a_p b_p (they sum to 1 when
 * the masks do not overlap). For the target query, "same object" is the target share and
 * "other object" the distractor share; for the distractor query the other way round.
 * Per-layer values are means over images; their intervals are a bootstrap over images.
 */
import { meanIntervals, type BootstrapOptions } from './intervals.js';

export interface Shares {
  target: number;
  distractor: number;
  background: number;
}

/** Shares of one attention row (all T keys) on the masks' patches. */
export function rowShares(row: ArrayLike<number>, patchStart: number, target: ArrayLike<number>, distractor: ArrayLike<number>): Shares {
  const P = target.length;
  let z = 0;
  for (let p = 0; p < P; p++) z += row[patchStart + p];
  const s: Shares = { target: 0, distractor: 0, background: 0 };
  if (!(z > 0)) return s;
  for (let p = 0; p < P; p++) {
    const a = row[patchStart + p] / z;
    s.target += a * target[p];
    s.distractor += a * distractor[p];
    s.background += a * Math.max(0, 1 - target[p] - distractor[p]);
  }
  return s;
}

/** Accumulates shares per (layer slot, head, query kind ∈ {target, distractor}). */
export class ObjectShareSums {
  /** [L, H, 2 queries, 3 (target, distractor, background)] sums. */
  readonly sums: Float64Array;
  n = 0;
  constructor(
    readonly layers: number,
    readonly heads: number,
  ) {
    this.sums = new Float64Array(layers * heads * 6);
  }
  add(li: number, h: number, query: 0 | 1, s: Shares): void {
    const o = ((li * this.heads + h) * 2 + query) * 3;
    this.sums[o] += s.target;
    this.sums[o + 1] += s.distractor;
    this.sums[o + 2] += s.background;
  }
  /** Mean over images of (layer slot, head, query). */
  mean(li: number, h: number, query: 0 | 1): Shares {
    const o = ((li * this.heads + h) * 2 + query) * 3;
    const n = this.n || 1;
    return { target: this.sums[o] / n, distractor: this.sums[o + 1] / n, background: this.sums[o + 2] / n };
  }
  /** Same / other / background for one head, averaged over both queries. */
  categories(li: number, h: number): { same: number; other: number; background: number } {
    const t = this.mean(li, h, 0), d = this.mean(li, h, 1);
    return { same: (t.target + d.distractor) / 2, other: (t.distractor + d.target) / 2, background: (t.background + d.background) / 2 };
  }
}

/**
 * One image's statistics, from its shares [L, H, 2 queries, 3 (target, distractor, background)]:
 *   [0, 3L)            per layer: same, other, background (mean over heads, as the command reports)
 *   [3L, 9L)           per layer, by query: target query's (target, distractor, background), then the distractor query's (mean over heads)
 *   [9L, 9L + 3LH)     per layer and head: same, other, background
 * The mean of these over images is exactly what the command reports, so bootstrapping them gives every reported number its interval.
 */
export function imageStatistics(shares: ArrayLike<number>, layers: number, heads: number): Float64Array {
  const L = layers, H = heads;
  const out = new Float64Array(9 * L + 3 * L * H);
  for (let l = 0; l < L; l++)
    for (let h = 0; h < H; h++) {
      const o = (l * H + h) * 6;
      const same = (shares[o] + shares[o + 4]) / 2, other = (shares[o + 1] + shares[o + 3]) / 2, bg = (shares[o + 2] + shares[o + 5]) / 2;
      out[l * 3] += same / H;
      out[l * 3 + 1] += other / H;
      out[l * 3 + 2] += bg / H;
      for (let k = 0; k < 6; k++) out[3 * L + l * 6 + k] += shares[o + k] / H;
      const hb = 9 * L + (l * H + h) * 3;
      out[hb] = same;
      out[hb + 1] = other;
      out[hb + 2] = bg;
    }
  return out;
}

export type Interval = [number, number] | null;

export interface CategoryIntervals {
  same_object: Interval;
  other_object: Interval;
  background: Interval;
}

export interface ObjectIntervals {
  layers: CategoryIntervals[];
  byQuery: { target: { target: Interval; distractor: Interval; background: Interval }; distractor: { target: Interval; distractor: Interval; background: Interval } }[];
  heads: CategoryIntervals[][];
}

/** Bootstrap intervals (over images) of every mean the command reports, from each image's `imageStatistics`. */
export function objectIntervals(perImage: ReadonlyArray<ArrayLike<number>>, layers: number, heads: number, opts: BootstrapOptions = {}): ObjectIntervals {
  const L = layers, H = heads;
  const iv = meanIntervals(perImage, 9 * L + 3 * L * H, opts);
  const cat = (o: number): CategoryIntervals => ({ same_object: iv[o], other_object: iv[o + 1], background: iv[o + 2] });
  const q = (o: number) => ({ target: iv[o], distractor: iv[o + 1], background: iv[o + 2] });
  return {
    layers: Array.from({ length: L }, (_, l) => cat(l * 3)),
    byQuery: Array.from({ length: L }, (_, l) => ({ target: q(3 * L + l * 6), distractor: q(3 * L + l * 6 + 3) })),
    heads: Array.from({ length: L }, (_, l) => Array.from({ length: H }, (_, h) => cat(9 * L + (l * H + h) * 3))),
  };
}
