/**
 * One-sided (Hestenes) Jacobi SVD for small matrices, driven over the `Arena` kernels.
 *
 * Why Jacobi: it is backward stable (σ to ε·σ_1 absolute, vectors to ε·σ_1/gap), simple,
 * needs no bidiagonal QR bookkeeping, handles zero and repeated singular values without
 * special cases, and its inner loops (row dot products and plane rotations of contiguous rows)
 * vectorise. For d_h ≤ 128 the sweep count (≈7 with de Rijk pivoting) is the only cost knob.
 *
 * Convention: the matrix to orthogonalise is given by ROWS (x_1..x_n, length ≤ ld). Rotating
 * pairs of rows until all are mutually orthogonal yields J (accumulated in Y, Y = Jᵀ rows)
 * with Jᵀ·X = Σ·P where P has orthonormal rows. In column language for A with columns x_i:
 * A·J = P̂·Σ, i.e. A = P̂·Σ·Jᵀ: left vectors are the normalised final rows of X, right vectors
 * the rows of Y.
 */
import { Arena, roundUp } from './kernels.js';

export const EPS = 2.220446049250313e-16;

/**
 * Runs Jacobi sweeps on the first n rows of X (offset x, stride ld, ld % 8 = 0) until none
 * rotates, accumulating in Y (offset y, same stride; set to the identity here). nrm (n
 * doubles) receives ‖x_i‖² of the final rows (= σ_i²). Returns the number of sweeps run.
 * Rows are orthogonal on exit to |x_i·x_j| ≤ tol·‖x_i‖‖x_j‖.
 *
 * Threshold strategy: the first two sweeps only rotate pairs whose cosine exceeds 0.1 and
 * 0.01 (the large rotations that later sweeps would otherwise have to redo), which saves ~8%
 * of the rotations on random 64×64 cores; convergence is decided by sweeps at `tol` only.
 * X is scaled by a power of two (exact) so that its largest row norm is near 1: the rotation
 * formulas square row norms, which must stay far from over- and underflow.
 */
export function jacobiRows(ar: Arena, x: number, y: number, nrm: number, n: number, ld: number, tol = Math.max(8, n) * EPS, maxSweeps = 80): number {
  let H = ar.heap;
  let big = 0;
  for (let i = 0; i < n; i++) for (let p = 0; p < ld; p++) big = Math.max(big, Math.abs(H[x + i * ld + p]));
  const scale = big > 0 && Number.isFinite(big) ? 2 ** -Math.round(Math.log2(big * Math.sqrt(n))) : 1;
  for (let i = 0; i < n; i++) {
    const xi = x + i * ld, yi = y + i * ld;
    let s = 0;
    for (let p = 0; p < ld; p++) {
      const v = (H[xi + p] *= scale);
      s += v * v;
      H[yi + p] = 0;
    }
    H[yi + i] = 1;
    H[nrm + i] = s;
  }
  const schedule = n >= 16 ? [0.1, 0.01] : [];
  let sweeps = 0;
  while (sweeps < maxSweeps) {
    const t = sweeps < schedule.length ? Math.max(tol, schedule[sweeps]) : tol;
    sweeps++;
    if (ar.jacobiSweep(x, y, nrm, n, ld, t) === 0 && t === tol) break;
  }
  H = ar.heap;
  if (scale !== 1) {
    const inv = 1 / scale;
    for (let i = 0; i < n; i++) {
      H[nrm + i] *= inv * inv;
      for (let p = 0; p < ld; p++) H[x + i * ld + p] *= inv;
    }
  }
  return sweeps;
}

/** Indices 0..n−1 sorted by key descending (stable: ties keep index order). */
export function orderDescending(key: ArrayLike<number>, n: number): Int32Array {
  const idx = Array.from({ length: n }, (_, i) => i);
  idx.sort((a, b) => key[b] - key[a] || a - b);
  return Int32Array.from(idx);
}

/**
 * Fills the rows i with missing[i] (n rows of length dim at `off`, stride ld) so that all n
 * rows are orthonormal, given that the other rows already are. Deterministic: candidates are
 * e_0, e_1, … in order, each orthogonalised twice (classical Gram–Schmidt, "twice is enough")
 * against every row present, and accepted when at least half of it survives. Used for
 * singular vectors of exactly-zero singular values, which are otherwise arbitrary.
 */
