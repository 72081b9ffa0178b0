/**
 * Confidence intervals for numbers averaged over images (objects, pairing, anisotropy).
 *
 * - Percentile bootstrap over images: B resamples of the n images with replacement (multinomial
 *   counts, from a seeded mulberry32 stream, so a run is reproducible), the statistic recomputed
 *   on each, the interval = the α/2 and 1 − α/2 quantiles of the B values (linear interpolation
 *   between order statistics, numpy's default). Statistics a resample leaves undefined (NaN) are
 *   left out of that statistic's quantiles.
 * - Student t quantiles for jackknife intervals (anisotropy), through the incomplete beta.
 */
import { betaQuantile } from './beta.js';
import { mulberry32 } from './synthetic.js';

export interface BootstrapOptions {
  /** Number of resamples (default BOOTSTRAP_RESAMPLES). */
  resamples?: number;
  /** PRNG seed (default BOOTSTRAP_SEED). */
  seed?: number;
  /** Two-sided coverage (default 0.95). */
  level?: number;
}

export const BOOTSTRAP_RESAMPLES = 2000;
export const BOOTSTRAP_SEED = 1;
export const INTERVAL_LEVEL = 0.95;

/** What a manifest says about how its intervals were made. */
export interface BootstrapInfo {
  method: string;
  resamples: number;
  seed: number;
  level: number;
}

export function bootstrapInfo(o: BootstrapOptions = {}): BootstrapInfo {
  return {
    method: 'percentile bootstrap over images (resample the images with replacement, recompute the statistic; interval = the 2.5 % and 97.5 % quantiles, linear interpolation)',
    resamples: o.resamples ?? BOOTSTRAP_RESAMPLES,
    seed: o.seed ?? BOOTSTRAP_SEED,
    level: o.level ?? INTERVAL_LEVEL,
  };
}

/** The legend / summary wording of a bootstrap interval, e.g. "95% bootstrap interval over images (2000 resamples)". */
export function bootstrapLabel(b: BootstrapInfo): string {
  return `${Math.round(b.level * 100)}% bootstrap interval over images (${b.resamples} resamples)`;
}

/** Quantile q ∈ [0, 1] of sorted values (linear interpolation between order statistics). */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  const pos = q * (n - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(n - 1, lo + 1);
  const f = pos - lo;
  return f === 0 ? sorted[lo] : sorted[lo] * (1 - f) + sorted[hi] * f;
}

/**
 * Percentile bootstrap intervals of `k` statistics of `n` images. `statistic(w, out)` gets the
 * resample as per-image counts w (Σ w = n) and writes the k statistics into `out` (NaN:
 * undefined on this resample). Returns [lo, hi] per statistic (null when n = 0 or a statistic
 * is never defined).
 */
export function bootstrapIntervals(n: number, k: number, statistic: (w: Uint32Array, out: Float64Array) => void, opts: BootstrapOptions = {}): ([number, number] | null)[] {
  const B = opts.resamples ?? BOOTSTRAP_RESAMPLES;
  const level = opts.level ?? INTERVAL_LEVEL;
  if (n === 0) return Array.from({ length: k }, () => null);
  const rand = mulberry32(opts.seed ?? BOOTSTRAP_SEED);
  const values: number[][] = Array.from({ length: k }, () => []);
  const w = new Uint32Array(n);
  const out = new Float64Array(k);
  for (let b = 0; b < B; b++) {
    w.fill(0);
    for (let i = 0; i < n; i++) w[Math.floor(rand() * n)]++;
    out.fill(NaN);
    statistic(w, out);
    for (let s = 0; s < k; s++) if (Number.isFinite(out[s])) values[s].push(out[s]);
  }
  const a = (1 - level) / 2;
  return values.map((v) => {
    if (v.length === 0) return null;
    v.sort((x, y) => x - y);
    return [quantileSorted(v, a), quantileSorted(v, 1 - a)];
  });
}

/** Bootstrap intervals of the column means of per-image rows (k values each). */
export function meanIntervals(rows: ReadonlyArray<ArrayLike<number>>, k: number, opts: BootstrapOptions = {}): ([number, number] | null)[] {
  const n = rows.length;
  return bootstrapIntervals(
    n,
    k,
    (w, out) => {
      out.fill(0);
      for (let i = 0; i < n; i++) {
        const c = w[i];
        if (c === 0) continue;
        const v = rows[i];
        for (let j = 0; j < k; j++) out[j] += c * v[j];
      }
      for (let j = 0; j < k; j++) out[j] /= n;
    },
    opts,
  );
}

/** Clopper–Pearson (exact binomial) interval of a proportion `x` of `n` at `level`. */
export function clopperPearson(x: number, n: number, level = INTERVAL_LEVEL): [number, number] | null {
  if (!(n > 0)) return null;
  const a = (1 - level) / 2;
  return [x === 0 ? 0 : betaQuantile(a, x, n - x + 1), x === n ? 1 : betaQuantile(1 - a, x + 1, n - x)];
}

/** Student t quantile t_ν(p) for p ∈ (0, 1): P(T ≤ t) = p. */
export function studentTQuantile(p: number, df: number): number {
  if (!(p > 0 && p < 1) || !(df > 0)) return NaN;
  if (p === 0.5) return 0;
  // P(|T| > t) = I_{ν/(ν+t²)}(ν/2, 1/2).
  const tail = 2 * Math.min(p, 1 - p);
  const x = betaQuantile(tail, df / 2, 0.5);
  const t = Math.sqrt((df * (1 - x)) / x);
  return p > 0.5 ? t : -t;
}
