/**
 * SVDs of small dense matrices over the `Arena` kernels: Golub–Kahan–Reinsch (`gkSvd`, the
 * default) and one-sided (Hestenes) Jacobi (`jacobiRows`, the fallback).
 *
 * Both are backward stable (σ to ε·σ_1 absolute, vectors to ε·σ_1/gap). Jacobi is the
 * simpler and the more forgiving (no bidiagonal QR bookkeeping, no convergence corner cases),
 * but needs ~3× the work on random cores (see gkSvd), so it is kept as the fallback and as an
 * independent implementation for the tests.
 *
 * Jacobi convention: the matrix to orthogonalise is given by ROWS (x_1..x_n, length ≤ ld). Rotating
 * pairs of rows until all are mutually orthogonal yields J (accumulated in Y, Y = Jᵀ rows)
 * with Jᵀ·X = Σ·P where P has orthonormal rows. In column language for A with columns x_i:
 * A·J = P̂·Σ, i.e. A = P̂·Σ·Jᵀ: left vectors are the normalised final rows of X, right vectors
 * the rows of Y.
 */
import { Arena, roundUp } from './kernels.js';
import { householderQR, matmul } from './dense.js';

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
  // exact final norms (the kernel's Rutishauser updates drift by a few ulps per rotation)
  H = ar.heap;
  const inv = 1 / scale;
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let p = 0; p < ld; p++) {
      const v = (H[x + i * ld + p] *= inv);
      s += v * v;
    }
    H[nrm + i] = s;
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
 * Thin SVD of a small dense A (m×n row-major): A = U·diag(s)·Vᵀ, s descending. Golub–Kahan
 * by default (Jacobi when it fails to converge, or when asked). Vectors of zero singular
 * values are orthonormal and deterministic either way.
 */
export function svd(A: ArrayLike<number>, m: number, n: number, arena?: Arena, method: 'golub-kahan' | 'jacobi' = 'golub-kahan'): SvdResult {
  if (m < n) {
    // A = U s Vᵀ  ⇔  Aᵀ = V s Uᵀ
    const At = new Float64Array(m * n);
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) At[j * m + i] = A[i * n + j];
    const r = svd(At, n, m, arena, method);
    return { s: r.s, U: r.V, V: r.U, sweeps: r.sweeps };
  }
  const ar = arena ?? (sharedArena ??= new Arena());
  if (method === 'golub-kahan') {
    // square up: the thin QR of A (m×n, m ≥ n) reduces to the n×n factor R; A = Q·R, R = P Σ Sᵀ
    const { Q, R } = m > n ? householderQR(A, m, n) : { Q: null, R: Float64Array.from(A) };
    const ld = roundUp(Math.max(n, 1), 8), sq = ld * ld;
    const G: GkRegions = { a: 0, p: sq, s: 2 * sq, vl: 3 * sq, vr: 4 * sq, w: 5 * sq, idx: 5 * sq + ld, cs: 5 * sq + 2 * ld, idx2: 5 * sq + 4 * ld, cs2: 5 * sq + 5 * ld };
    const H = ar.reserve(5 * sq + 7 * ld);
    H.fill(0, 0, sq);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) H[i * ld + j] = R[i * n + j];
    const raw = new Float64Array(n);
    const sweeps = gkSvd(ar, G, n, ld, raw);
    if (sweeps >= 0) {
      const order = orderDescending(raw, n);
      const Hn = ar.heap;
      const s = new Float64Array(n), P = new Float64Array(n * n), V = new Float64Array(n * n);
      for (let k = 0; k < n; k++) {
        const i = order[k];
        s[k] = raw[i];
        for (let j = 0; j < n; j++) {
          P[j * n + k] = Hn[G.a + i * ld + j];
          V[j * n + k] = Hn[G.vl + i * ld + j];
        }
      }
      return { s, U: Q ? matmul(Q, P, m, n, n) : P, V, sweeps };
    }
  }
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

// ---- Golub–Kahan–Reinsch SVD ---------------------------------------------------------------

/**
 * Arena offsets used by `gkSvd` (all n4×n4 with stride ld, except w: ld, idx/idx2: ld (they
 * hold 2·ld int32 each), cs/cs2: 2·ld).
 */
export interface GkRegions {
  /** In: the matrix A (destroyed). Out: Pᵀ, rows = left singular vectors (unsorted). */
  a: number;
  p: number;
  s: number;
  /** Out: Sᵀ, rows = right singular vectors (unsorted). Used as scratch for reflectors before. */
  vl: number;
  vr: number;
  w: number;
  idx: number;
  cs: number;
  idx2: number;
  cs2: number;
}

/**
 * sqrt(a² + b²). gkSvd scales its matrix to ‖A‖_max ≈ 1 first, so the squares cannot
 * overflow; an underflowing square belongs to an entry below 1e-154·‖A‖, far under the
 * ε·‖A‖ at which entries are treated as zero anyway.
 */