export function completeOrthonormalRows(H: Float64Array, off: number, ld: number, n: number, dim: number, missing: boolean[]): void {
  const present: number[] = [];
  for (let i = 0; i < n; i++) if (!missing[i]) present.push(off + i * ld);
  const v = new Float64Array(dim);
  let cand = 0;
  for (let i = 0; i < n; i++) {
    if (!missing[i]) continue;
    for (;; cand++) {
      if (cand >= dim) throw new Error('completeOrthonormalRows: more rows than dimensions');
      v.fill(0);
      v[cand] = 1;
      for (let pass = 0; pass < 2; pass++) {
        for (const r of present) {
          let s = 0;
          for (let p = 0; p < dim; p++) s += H[r + p] * v[p];
          for (let p = 0; p < dim; p++) v[p] -= s * H[r + p];
        }
      }
      let nv = 0;
      for (let p = 0; p < dim; p++) nv += v[p] * v[p];
      nv = Math.sqrt(nv);
      if (nv > 0.5) {
        const ri = off + i * ld;
        for (let p = 0; p < dim; p++) H[ri + p] = v[p] / nv;
        for (let p = dim; p < ld; p++) H[ri + p] = 0;
        present.push(ri);
        cand++;
        break;
      }
    }
  }
}

export interface SvdResult {
  /** Singular values, descending, length k = min(m, n). */
  s: Float64Array;
  /** m×k row-major: column j is the left singular vector j. */
  U: Float64Array;
  /** n×k row-major: column j is the right singular vector j. */
  V: Float64Array;
  sweeps: number;
}

let sharedArena: Arena | undefined;

/**
 * Thin SVD of a small dense A (m×n row-major): A = U·diag(s)·Vᵀ, s descending. Vectors of
 * zero singular values are completed to an orthonormal set deterministically.
 */
export function svd(A: ArrayLike<number>, m: number, n: number, arena?: Arena): SvdResult {
  if (m < n) {
    // A = U s Vᵀ  ⇔  Aᵀ = V s Uᵀ
    const At = new Float64Array(m * n);
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) At[j * m + i] = A[i * n + j];
    const r = svd(At, n, m, arena);
    return { s: r.s, U: r.V, V: r.U, sweeps: r.sweeps };
  }
  const ar = arena ?? (sharedArena ??= new Arena());
  const ld = roundUp(Math.max(m, n, 1), 8);
  const x = 0, y = n * ld, nrm = 2 * n * ld;
  const H = ar.reserve(nrm + n);
  // rows of X = columns of A
  for (let j = 0; j < n; j++) {
    const xj = x + j * ld;
    for (let i = 0; i < m; i++) H[xj + i] = A[i * n + j];
    for (let i = m; i < ld; i++) H[xj + i] = 0;
  }
  const sweeps = jacobiRows(ar, x, y, nrm, n, ld);
  const order = orderDescending(H.subarray(nrm, nrm + n), n);
  const s = new Float64Array(n);
  const missing: boolean[] = [];
  for (let k = 0; k < n; k++) {
    const i = order[k];
    const sig = Math.sqrt(H[nrm + i]);
    s[k] = sig;
    missing.push(!(sig > 1e-290));
    const xi = x + i * ld;
    if (sig > 1e-290) for (let p = 0; p < ld; p++) H[xi + p] /= sig;
  }
  // normalised left vectors, in sorted order, into a compact block for completion
  const P = new Float64Array(n * m);
  for (let k = 0; k < n; k++) if (!missing[k]) P.set(H.subarray(x + order[k] * ld, x + order[k] * ld + m), k * m);
  if (missing.some(Boolean)) completeOrthonormalRows(P, 0, m, n, m, missing);
  const U = new Float64Array(m * n), V = new Float64Array(n * n);
  for (let k = 0; k < n; k++) {
    for (let i = 0; i < m; i++) U[i * n + k] = P[k * m + i];
    const yi = y + order[k] * ld;
    for (let i = 0; i < n; i++) V[i * n + k] = H[yi + i];
  }
  return { s, U, V, sweeps };
}
