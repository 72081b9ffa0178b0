import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Matrix, SingularValueDecomposition } from 'ml-matrix';
import { headModes } from '../../src/analysis/modes.js';
import type { HeadModes } from '../../src/analysis/types.js';
import { matmul } from '../../src/linalg/dense.js';
import { maxAbs, maxAbsDiff, orthoErrorRows, randn, randomOrthonormalColumns, rng } from '../linalg/helpers.js';

/** Column j of a row-major m×k matrix. */
function col(A: Float64Array, m: number, k: number, j: number): Float64Array {
  const c = new Float64Array(m);
  for (let i = 0; i < m; i++) c[i] = A[i * k + j];
  return c;
}
function row(A: Float64Array, d: number, n: number): Float64Array {
  return A.subarray(n * d, (n + 1) * d);
}
function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

interface Planted {
  d: number;
  n: number;
  sigma: number[];
  u: Float64Array[];
  v: Float64Array[];
  wq: Float64Array;
  wk: Float64Array;
}

/**
 * W_qᵀW_k = Σ σ_n u_n v_nᵀ with orthonormal u's and v's and chosen cosines: W_q = R·diag(√σ)·Uᵀ,
 * W_k = R·diag(√σ)·Vᵀ with R a random orthogonal n×n (so W_q, W_k themselves are not aligned
 * with the modes). v_n = c_n u_n + sqrt(1−c_n²) q_n with q_n fresh orthonormal directions.
 */
function planted(d: number, sigma: number[], cos: number[], seed: number): Planted {
  const g = rng(seed);
  const n = sigma.length;
  const Q = randomOrthonormalColumns(d, 2 * n, g);
  const u: Float64Array[] = [], v: Float64Array[] = [];
  for (let k = 0; k < n; k++) {
    const uk = col(Q, d, 2 * n, k), qk = col(Q, d, 2 * n, n + k);
    const c = cos[k], s = Math.sqrt(Math.max(0, 1 - c * c));
    u.push(uk);
    v.push(uk.map((x, i) => c * x + s * qk[i]));
  }
  const R = randomOrthonormalColumns(n, n, g);
  const wq = new Float64Array(n * d), wk = new Float64Array(n * d);
  for (let i = 0; i < n; i++)
    for (let k = 0; k < n; k++) {
      const a = R[i * n + k] * Math.sqrt(sigma[k]);
      for (let p = 0; p < d; p++) {
        wq[i * d + p] += a * u[k][p];
        wk[i * d + p] += a * v[k][p];
      }
    }
  return { d, n, sigma, u, v, wq, wk };
}

/** Checks h against the planted modes; vectors only where σ > 0 and the relative gap ≥ minGap. */
function checkPlanted(h: HeadModes, P: Planted, tol: number, minGap = 1e-6): void {
  const { d, n } = P;
  const s1 = P.sigma[0];
  for (let k = 0; k < n; k++) assert.ok(Math.abs(h.sigma[k] - P.sigma[k]) <= tol * s1, `σ_${k}: ${h.sigma[k]} vs ${P.sigma[k]}`);
  assert.ok(orthoErrorRows(h.U, n, d) < tol, 'U orthonormal rows');
  assert.ok(orthoErrorRows(h.V, n, d) < tol, 'V orthonormal rows');
  for (let k = 0; k < n; k++) {
    const gapL = k > 0 ? P.sigma[k - 1] - P.sigma[k] : Infinity;
    const gapR = k + 1 < n ? P.sigma[k] - P.sigma[k + 1] : P.sigma[k];
    if (!(P.sigma[k] > 0) || Math.min(gapL, gapR) < minGap * s1) continue;
    const u = row(h.U, d, k), v = row(h.V, d, k);
    const sgn = Math.sign(dot(u, P.u[k]));
    assert.ok(maxAbsDiff(u, P.u[k].map((x) => sgn * x)) < tol, `u_${k}`);
    assert.ok(maxAbsDiff(v, P.v[k].map((x) => sgn * x)) < tol, `v_${k} (sign tied to u_${k})`);
    assert.ok(Math.abs(h.cosine[k] - dot(P.u[k], P.v[k])) < tol, `c_${k}`);
  }
}

