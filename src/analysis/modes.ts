/**
 * Singular modes of one head's query-key interaction M = W_qᵀ·W_k (docs/method.md §2–3), computed
 * thinly: never a d×d matrix, never a d×d SVD.
 *
 * With W_q, W_k ∈ R^{d_h×d} (rows of the checkpoint's q/k weights, PyTorch [out, in]):
 *   1. G_q = W_q·W_qᵀ (d_h×d_h Gram, the only O(d_h²·d) step besides 4), Cholesky G_q = R_qᵀR_q.
 *      Then W_qᵀ = Q_q·R_q with Q_q = W_qᵀ·R_q⁻¹ orthonormal (Cholesky-QR; Q_q is never formed).
 *      Same for W_k.
 *   2. Core C = R_q·R_kᵀ (d_h×d_h): M = Q_q·C·Q_kᵀ, so M's singular values are C's.
 *   3. SVD C = P·Σ·Sᵀ by Golub–Kahan–Reinsch (Householder bidiagonalisation + implicit QR;
 *      one-sided Jacobi as the fallback, linalg/svd.ts).
 *   4. U = Q_q·P = W_qᵀ·(R_q⁻¹P): each u_n is a combination of the rows of W_q (one
 *      d_h×d_h by d_h×d product); V likewise from W_k.
 * Cost ≈ 3·d_h²·d multiply-adds per head (1.5 per side) plus O(d_h³), in float64 throughout
 * (float32 inputs are widened exactly). The O(d_h²·d) products and the O(d_h³) kernels run
 * as WebAssembly SIMD (linalg/kernels.ts); one head of ViT-B size (d=768, d_h=64) takes
 * ~10 M cycles (~4.5 ms), of ViT-H size (d=1280, d_h=80) ~23 M cycles.
 *
 * Numerics. Cholesky-QR squares the condition number: Q_q's columns are orthonormal only to
 * ≈ ε·κ(W_q)². So κ is estimated from R_q (the bound ‖R‖_F‖R⁻¹‖_F when that already decides,
 * else power iteration on R and R⁻¹) and:
 *   κ·2 ≤ 1000   → Cholesky-QR ('cholqr'; orthogonality ≲ ε·κ² ≈ 5e-11 worst case, ~1e-12
 *                  seen at κ = 200; random and typical trained weights have κ of a few to a
 *                  few tens);
 *   κ·2 ≤ 1e6    → CholeskyQR2 ('cholqr2'): Q1 = W_qᵀR⁻¹ is formed and factored again,
 *                  which restores orthogonality to O(ε) for κ well below ε^{-1/2};
 *   otherwise, or when Cholesky fails (W_q rank-deficient) → Householder LQ ('householder'),
 *                  backward stable for any rank.
 * Result: σ to ~ε·σ_1 absolute, vectors to ~ε·σ_1/gap, cosines accordingly, in all paths.
 *
 * Conventions (see types.ts): σ is of W_qᵀW_k itself, NOT divided by sqrt(d_h). Sign: each
 * pair (u_n, v_n) is flipped jointly so that the entry of u_n with the largest magnitude is
 * positive (ties: the lowest index). Modes with σ_n = 0 (rank-deficient W_q, W_k or W_qW_kᵀ)
 * still get unit vectors: Golub–Kahan's P and S are products of reflections and rotations,
 * orthogonal whatever the rank, and the Jacobi fallback replaces rows of zero length by the
 * first standard basis vectors that survive Gram–Schmidt against the others; either way the
 * result is deterministic and U, V have orthonormal rows. Such modes' cosines are arbitrary
 * but carry zero weight in the σ-weighted head score (they do count in the plain mean).
 */
import { Arena, roundUp, threadArena } from '../linalg/kernels.js';
import { condEstimateUpper, householderLQInPlace } from '../linalg/dense.js';
import { completeOrthonormalRows, gkSvd, jacobiRows, orderDescending } from '../linalg/svd.js';
import type { FloatArray } from '../checkpoint/types.js';
import type { FactorPath, HeadModes } from './types.js';

/** κ thresholds (with the estimate doubled for safety), see the module comment. */
export const KAPPA_CHOLQR = 1000;
export const KAPPA_CHOLQR2 = 1e6;

export { threadArena };

