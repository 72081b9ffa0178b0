/**
 * Chance levels for mode cosines (docs/method.md §3).
 *
 * Per mode: for independent uniformly random unit vectors u, v ∈ R^d, c = u·v has density
 * ∝ (1 − c²)^{(d−3)/2} on [−1, 1], i.e. (c + 1)/2 ~ Beta((d−1)/2, (d−1)/2). The bands are its
 * exact two-sided quantiles (d = 3: c is uniform, the 95 % band is ±0.95; d = 2: arcsine law).
 *
 * Weighted means: T = Σ w_n c_n with independent c_n (the head score Σ σ_n c_n / Σ σ_m has
 * w_n = σ_n / Σσ). c is symmetric with
 *   E c² = 1/d,  E c⁴ = 3/(d(d+2)),  E c⁶ = 15/(d(d+2)(d+4))   (c² ~ Beta(1/2, (d−1)/2)),
 * hence cumulants κ2 = 1/d, κ4 = −6/(d²(d+2)) (excess kurtosis −6/(d+2)) and
 * κ6 = m6 − 15 m4 m2 + 30 m2³ = 240/(d³(d+2)(d+4)). Cumulants add over independent terms:
 *   Var T = Σw²/d,  γ2 = κ4(T)/Var² = −6/(d+2)·Σw⁴/(Σw²)²,
 *   γ4 = κ6(T)/Var³ = 240/((d+2)(d+4))·Σw⁶/(Σw²)³,
 * all odd cumulants zero. The quantile is the Cornish–Fisher expansion of a symmetric law to
 * second order: x_p = z + γ2·He3(z)/24 + γ4·He5(z)/720 − γ2²·(3z⁵ − 24z³ + 29z)/384, with
 * He3 = z³ − 3z, He5 = z⁵ − 10z³ + 15z, scaled by sqrt(Var T). The corrections are tiny for
 * realistic d (|γ2| ≤ 6/(d+2)) and make the band slightly narrower than the normal one
 * (platykurtic c). A single non-zero weight is answered exactly from the Beta law.
 *
 * Note: the official code's baseline drew positive uniform vectors and normalised with
 * `a2 = a1/norm(a2)`; that is not a chance level and is not reproduced here.
 */
import { betaQuantile } from './beta.js';
import type { Band, ChanceBands } from './types.js';

function checkD(d: number): void {
  if (!Number.isInteger(d) || d < 2) throw new RangeError(`chance bands need an integer dimension d ≥ 2, got ${d}`);
}

function checkLevel(level: number): void {
  if (!(level > 0 && level < 1)) throw new RangeError(`confidence level must be in (0, 1), got ${level}`);
}

/** Exact symmetric two-sided band of one cosine at `level` (e.g. 0.95). */
export function modeBand(d: number, level: number): Band {
  checkD(d);
  checkLevel(level);
  const a = (d - 1) / 2;
  const q = betaQuantile((1 + level) / 2, a, a);
  const hi = 2 * q - 1;
  return { lo: -hi, hi };
}

/** Exact per-mode 95 % and 99 % bands for dimension d. */
export function chanceBands(d: number): ChanceBands {
  return { d, mode95: modeBand(d, 0.95), mode99: modeBand(d, 0.99) };
}

/**
 * Standard normal quantile Φ⁻¹(p), Acklam's rational approximation (relative error
 * < 1.2e-9 on (0, 1)): ample for a chance band, whose own approximation error is larger.
 */
export function normalQuantile(p: number): number {
  if (!(p > 0 && p < 1)) {
    if (p === 0) return -Infinity;
    if (p === 1) return Infinity;
    return NaN;
  }
  const a = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1, 2.506628277459239];
  const b = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
  const c = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const e = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
  const plow = 0.02425;
  if (p < plow) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((e[0] * q + e[1]) * q + e[2]) * q + e[3]) * q + 1);
  }
  if (p > 1 - plow) {
    const q = Math.sqrt(-2 * Math.log(1 - p));
    return -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((e[0] * q + e[1]) * q + e[2]) * q + e[3]) * q + 1);
  }
  const q = p - 0.5;
  const r = q * q;
  return ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q) / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

/**
 * Two-sided band at `level` for T = Σ w_n c_n with independent random cosines c_n in R^d
 * (see the module comment: variance Σw²/d, second-order Cornish–Fisher with the exact 4th and
 * 6th cumulants; exact when only one weight is non-zero). Clamped to ±Σ|w_n|.
 */
export function weightedMeanBand(d: number, weights: ArrayLike<number>, level: number): Band {
  checkD(d);
  checkLevel(level);
  let s1 = 0, s2 = 0, s4 = 0, s6 = 0, nz = 0, only = 0;
  for (let i = 0; i < weights.length; i++) {
    const w = weights[i];
    if (!Number.isFinite(w)) throw new RangeError(`weightedMeanBand: weight ${i} is ${w}`);
    if (w === 0) continue;
    nz++;
    only = Math.abs(w);
    const w2 = w * w;
    s1 += Math.abs(w);
    s2 += w2;
    s4 += w2 * w2;
    s6 += w2 * w2 * w2;
  }
  if (nz === 0) return { lo: 0, hi: 0 };
  if (nz === 1) {
    const b = modeBand(d, level);
    return { lo: only * b.lo, hi: only * b.hi };
  }
  const sd = Math.sqrt(s2 / d);
  const g2 = (-6 / (d + 2)) * (s4 / (s2 * s2));
  const g4 = (240 / ((d + 2) * (d + 4))) * (s6 / (s2 * s2 * s2));
  const z = normalQuantile((1 + level) / 2);
  const z3 = z * z * z, z5 = z3 * z * z;
  const x = z + (g2 * (z3 - 3 * z)) / 24 + (g4 * (z5 - 10 * z3 + 15 * z)) / 720 - (g2 * g2 * (3 * z5 - 24 * z3 + 29 * z)) / 384;
  const hi = Math.min(s1, x * sd);
  return { lo: -hi, hi };
}