/** Canonical sign: the first entry of largest magnitude of every u_n is positive. */
function checkSign(h: HeadModes, d: number): void {
  for (let k = 0; k < h.sigma.length; k++) {
    const u = row(h.U, d, k);
    let bi = 0;
    for (let i = 1; i < d; i++) if (Math.abs(u[i]) > Math.abs(u[bi])) bi = i;
    assert.ok(u[bi] > 0, `mode ${k}: u[${bi}] = ${u[bi]}`);
  }
}

test('planted modes with cosines +1, −1, 0 and zero σ are recovered (rank-deficient → Householder)', () => {
  const sigma = [9, 7, 5, 3, 2, 1, 0, 0];
  const cos = [1, -1, 0, 0.6, -0.3, 0.99, 0.2, -0.5];
  const P = planted(48, sigma, cos, 1);
  const h = headModes(P.wq, P.wk, null, 48, 8, 3, 5);
  assert.equal(h.layer, 3);
  assert.equal(h.head, 5);
  assert.equal(h.numerics?.qPath, 'householder');
  assert.equal(h.numerics?.kPath, 'householder');
  checkPlanted(h, P, 1e-12);
  assert.ok(Math.abs(h.cosine[0] - 1) < 1e-12 && Math.abs(h.cosine[1] + 1) < 1e-12 && Math.abs(h.cosine[2]) < 1e-12);
  // zero modes: unit vectors orthogonal to the rest (checked by orthoErrorRows), σ ≈ 0
  assert.ok(h.sigma[6] < 1e-13 * 9 && h.sigma[7] < 1e-13 * 9);
  checkSign(h, 48);
  const ws = sigma.reduce((a, b) => a + b, 0);
  const wc = sigma.reduce((a, s, k) => a + s * cos[k], 0) / ws;
  assert.ok(Math.abs(h.weightedCosine - wc) < 1e-12);
  assert.ok(Math.abs(h.meanCosine - Array.from(h.cosine).reduce((a, b) => a + b, 0) / 8) < 1e-15);
});

test('planted full-rank modes take the Cholesky-QR fast path and match to 1e-12', () => {
  const sigma = [9, 7, 5, 3, 2, 1, 0.5, 0.25];
  const cos = [1, -1, 0, 0.6, -0.3, 0.99, 0.2, -0.5];
  for (const d of [48, 50, 64]) {
    const P = planted(d, sigma, cos, 2 + d);
    const h = headModes(P.wq, P.wk, null, d, 8, 0, 0);
    assert.equal(h.numerics?.qPath, 'cholqr');
    assert.equal(h.numerics?.kPath, 'cholqr');
    checkPlanted(h, P, 1e-12);
    checkSign(h, d);
  }
});

test('ill-conditioned W_q, W_k fall back (CholeskyQR2, Householder) and stay accurate; plain Cholesky-QR would not', () => {
  const cos = [0.9, -0.7, 0, 0.5, -0.2, 0.3, 1, -1];
  // κ(W) = sqrt(σ_1/σ_8): 1e4 → CholeskyQR2; 1e6 → Householder
  for (const [sigma, path] of [
    [[1, 0.5, 0.2, 0.1, 1e-2, 1e-4, 1e-6, 1e-8], 'cholqr2'],
    [[1, 0.5, 0.2, 0.1, 1e-3, 1e-6, 1e-9, 1e-12], 'householder'],
  ] as const) {
    const P = planted(40, [...sigma], cos, 7);
    const h = headModes(P.wq, P.wk, null, 40, 8, 0, 0);
    assert.equal(h.numerics?.qPath, path);
    assert.equal(h.numerics?.kPath, path);
    checkPlanted(h, P, 1e-10, 1e-4);
    // every σ to ~ε·σ_1 absolute
    assert.ok(maxAbsDiff(h.sigma, sigma) < 1e-14);
    if (path === 'householder') {
      const bad = headModes(P.wq, P.wk, null, 40, 8, 0, 0, { path: 'cholqr' });
      assert.equal(bad.numerics?.qPath, 'cholqr');
      assert.ok(orthoErrorRows(bad.U, 8, 40) > 1e-8, 'Cholesky-QR loses orthogonality at κ = 1e6 (why the fallback exists)');
    }
  }
});