export interface HeadModesOptions {
  arena?: Arena;
  /** Force a factorisation path for both sides (tests); 'auto' by default. */
  path?: FactorPath | 'auto';
  /** SVD of the d_h×d_h core: Golub–Kahan (default, Jacobi if it fails to converge) or Jacobi. */
  svd?: 'golub-kahan' | 'jacobi';
  /**
   * Where u_n, v_n go. Default: `U`, `V` of the result ([d_h, d], row n = u_n). An object:
   * written straight into its arrays as a d × d_h block at element `offset` (column n = u_n:
   * the layout of a run's U.npy), and the result's `U`, `V` are empty. `false`: not kept.
   * Either of the last two spares a per-head d_h×d allocation and a copy.
   */
  vectors?: VectorsOut | false;
}

/** A destination for a head's vectors: U[offset + i·d_h + n] = u_n[i] (likewise V). */
export interface VectorsOut {
  U: Float32Array | Float64Array;
  V: Float32Array | Float64Array;
  offset: number;
}

interface Layout {
  n: number;
  n4: number;
  d: number;
  d4: number;
  wq: number;
  wk: number;
  bq: number; // base rows (Q1 or Q̃) for the query side when not W itself
  bk: number;
  uo: number;
  vo: number;
  g: number;
  ra: number;
  rb: number;
  ria: number;
  rib: number;
  tmp: number;
  x: number;
  y: number;
  pr: number;
  sr: number;
  atu: number;
  atv: number;
  nrm: number;
  cos: number;
  gp: number;
  gs: number;
  gvl: number;
  gvr: number;
  gw: number;
  gidx: number;
  gcs: number;
  gidx2: number;
  gcs2: number;
  pk: number;
  end: number;
}

function layout(n: number, d: number): Layout {
  const n4 = roundUp(n, 8); // Jacobi needs ld % 8, gemm needs m % 4
  const d4 = roundUp(d, 4);
  const big = n4 * d4, small = n4 * n4;
  let o = 0;
  const take = (k: number) => ((o += k), o - k);
  const L = {
    n, n4, d, d4,
    wq: take(big), wk: take(big), bq: take(big), bk: take(big), uo: take(big), vo: take(big),
    g: take(small), ra: take(small), rb: take(small), ria: take(small), rib: take(small), tmp: take(small),
    x: take(small), y: take(small), pr: take(small), sr: take(small), atu: take(small), atv: take(small),
    nrm: take(n4), cos: take(n4),
    gp: take(small), gs: take(small), gvl: take(small), gvr: take(small), gw: take(n4), gidx: take(n4), gcs: take(2 * n4), gidx2: take(n4), gcs2: take(2 * n4), pk: take(small),
    end: 0,
  };
  L.end = o;
  return L;
}

interface SideResult {
  path: FactorPath;
  cond: number;
  /** Offset of the upper-triangular R (n4×n4, zero padded) with Wᵀ = Q·R. */
  r: number;
  /** Offset of the coefficient transform T (n4×n4) with Q = Bᵀ·T, or −1 when T = I. */
  t: number;
  /** Offset of the base rows B (n4×d4): W itself, Q1, or Q̃. */
  base: number;
}

/** Copies rows [0,n) of `w` (n×d) into the heap at `off` with stride d4, zero padding to n4×d4. */
function loadRows(H: Float64Array, off: number, w: FloatArray, L: Layout): void {
  const { n, n4, d, d4 } = L;
  if (d === d4) H.set(w.subarray(0, n * d), off);
  else
    for (let j = 0; j < n; j++) {
      H.set(w.subarray(j * d, (j + 1) * d), off + j * d4);
      H.fill(0, off + j * d4 + d, off + (j + 1) * d4);
    }
  H.fill(0, off + n * d4, off + n4 * d4);
}

/** Gram G = B·Bᵀ of n4 padded rows at `b` into L.g (full symmetric, n4×n4). */
function gram(ar: Arena, b: number, L: Layout): void {
  const { n4, d4, g } = L;
  ar.gemmNT(b, b, g, n4, n4, d4, n4, true);
  const H = ar.heap;
  for (let i = 1; i < n4; i++) for (let j = 0; j < i; j++) H[g + i * n4 + j] = H[g + j * n4 + i];
}