function pythag(a: number, b: number): number {
  return Math.sqrt(a * a + b * b);
}

/**
 * SVD of the n×n matrix A (region a, stride ld, ld % 8 = 0, padding zero) by Householder
 * bidiagonalisation and implicitly shifted QR on the bidiagonal (Golub–Kahan–Reinsch, the
 * algorithm of LINPACK's dsvdc / Numerical Recipes' svdcmp): A = P·diag(σ)·Sᵀ.
 *
 * Why not only Jacobi: one-sided Jacobi needs ~6 rotations per pair of columns on random
 * 64×64 cores, each updating four rows (X and the accumulated Y), ~6n³ row-element updates in
 * all; Golub–Kahan needs ~n² rotations per side of two rows each plus ~5n³/3 flops of
 * reflectors, about three times less work. Both are backward stable (σ to ε·‖A‖ absolute,
 * vectors to ε‖A‖/gap). Reflectors and rotations run in the wasm kernels on contiguous rows;
 * the O(n)-per-step bidiagonal logic stays in JS, each QR sweep's rotations are collected and
 * applied to Pᵀ and Sᵀ in one kernel call each.
 *
 * On return Pᵀ is in region `a` and Sᵀ in region `vl` (rows: singular vectors, orthonormal to
 * working precision also for zero σ), sigma[0..n) holds σ ≥ 0 (unsorted). Returns the number
 * of QR sweeps, or −1 when some singular value did not converge within `maxIt` sweeps (the
 * caller falls back to Jacobi).
 */