test('random W_q, W_k: σ and cosines match a dense SVD of W_qᵀW_k (ml-matrix)', () => {
  const g = rng(5);
  for (const [d, n, f32] of [[48, 8, false], [50, 5, false], [40, 12, true], [33, 1, false], [24, 24, false]] as const) {
    const wq0 = randn(n * d, g), wk0 = randn(n * d, g);
    const wq = f32 ? Float32Array.from(wq0) : wq0, wk = f32 ? Float32Array.from(wk0) : wk0;
    const M = matmul(
      Array.from({ length: d * n }, (_, t) => wq[(t % n) * d + Math.floor(t / n)]), // W_qᵀ (d×n)
      wk,
      d,
      n,
      d,
    );
    const ref = new SingularValueDecomposition(new Matrix(Array.from({ length: d }, (_, i) => Array.from(M.subarray(i * d, (i + 1) * d)))));
    const h = headModes(wq, wk, null, d, n, 0, 0);
    const U = ref.leftSingularVectors, V = ref.rightSingularVectors;
    for (let k = 0; k < n; k++) {
      assert.ok(Math.abs(h.sigma[k] - ref.diagonal[k]) <= 1e-9 * ref.diagonal[k], `σ_${k} d=${d} n=${n}`);
      let c = 0, uu = 0, vv = 0;
      for (let i = 0; i < d; i++) {
        c += U.get(i, k) * V.get(i, k);
        uu += U.get(i, k) * h.U[k * d + i];
        vv += V.get(i, k) * h.V[k * d + i];
      }
      assert.ok(Math.abs(h.cosine[k] - c) < 1e-9, `c_${k}`);
      if (h.relGap[k] > 1e-6) {
        assert.ok(Math.abs(Math.abs(uu) - 1) < 1e-9 && Math.abs(uu - vv) < 1e-9, `vectors of mode ${k}`);
      }
    }
    assert.ok(orthoErrorRows(h.U, n, d) < 1e-12 && orthoErrorRows(h.V, n, d) < 1e-12);
    // M = Σ σ u vᵀ
    const Mr = new Float64Array(d * d);
    for (let k = 0; k < n; k++) for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) Mr[i * d + j] += h.sigma[k] * h.U[k * d + i] * h.V[k * d + j];
    assert.ok(maxAbsDiff(Mr, M) < 1e-12 * ref.diagonal[0]);
    checkSign(h, d);
  }
});

test('all factorisation paths and both core SVDs agree on the same input', () => {
  const g = rng(6);
  const d = 64, n = 16;
  const wq = randn(n * d, g), wk = randn(n * d, g);
  const a = headModes(wq, wk, null, d, n, 0, 0, { path: 'cholqr' });
  assert.equal(a.numerics?.svd, 'golub-kahan');
  for (const [path, svd] of [['cholqr2', 'golub-kahan'], ['householder', 'golub-kahan'], ['cholqr', 'jacobi'], ['householder', 'jacobi']] as const) {
    const b = headModes(wq, wk, null, d, n, 0, 0, { path, svd });
    assert.equal(b.numerics?.qPath, path);
    assert.equal(b.numerics?.svd, svd);
    assert.ok(maxAbsDiff(a.sigma, b.sigma) < 1e-12 * a.sigma[0]);
    assert.ok(maxAbsDiff(a.cosine, b.cosine) < 1e-12);
    assert.ok(maxAbsDiff(a.U, b.U) < 1e-10 && maxAbsDiff(a.V, b.V) < 1e-10);
  }
});

