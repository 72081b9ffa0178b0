/**
 * Singular modes of one head's query-key interaction M = W_qᵀ W_k (docs/method.md §2–4).
 * Vectors are stored mode-major: row n of `U` (length d) is u_n, so U[n*d + i] = u_n[i].
 */
export interface HeadModes {
  layer: number;
  head: number;
  /** σ_n descending, of W_qᵀW_k itself (NOT divided by sqrt(d_h)). Length d_h. */
  sigma: Float64Array;
  /**
   * d_h x d, row n = u_n (query side), canonical sign: largest-|entry| of u_n is positive.
   * Empty when the vectors were written elsewhere or not kept (`vectors` option of headModes /
   * analyzeModel).
   */
  U: Float64Array;
  /** d_h x d, row n = v_n (key side), sign tied to u_n (empty like U). */
  V: Float64Array;
  /** c_n = u_n · v_n. */
  cosine: Float64Array;
  /** min(|σ_n − σ_{n−1}|, |σ_n − σ_{n+1}|) / σ_1: small means u_n, v_n are not identifiable. */
  relGap: Float64Array;
  /** Σ σ_n c_n / Σ σ_n (the paper's head score). NaN when all σ are 0. */
  weightedCosine: number;
  /** Plain mean of c_n (the official code's other plot). */
  meanCosine: number;
  /** Key salience s = W_kᵀ b_q (length d), or null when the query has no bias. */
  salience: Float64Array | null;
  salienceNorm: number;
  /** How the thin SVD was computed (diagnostics; absent when not recorded). */
  numerics?: HeadNumerics;
}

/** A two-sided chance interval for a cosine between independent random unit vectors in R^d. */
export interface Band {
  lo: number;
  hi: number;
}

export interface ChanceBands {
  d: number;
  /** Per mode: (c+1)/2 ~ Beta((d−1)/2, (d−1)/2), exact quantiles. */
  mode95: Band;
  mode99: Band;
}

/**
 * How one side (query or key) of a head was orthogonalised in the thin SVD (see modes.ts):
 * 'cholqr' Cholesky-QR of the Gram matrix (fast path), 'cholqr2' Cholesky-QR applied twice
 * (moderately ill-conditioned W), 'householder' Householder LQ (rank-deficient or very
 * ill-conditioned W).
 */
export type FactorPath = 'cholqr' | 'cholqr2' | 'householder';

/** Diagnostics of the thin SVD of one head (optional on HeadModes). */
export interface HeadNumerics {
  qPath: FactorPath;
  kPath: FactorPath;
  /**
   * Estimated 2-norm condition numbers of the head's W_q and W_k as used for the choice of
   * path (half the Frobenius bound when that already decides, else a power-iteration
   * estimate); Infinity when Cholesky failed.
   */
  condQ: number;
  condK: number;
  /** Method of the d_h×d_h core SVD ('jacobi' only when forced, or as the fallback). */
  svd?: 'golub-kahan' | 'jacobi';
  /** Implicit-QR sweeps (Golub–Kahan) or Jacobi sweeps (the last found nothing to rotate). */
  sweeps: number;
}