/**
 * Cholesky of L.g into `r` (n×n inside n4×n4, zero padded) and its inverse into `ri`.
 * Returns an estimate of κ₂(R) (= κ₂(W)), Infinity when Cholesky fails. First the cheap
 * upper bound κ_F = ‖R‖_F‖R⁻¹‖_F ≥ κ₂ (‖R‖_F² = trace G); only when that is above the
 * fast-path threshold, the sharper power-iteration estimate (a lower bound, which the caller
 * doubles for safety).
 */
function cholInv(ar: Arena, L: Layout, r: number, ri: number): number {
  const H = ar.heap;
  const { n, n4, g } = L;
  H.set(H.subarray(g, g + n4 * n4), r);
  // zero the padding rows/columns so R is exactly block-diag(R_n, 0)
  for (let i = 0; i < n4; i++) for (let j = i < n ? n : 0; j < n4; j++) H[r + i * n4 + j] = 0;
  let tr = 0;
  for (let i = 0; i < n; i++) tr += H[g + i * n4 + i];
  if (!ar.cholUpper(r, n, n4)) return Infinity;
  H.fill(0, ri, ri + n4 * n4);
  if (!ar.invUpper(r, ri, n, n4)) return Infinity;
  let zf = 0;
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) zf += H[ri + i * n4 + j] * H[ri + i * n4 + j];
  const kF = Math.sqrt(tr * zf);
  if (!Number.isFinite(kF)) return Infinity;
  if (kF <= KAPPA_CHOLQR) return kF / 2; // decided: the caller's doubled estimate stays ≤ κ_F
  return condEstimateUpper(H, r, n4, H, ri, n4, n);
}

function factorSide(ar: Arena, L: Layout, w: number, base: number, r: number, ri: number, force: FactorPath | 'auto'): SideResult {
  const { n, n4, d, d4, tmp } = L;
  gram(ar, w, L);
  const cond = cholInv(ar, L, r, ri);
  const want: FactorPath =
    force !== 'auto' ? force : cond * 2 <= KAPPA_CHOLQR ? 'cholqr' : cond * 2 <= KAPPA_CHOLQR2 ? 'cholqr2' : 'householder';
  if (want === 'cholqr' && Number.isFinite(cond)) return { path: 'cholqr', cond, r, t: ri, base: w };
  if (want !== 'householder' && Number.isFinite(cond)) {
    // CholeskyQR2: Q1ᵀ = R1⁻ᵀ·W (rows), G2 = Q1ᵀQ1 = R2ᵀR2, R = R2·R1, Q = Q1·R2⁻¹.
    // gemmNN takes Aᵀ: A = R1⁻ᵀ so Aᵀ = R1⁻¹ (at ri).
    ar.gemmNN(ri, w, base, n4, d4, n4, L.pk);
    gram(ar, base, L);
    const H = ar.heap;
    H.set(H.subarray(r, r + n4 * n4), tmp); // R1
    const cond2 = cholInv(ar, L, r, ri); // r ← R2, ri ← R2⁻¹
    if (Number.isFinite(cond2)) {
      // R ← R2·R1 (both upper): row i = Σ_{k≥i} R2[i,k]·R1[k,:]
      const row = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        row.fill(0);
        for (let k = i; k < n; k++) {
          const a = H[r + i * n4 + k];
          const r1 = tmp + k * n4;
          for (let j = k; j < n; j++) row[j] += a * H[r1 + j];
        }
        H.set(row, r + i * n4);
      }
      return { path: 'cholqr2', cond, r, t: ri, base };
    }
  }
  // Householder LQ of W: W = L·Q̃, so Wᵀ = Q̃ᵀ·Lᵀ, R = Lᵀ.
  const H = ar.heap;
  H.set(H.subarray(w, w + n4 * d4), base);
  H.fill(0, tmp, tmp + n4 * n4);
  householderLQInPlace(H, base, d4, n, d, H, tmp, n4);
  H.fill(0, r, r + n4 * n4);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) H[r + j * n4 + i] = H[tmp + i * n4 + j];
  return { path: 'householder', cond, r, t: -1, base };
}

/**
 * Singular modes of one head. `wq`, `wk`: the head's d_h rows of the query/key weight
 * (d_h×d row-major; PyTorch [out, in]); `bq`: the head's query bias (length d_h) or null.
 */
