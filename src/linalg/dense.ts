/**
 * Small dense float64 kernels (row-major, explicit offsets and leading dimensions so they can
 * work in place inside an `Arena` heap). Sizes here are the head width d_h ≤ ~128, so these
 * are O(n³) with n small; the O(n²·d) work lives in `kernels.ts`.
 *
 * Loops are arranged so that the innermost one walks a contiguous row (the "row-oriented"
 * variants of Cholesky and triangular inversion): strided column walks are what make naive
 * JS linear algebra slow.
 */

/**
 * In-place upper Cholesky: on entry the upper triangle of A (n×n at `off`, row stride `ld`)
 * holds a symmetric positive definite G; on exit it holds R with G = RᵀR (the strictly lower
 * triangle is zeroed). Returns false (A partly overwritten) when a pivot is not positive
 * or not finite, i.e. G is not numerically positive definite.
 *
 * Right-looking outer-product form: after pivot k, row i > k of the trailing matrix loses
 * R[k,i]·R[k,i..n) — a contiguous axpy.
 */
export function choleskyUpperInPlace(A: Float64Array, off: number, n: number, ld: number): boolean {
  for (let k = 0; k < n; k++) {
    const rk = off + k * ld;
    const piv = A[rk + k];
    if (!(piv > 0) || !Number.isFinite(piv)) return false;
    const dkk = Math.sqrt(piv);
    A[rk + k] = dkk;
    const inv = 1 / dkk;
    for (let j = k + 1; j < n; j++) A[rk + j] *= inv;
    for (let i = k + 1; i < n; i++) {
      const a = A[rk + i];
      if (a === 0) continue;
      const ri = off + i * ld;
      for (let j = i; j < n; j++) A[ri + j] -= a * A[rk + j];
    }
  }
  for (let i = 1; i < n; i++) {
    const ri = off + i * ld;
    for (let j = 0; j < i; j++) A[ri + j] = 0;
  }
  return true;
}

/**
 * Z = R⁻¹ for upper-triangular R (both n×n, row-major; Z may not alias R). Back substitution
 * by rows: row i of Z is −(Σ_{k>i} R[i,k]·Z[k,:]) / R[i,i], accumulated as contiguous axpys.
 * Returns false when a diagonal entry is zero.
 */
export function invUpper(R: Float64Array, rOff: number, ldr: number, Z: Float64Array, zOff: number, ldz: number, n: number): boolean {
  for (let i = n - 1; i >= 0; i--) {
    const ri = rOff + i * ldr, zi = zOff + i * ldz;
    const dii = R[ri + i];
    if (dii === 0 || !Number.isFinite(dii)) return false;
    for (let j = 0; j < n; j++) Z[zi + j] = 0;
    for (let k = i + 1; k < n; k++) {
      const a = R[ri + k];
      if (a === 0) continue;
      const zk = zOff + k * ldz;
      for (let j = k; j < n; j++) Z[zi + j] += a * Z[zk + j];
    }
    const inv = -1 / dii;
    for (let j = i + 1; j < n; j++) Z[zi + j] *= inv;
    Z[zi + i] = 1 / dii;
  }
  return true;
}

/** Solves R x = b in place (R upper, n×n row-major). */
export function solveUpper(R: Float64Array, n: number, b: Float64Array, ldr = n): void {
  for (let i = n - 1; i >= 0; i--) {
    let s = b[i];
    const ri = i * ldr;
    for (let k = i + 1; k < n; k++) s -= R[ri + k] * b[k];
    b[i] = s / R[ri + i];
  }
}

/** Solves Rᵀ x = b in place (R upper, so Rᵀ lower): forward substitution by columns of Rᵀ = rows of R. */
export function solveUpperTransposed(R: Float64Array, n: number, b: Float64Array, ldr = n): void {
  for (let i = 0; i < n; i++) {
    const xi = (b[i] /= R[i * ldr + i]);
    const ri = i * ldr;
    for (let k = i + 1; k < n; k++) b[k] -= R[ri + k] * xi;
  }
}