test('canonical sign: ties go to the lowest index, and (−W_q, −W_k) gives the same modes', () => {
  // u = (1, −1, 0, 0)/√2 exactly: |u_0| = |u_1|, the lowest index is made positive
  const wq = new Float64Array([1, -1, 0, 0]), wk = new Float64Array([0, 0, 1, 0]);
  for (const s of [1, -1]) {
    const h = headModes(wq.map((x) => s * x), wk.map((x) => s * x), null, 4, 1, 0, 0);
    assert.ok(Math.abs(h.sigma[0] - Math.SQRT2) < 1e-15);
    assert.ok(h.U[0] > 0 && h.U[1] < 0 && Math.abs(h.U[0] + h.U[1]) < 1e-16);
    assert.ok(h.V[2] > 0, 'v flips with u');
    assert.equal(h.cosine[0], 0);
  }
  const g = rng(8);
  const d = 30, n = 6;
  const q = randn(n * d, g), k = randn(n * d, g);
  const a = headModes(q, k, null, d, n, 0, 0), b = headModes(q.map((x) => -x), k.map((x) => -x), null, d, n, 0, 0);
  assert.ok(maxAbsDiff(a.U, b.U) < 1e-12 && maxAbsDiff(a.V, b.V) < 1e-12 && maxAbsDiff(a.sigma, b.sigma) < 1e-12);
  // the transpose problem M' = W_kᵀW_q swaps u and v (up to the sign rule), same σ and cosines
  const t = headModes(k, q, null, d, n, 0, 0);
  assert.ok(maxAbsDiff(a.sigma, t.sigma) < 1e-12 && maxAbsDiff(a.cosine, t.cosine) < 1e-12);
  for (let m = 0; m < n; m++) assert.ok(Math.abs(Math.abs(dot(row(a.U, d, m), row(t.V, d, m))) - 1) < 1e-10);
});

test('relGap, head scores and key salience follow their definitions', () => {
  const g = rng(9);
  const d = 20, n = 4;
  const wq = randn(n * d, g), wk = randn(n * d, g), bq = randn(n, g);
  const h = headModes(wq, wk, bq, d, n, 0, 0);
  const s = h.sigma;
  const gaps = [s[0] - s[1], Math.min(s[0] - s[1], s[1] - s[2]), Math.min(s[1] - s[2], s[2] - s[3]), Math.min(s[2] - s[3], s[3])];
  assert.ok(maxAbsDiff(h.relGap, gaps.map((x) => x / s[0])) < 1e-15);
  const sal = new Float64Array(d);
  for (let j = 0; j < n; j++) for (let i = 0; i < d; i++) sal[i] += bq[j] * wk[j * d + i];
  assert.ok(maxAbsDiff(h.salience!, sal) < 1e-13);
  assert.ok(Math.abs(h.salienceNorm - Math.hypot(...sal)) < 1e-13);
  const no = headModes(wq, wk, null, d, n, 0, 0);
  assert.equal(no.salience, null);
  assert.equal(no.salienceNorm, 0);
  // all-zero weights: σ = 0, NaN weighted score, still unit vectors
  const z = headModes(new Float64Array(n * d), new Float64Array(n * d), null, d, n, 0, 0);
  assert.deepEqual(Array.from(z.sigma), [0, 0, 0, 0]);
  assert.ok(Number.isNaN(z.weightedCosine));
  assert.ok(orthoErrorRows(z.U, n, d) < 1e-15 && orthoErrorRows(z.V, n, d) < 1e-15);
  assert.equal(maxAbs(z.relGap), 0);
});

test('float32 input equals the same values given as float64; bad shapes are rejected', () => {
  const g = rng(10);
  const d = 36, n = 6;
  const q32 = Float32Array.from(randn(n * d, g)), k32 = Float32Array.from(randn(n * d, g));
  const a = headModes(q32, k32, null, d, n, 0, 0), b = headModes(Float64Array.from(q32), Float64Array.from(k32), null, d, n, 0, 0);
  assert.deepEqual(a.sigma, b.sigma);
  assert.deepEqual(a.U, b.U);
  assert.throws(() => headModes(q32, k32, null, 5, 6, 0, 0), RangeError);
  assert.throws(() => headModes(q32.subarray(1), k32, null, d, n, 0, 0), RangeError);
  assert.throws(() => headModes(q32, k32, new Float32Array(2), d, n, 0, 0), RangeError);
});