export function headModes(
  wq: FloatArray,
  wk: FloatArray,
  bq: FloatArray | null,
  d: number,
  dh: number,
  layer: number,
  head: number,
  opts: HeadModesOptions = {},
): HeadModes {
  const n = dh;
  if (!(n >= 1) || !(d >= n)) throw new RangeError(`headModes: need 1 ≤ d_h ≤ d, got d_h=${dh}, d=${d}`);
  if (wq.length < n * d || wk.length < n * d) throw new RangeError(`headModes: W_q/W_k need ${n}×${d} entries`);
  if (bq && bq.length < n) throw new RangeError(`headModes: b_q needs ${n} entries`);
  const ar = opts.arena ?? threadArena();
  const L = layout(n, d);
  let H = ar.reserve(L.end);
  const { n4, d4 } = L;
  loadRows(H, L.wq, wq, L);
  loadRows(H, L.wk, wk, L);
  const force = opts.path ?? 'auto';
  const sq = factorSide(ar, L, L.wq, L.bq, L.ra, L.ria, force);
  const sk = factorSide(ar, L, L.wk, L.bk, L.rb, L.rib, force);
  H = ar.heap;

  // SVD of the core C = R_q·R_kᵀ into sorted σ, rows p_k (PR) and s_k (SR).
  const sigma = new Float64Array(n);
  H.fill(0, L.pr, L.pr + n4 * n4);
  H.fill(0, L.sr, L.sr + n4 * n4);
  let sweeps = -1;
  let method: 'golub-kahan' | 'jacobi' = 'golub-kahan';
  if (opts.svd !== 'jacobi') {
    ar.gemmNT(L.ra, L.rb, L.x, n4, n4, n4, n4);
    const raw = new Float64Array(n);
    const g = { a: L.x, p: L.gp, s: L.gs, vl: L.gvl, vr: L.gvr, w: L.gw, idx: L.gidx, cs: L.gcs, idx2: L.gidx2, cs2: L.gcs2 };
    sweeps = gkSvd(ar, g, n, n4, raw);
    H = ar.heap;
    if (sweeps >= 0) {
      const order = orderDescending(raw, n);
      for (let k = 0; k < n; k++) {
        const i = order[k];
        sigma[k] = raw[i];
        H.set(H.subarray(g.a + i * n4, g.a + i * n4 + n), L.pr + k * n4);
        H.set(H.subarray(g.vl + i * n4, g.vl + i * n4 + n), L.sr + k * n4);
      }
    }
  }
  if (sweeps < 0) {
    // One-sided Jacobi (also the fallback should the QR iteration not converge):
    // X = Cᵀ = R_k·R_qᵀ, its rows are C's columns, which Jacobi orthogonalises (svd.ts).
    method = 'jacobi';
    ar.gemmNT(L.rb, L.ra, L.x, n4, n4, n4, n4);
    sweeps = jacobiRows(ar, L.x, L.y, L.nrm, n, n4);
    H = ar.heap;
    const order = orderDescending(H.subarray(L.nrm, L.nrm + n), n);
    const missing: boolean[] = [];
    for (let k = 0; k < n; k++) {
      const i = order[k];
      const s = Math.sqrt(H[L.nrm + i]);
      sigma[k] = s;
      const zero = !(s > 1e-290);
      missing.push(zero);
      const xi = L.x + i * n4, pk = L.pr + k * n4;
      if (!zero) for (let p = 0; p < n; p++) H[pk + p] = H[xi + p] / s;
      H.set(H.subarray(L.y + i * n4, L.y + i * n4 + n), L.sr + k * n4);
    }
    if (missing.some(Boolean)) completeOrthonormalRows(H, L.pr, n4, n, n, missing);
  }

  // Coefficients: u_k = Bᵀ·(T·p_k). gemmNN wants Aᵀ with A[k,:] = (T p_k)ᵀ, i.e. Aᵀ = T·Pᵀ,
  // computed as gemmNT(T, PR) (rows of T dotted with rows of PR).
  const coef = (side: SideResult, rows: number, at: number): number => {
    if (side.t < 0) {
      for (let p = 0; p < n4; p++) for (let k = 0; k < n4; k++) H[at + p * n4 + k] = H[rows + k * n4 + p];
    } else ar.gemmNT(side.t, rows, at, n4, n4, n4, n4);
    return at;
  };
  ar.gemmNN(coef(sq, L.pr, L.atu), sq.base, L.uo, n4, d4, n4, L.pk);
  ar.gemmNN(coef(sk, L.sr, L.atv), sk.base, L.vo, n4, d4, n4, L.pk);
  H = ar.heap;

  // Canonical sign and cosines on the padded rows (padding is zero), then copy out.
  ar.signCos(L.uo, L.vo, n, d4, d, L.cos);
  const cosine = Float64Array.from(H.subarray(L.cos, L.cos + n));
  const out = opts.vectors;
  // Empty (not shared) arrays when the vectors go elsewhere: a worker transfers the result's buffers.
  let U = new Float64Array(0), V = new Float64Array(0);
  if (out) {
    if (out.offset < 0 || out.offset + n * d > Math.min(out.U.length, out.V.length)) throw new RangeError(`headModes: vectors need ${n}×${d} entries at ${out.offset}`);
    // Transposed into d × d_h columns: for each i the d_h rows are read at the same column
    // (d_h cache lines, reused by the next i), the destination is written contiguously.
    for (let i = 0; i < d; i++) {
      const o = out.offset + i * n;
      for (let k = 0; k < n; k++) {
        out.U[o + k] = H[L.uo + k * d4 + i];
        out.V[o + k] = H[L.vo + k * d4 + i];
      }
    }
  } else if (out === undefined) {
    U = new Float64Array(n * d);
    V = new Float64Array(n * d);
    if (d === d4) {
      U.set(H.subarray(L.uo, L.uo + n * d));
      V.set(H.subarray(L.vo, L.vo + n * d));
    } else
      for (let k = 0; k < n; k++) {
        U.set(H.subarray(L.uo + k * d4, L.uo + k * d4 + d), k * d);
        V.set(H.subarray(L.vo + k * d4, L.vo + k * d4 + d), k * d);
      }
  }

  const relGap = new Float64Array(n);
  const s1 = sigma[0];
  for (let k = 0; k < n; k++) {
    // beyond the last mode M has further zero singular values when d > d_h
    const next = k + 1 < n ? sigma[k + 1] : d > n ? 0 : NaN;
    const prev = k > 0 ? sigma[k - 1] : NaN;
    let g = Infinity;
    if (!Number.isNaN(prev)) g = Math.min(g, Math.abs(prev - sigma[k]));
    if (!Number.isNaN(next)) g = Math.min(g, Math.abs(sigma[k] - next));
    relGap[k] = s1 > 0 ? (Number.isFinite(g) ? g / s1 : 1) : 0;
  }
  let sw = 0, swc = 0, sc = 0;
  for (let k = 0; k < n; k++) {
    sw += sigma[k];
    swc += sigma[k] * cosine[k];
    sc += cosine[k];
  }

  let salience: Float64Array | null = null;
  let salienceNorm = 0;
  if (bq) {
    salience = new Float64Array(d);
    for (let j = 0; j < n; j++) {
      const b = bq[j];
      if (b === 0) continue;
      const o = j * d;
      for (let i = 0; i < d; i++) salience[i] += b * wk[o + i];
    }
    salienceNorm = Math.sqrt(dot(salience, salience, 0, 0, d));
  }

  return {
    layer,
    head,
    sigma,
    U,
    V,
    cosine,
    relGap,
    weightedCosine: sw > 0 ? swc / sw : NaN,
    meanCosine: sc / n,
    salience,
    salienceNorm,
    numerics: { qPath: sq.path, kPath: sk.path, condQ: sq.cond, condK: sk.cond, svd: method, sweeps },
  };
}

/** Dot product of a[ao..ao+len) and b[bo..bo+len), four independent partial sums. */
function dot(a: Float64Array, b: Float64Array, ao: number, bo: number, len: number): number {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  let i = 0;
  for (; i + 3 < len; i += 4) {
    s0 += a[ao + i] * b[bo + i];
    s1 += a[ao + i + 1] * b[bo + i + 1];
    s2 += a[ao + i + 2] * b[bo + i + 2];
    s3 += a[ao + i + 3] * b[bo + i + 3];
  }
  for (; i < len; i++) s0 += a[ao + i] * b[bo + i];
  return s0 + s1 + (s2 + s3);
}