/**
 * ‖M‖₂ of an upper-triangular M (n×n at `off`, stride ld) by `iters` steps of power iteration
 * on MᵀM (two triangular mat-vecs per step, O(n²)). Power iteration approaches the largest
 * eigenvalue from below, so this is a lower bound, typically within a few per cent; the start
 * vector is a fixed pseudo-random one (deterministic, and not orthogonal to a structured
 * eigenvector the way (1,…,1) can be). x, y: scratch of length ≥ n.
 */
export function normUpper2(M: Float64Array, off: number, ld: number, n: number, iters: number, x: Float64Array, y: Float64Array): number {
  let seed = 0x9e3779b9;
  for (let i = 0; i < n; i++) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    x[i] = 0.5 + seed / 4294967296;
  }
  let lam = 0;
  for (let it = 0; it < iters; it++) {
    for (let i = 0; i < n; i++) {
      const mi = off + i * ld;
      let s = 0;
      for (let k = i; k < n; k++) s += M[mi + k] * x[k];
      y[i] = s;
    }
    for (let k = 0; k < n; k++) x[k] = 0;
    for (let i = 0; i < n; i++) {
      const mi = off + i * ld, yi = y[i];
      for (let k = i; k < n; k++) x[k] += M[mi + k] * yi;
    }
    let nx = 0;
    for (let i = 0; i < n; i++) nx += x[i] * x[i];
    nx = Math.sqrt(nx);
    if (!(nx > 0) || !Number.isFinite(nx)) return nx === 0 ? 0 : Infinity;
    // after the first step x is a unit vector, so ‖MᵀMx‖ → λ_max(MᵀM)
    lam = nx;
    const inv = 1 / nx;
    for (let i = 0; i < n; i++) x[i] *= inv;
  }
  return Math.sqrt(lam);
}

/**
 * Estimate of κ₂(R) = ‖R‖₂‖R⁻¹‖₂ for upper-triangular R with known inverse Z (a lower bound,
 * see normUpper2; callers apply a safety factor).
 */
export function condEstimateUpper(R: Float64Array, rOff: number, ldr: number, Z: Float64Array, zOff: number, ldz: number, n: number, iters = 6): number {
  const x = new Float64Array(n), y = new Float64Array(n);
  return normUpper2(R, rOff, ldr, n, iters, x, y) * normUpper2(Z, zOff, ldz, n, iters, x, y);
}

/**
 * Householder LQ of the n rows of W (n×d at `wOff`, row stride ldw, n ≤ d), in place:
 * W = L·Q̃ with L lower-triangular n×n (written to `L`, row stride ldl) and Q̃ n×d with
 * orthonormal rows (written over W). Backward stable and indifferent to rank: a row whose
 * remaining tail is exactly zero gets the identity reflector and a zero diagonal in L, and
 * Q̃ still has orthonormal rows (the rows of the accumulated product of reflectors).
 *
 * This is the fallback of the thin SVD when Cholesky-QR would lose accuracy (it squares the
 * condition number). Cost ≈ 2·n²·d flops-pairs, in plain JS: it only runs for ill-conditioned
 * or rank-deficient heads.
 */