export function gkSvd(ar: Arena, R: GkRegions, n: number, ld: number, sigma: Float64Array, maxIt = 75): number {
  const H = ar.heap;
  // scale by a power of two (exact) to keep squares far from over/underflow
  let big = 0;
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) big = Math.max(big, Math.abs(H[R.a + i * ld + j]));
  const scale = big > 0 && Number.isFinite(big) ? 2 ** -Math.round(Math.log2(big)) : 1;
  if (scale !== 1) for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) H[R.a + i * ld + j] *= scale;

  // 1. bidiagonalisation: B = H_{n−1}…H_0 · A · G_0…G_{n−3}, d = diag, e[i] = B[i−1, i]
  const d = new Float64Array(n), e = new Float64Array(n), tauL = new Float64Array(n), tauR = new Float64Array(n);
  const A = R.a;
  for (let k = 0; k < n; k++) {
    // left reflector on column k, rows k..n−1
    const m = n - k, vl = R.vl + k * ld;
    let nrm = 0;
    for (let t = 0; t < m; t++) {
      const x = H[A + (k + t) * ld + k];
      H[vl + t] = x;
      nrm += x * x;
    }
    nrm = Math.sqrt(nrm);
    const x0 = H[vl];
    if (m === 1 || nrm === 0) {
      d[k] = x0;
      tauL[k] = 0;
    } else {
      const alpha = x0 >= 0 ? -nrm : nrm;
      const v0 = x0 - alpha;
      H[vl] = v0;
      tauL[k] = -1 / (alpha * v0);
      d[k] = alpha;
      ar.houseLeft(A, ld, k, n, k + 1, n, vl, tauL[k], R.w);
    }
    // right reflector on row k, columns k+1..n−1
    if (k < n - 1) {
      const m2 = n - k - 1, vr = R.vr + k * ld, row = A + k * ld + k + 1;
      let nr2 = 0;
      for (let t = 0; t < m2; t++) {
        const x = H[row + t];
        H[vr + t] = x;
        nr2 += x * x;
      }
      nr2 = Math.sqrt(nr2);
      const y0 = H[vr];
      if (m2 === 1 || nr2 === 0) {
        e[k + 1] = y0;
        tauR[k] = 0;
      } else {
        const alpha = y0 >= 0 ? -nr2 : nr2;
        const v0 = y0 - alpha;
        H[vr] = v0;
        tauR[k] = -1 / (alpha * v0);
        e[k + 1] = alpha;
        ar.houseRight(A, ld, k + 1, n, k + 1, n, vr, tauR[k]);
      }
    }
  }
  // 2. accumulate P = H_0…H_{n−1} and S = G_0…G_{n−3} backwards (each touches a trailing block)
  const eye = (off: number) => {
    H.fill(0, off, off + ld * ld);
    for (let i = 0; i < n; i++) H[off + i * ld + i] = 1;
  };
  eye(R.p);
  eye(R.s);
  for (let k = n - 1; k >= 0; k--) if (tauL[k] !== 0) ar.houseLeft(R.p, ld, k, n, k, n, R.vl + k * ld, tauL[k], R.w);
  for (let k = n - 2; k >= 0; k--) if (tauR[k] !== 0) ar.houseLeft(R.s, ld, k + 1, n, k + 1, n, R.vr + k * ld, tauR[k], R.w);
  // Pᵀ → region a, Sᵀ → region vl (rows are then the vectors the QR sweeps rotate)
  H.fill(0, A, A + ld * ld);
  H.fill(0, R.vl, R.vl + ld * ld);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      H[A + j * ld + i] = H[R.p + i * ld + j];
      H[R.vl + j * ld + i] = H[R.s + i * ld + j];
    }
  const PT = A, ST = R.vl;

  // 3. implicit-shift QR on the bidiagonal; the rotations of a sweep are written straight into
  //    the heap (pairs as int32, (c, s) as doubles) and applied in one kernel call per matrix.
  //    (No allocation below: the heap does not grow inside this function.)
  const uI = new Int32Array(H.buffer, H.byteOffset + R.idx * 8, 2 * ld), uC = H.subarray(R.cs, R.cs + 2 * ld);
  const vI = new Int32Array(H.buffer, H.byteOffset + R.idx2 * 8, 2 * ld), vC = H.subarray(R.cs2, R.cs2 + 2 * ld);
  let nu = 0, nv = 0;
  const flushU = () => {
    if (nu) ar.rotRows(PT, ld, ld, R.idx, R.cs, nu);
    nu = 0;
  };
  const flushV = () => {
    if (nv) ar.rotRows(ST, ld, ld, R.idx2, R.cs2, nv);
    nv = 0;
  };
  let anorm = 0;
  for (let i = 0; i < n; i++) anorm = Math.max(anorm, Math.abs(d[i]) + Math.abs(e[i]));
  const tol = EPS * anorm;
  let sweeps = 0;
  for (let k = n - 1; k >= 0; k--) {
    for (let its = 0; ; its++) {
      let l = k, nm = k - 1, flag = true;
      for (; l >= 0; l--) {
        nm = l - 1;
        if (l === 0 || Math.abs(e[l]) <= tol) {
          flag = false;
          break;
        }
        if (Math.abs(d[nm]) <= tol) break;
      }
      if (flag) {
        // d[nm] ≈ 0: chase e[l] out with rotations of rows (nm, i) of Pᵀ
        let c = 0, s = 1;
        for (let i = l; i <= k; i++) {
          const f = s * e[i];
          e[i] = c * e[i];
          if (Math.abs(f) <= tol) break;
          const g = d[i];
          let h = pythag(f, g);
          d[i] = h;
          h = 1 / h;
          c = g * h;
          s = -f * h;
          uI[2 * nu] = nm;
          uI[2 * nu + 1] = i;
          uC[2 * nu] = c;
          uC[2 * nu + 1] = s;
          nu++;
        }
        flushU();
      }
      const z = d[k];
      if (l === k) {
        if (z < 0) {
          d[k] = -z;
          for (let j = 0; j < n; j++) H[ST + k * ld + j] = -H[ST + k * ld + j];
        }
        break;
      }
      if (its >= maxIt) return -1;
      sweeps++;
      let x = d[l];
      nm = k - 1;
      let y = d[nm], g = e[nm], h = e[k];
      let f = ((y - z) * (y + z) + (g - h) * (g + h)) / (2 * h * y);
      g = pythag(f, 1);
      f = ((x - z) * (x + z) + h * (y / (f + (f >= 0 ? Math.abs(g) : -Math.abs(g))) - h)) / x;
      let c = 1, s = 1;
      for (let j = l; j <= nm; j++) {
        const i = j + 1;
        g = e[i];
        y = d[i];
        h = s * g;
        g = c * g;
        let zz = pythag(f, h);
        e[j] = zz;
        if (zz !== 0) {
          c = f / zz;
          s = h / zz;
        } else {
          c = 1;
          s = 0;
        }
        f = x * c + g * s;
        g = g * c - x * s;
        h = y * s;
        y *= c;
        vI[2 * nv] = j;
        vI[2 * nv + 1] = i;
        vC[2 * nv] = c;
        vC[2 * nv + 1] = s;
        nv++;
        zz = pythag(f, h);
        d[j] = zz;
        if (zz !== 0) {
          zz = 1 / zz;
          c = f * zz;
          s = h * zz;
        }
        f = c * g + s * y;
        x = c * y - s * g;
        uI[2 * nu] = j;
        uI[2 * nu + 1] = i;
        uC[2 * nu] = c;
        uC[2 * nu + 1] = s;
        nu++;
      }
      e[l] = 0;
      e[k] = f;
      d[k] = x;
      flushV();
      flushU();
      if (!Number.isFinite(x) || !Number.isFinite(f)) return -1;
    }
  }
  for (let i = 0; i < n; i++) sigma[i] = d[i] / scale;
  return sweeps;
}