export function householderLQInPlace(
  W: Float64Array,
  wOff: number,
  ldw: number,
  n: number,
  d: number,
  L: Float64Array,
  lOff: number,
  ldl: number,
): void {
  if (n > d) throw new RangeError(`householderLQ: ${n} rows exceed their length ${d}`);
  const V = new Float64Array(n * d); // reflector j occupies V[j*d + j .. j*d + d)
  const beta = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    const wj = wOff + j * ldw, vj = j * d;
    // scaled norm of the tail W[j, j..d) (avoids overflow/underflow for extreme scales)
    let scale = 0;
    for (let p = j; p < d; p++) scale = Math.max(scale, Math.abs(W[wj + p]));
    for (let p = 0; p < j; p++) L[lOff + j * ldl + p] = W[wj + p];
    if (scale === 0) {
      beta[j] = 0;
      L[lOff + j * ldl + j] = 0;
      for (let p = j + 1; p < n; p++) L[lOff + j * ldl + p] = 0;
      continue;
    }
    let ss = 0;
    for (let p = j; p < d; p++) {
      const t = W[wj + p] / scale;
      ss += t * t;
    }
    const nrm = scale * Math.sqrt(ss);
    const x0 = W[wj + j];
    const alpha = x0 >= 0 ? -nrm : nrm; // reflect onto −sign(x0)·‖x‖·e_j: no cancellation in v_0
    for (let p = j; p < d; p++) V[vj + p] = W[wj + p];
    V[vj + j] = x0 - alpha;
    let vv = 0;
    for (let p = j; p < d; p++) vv += V[vj + p] * V[vj + p];
    const b = vv > 0 ? 2 / vv : 0;
    beta[j] = b;
    L[lOff + j * ldl + j] = alpha;
    for (let p = j + 1; p < n; p++) L[lOff + j * ldl + p] = 0;
    // apply H_j = I − b·v·vᵀ to the remaining rows (from the right: r ← r − b(r·v)vᵀ)
    for (let i = j + 1; i < n; i++) {
      const wi = wOff + i * ldw;
      let s = 0;
      for (let p = j; p < d; p++) s += W[wi + p] * V[vj + p];
      s *= b;
      if (s !== 0) for (let p = j; p < d; p++) W[wi + p] -= s * V[vj + p];
    }
  }
  // Q̃ row i = e_iᵀ·H_{n−1}···H_0; H_j with j > i leaves e_i unchanged (v_j is zero there).
  for (let i = 0; i < n; i++) {
    const wi = wOff + i * ldw;
    for (let p = 0; p < d; p++) W[wi + p] = 0;
    W[wi + i] = 1;
    for (let j = i; j >= 0; j--) {
      const b = beta[j];
      if (b === 0) continue;
      const vj = j * d;
      let s = 0;
      for (let p = j; p < d; p++) s += W[wi + p] * V[vj + p];
      s *= b;
      if (s !== 0) for (let p = j; p < d; p++) W[wi + p] -= s * V[vj + p];
    }
  }
}

// ---- convenience wrappers on plain arrays (tests, callers outside the hot path) ----------

/** C = A·B (A m×k, B k×n, row-major). */
export function matmul(A: ArrayLike<number>, B: ArrayLike<number>, m: number, k: number, n: number): Float64Array {
  const C = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let p = 0; p < k; p++) {
      const a = A[i * k + p];
      if (a === 0) continue;
      for (let j = 0; j < n; j++) C[i * n + j] += a * B[p * n + j];
    }
  }
  return C;
}

/** Aᵀ for A m×n row-major. */
export function transpose(A: ArrayLike<number>, m: number, n: number): Float64Array {
  const T = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) T[j * m + i] = A[i * n + j];
  return T;
}

/** Upper R with G = RᵀR, or null when G is not numerically positive definite. */
export function cholesky(G: ArrayLike<number>, n: number): Float64Array | null {
  const R = Float64Array.from(G as ArrayLike<number>);
  return choleskyUpperInPlace(R, 0, n, n) ? R : null;
}

/**
 * Thin QR of A (m×n, m ≥ n) by Householder reflections: A = Q·R, Q m×n with orthonormal
 * columns, R n×n upper triangular. Handles rank deficiency (zero diagonal in R, Q still
 * orthonormal). Implemented as the LQ of Aᵀ.
 */
export function householderQR(A: ArrayLike<number>, m: number, n: number): { Q: Float64Array; R: Float64Array } {
  const W = transpose(A, m, n); // n×m: rows are A's columns
  const L = new Float64Array(n * n);
  householderLQInPlace(W, 0, m, n, m, L, 0, n);
  return { Q: transpose(W, n, m), R: transpose(L, n, n) };
}
