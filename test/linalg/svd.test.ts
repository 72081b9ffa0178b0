import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Matrix, SingularValueDecomposition } from 'ml-matrix';
import { householderQR, matmul, transpose } from '../../src/linalg/dense.js';
import { completeOrthonormalRows, gkSvd, orderDescending, svd } from '../../src/linalg/svd.js';
import { Arena } from '../../src/linalg/kernels.js';
import { maxAbsDiff, orthoErrorColumns, orthoErrorRows, randn, rng } from './helpers.js';

function reconstruct(U: Float64Array, s: Float64Array, V: Float64Array, m: number, n: number, k: number): Float64Array {
  const US = Float64Array.from(U);
  for (let i = 0; i < m; i++) for (let j = 0; j < k; j++) US[i * k + j] *= s[j];
  return matmul(US, transpose(V, n, k), m, k, n);
}

test('svd of small dense matrices matches ml-matrix and reconstructs A (Golub–Kahan and Jacobi, wasm and JS)', () => {
  const g = rng(21);
  for (const [m, n] of [[1, 1], [2, 2], [5, 3], [3, 5], [16, 16], [40, 17], [64, 64], [80, 80]]) {
    for (const [wasm, method] of [[true, 'golub-kahan'], [false, 'golub-kahan'], [true, 'jacobi'], [false, 'jacobi']] as const) {
      const A = randn(m * n, g);
      const r = svd(A, m, n, new Arena({ wasm }), method);
      const k = Math.min(m, n);
      assert.equal(r.s.length, k);
      for (let i = 1; i < k; i++) assert.ok(r.s[i - 1] >= r.s[i]);
      const ref = new SingularValueDecomposition(new Matrix(Array.from({ length: m }, (_, i) => Array.from(A.subarray(i * n, (i + 1) * n)))));
      for (let i = 0; i < k; i++) assert.ok(Math.abs(r.s[i] - ref.diagonal[i]) < 1e-12 * r.s[0], `σ_${i} ${m}x${n}`);
      assert.ok(orthoErrorColumns(r.U, m, k) < 1e-13);
      assert.ok(orthoErrorColumns(r.V, n, k) < 1e-13);
      assert.ok(maxAbsDiff(reconstruct(r.U, r.s, r.V, m, n, k), A) < 1e-12 * r.s[0]);
    }
  }
});

test('svd: zero singular values get orthonormal, deterministic vectors (both methods)', () => {
  for (const method of ['golub-kahan', 'jacobi'] as const) {
    const m = 6, n = 4;
    const A = new Float64Array(m * n);
    A[0 * n + 0] = 3; // rank 2: two non-zero columns
    A[1 * n + 2] = 2;
    const r = svd(A, m, n, undefined, method);
    assert.ok(maxAbsDiff(r.s, [3, 2, 0, 0]) < 1e-15, `${method} ${r.s}`);
    assert.ok(orthoErrorColumns(r.U, m, n) < 1e-15);
    assert.ok(orthoErrorColumns(r.V, n, n) < 1e-15);
    assert.ok(maxAbsDiff(reconstruct(r.U, r.s, r.V, m, n, n), A) < 1e-15);
    assert.deepEqual(svd(A, m, n, undefined, method), r);
    const Z = svd(new Float64Array(12), 4, 3, undefined, method);
    assert.deepEqual(Array.from(Z.s), [0, 0, 0]);
    assert.ok(orthoErrorColumns(Z.U, 4, 3) < 1e-15);
    assert.ok(orthoErrorColumns(Z.V, 3, 3) < 1e-15);
  }
});

test('Golub–Kahan on hard cases: repeated, graded, rank-deficient, tiny and huge scales', () => {
  const g = rng(22);
  const n = 24;
  const Q1 = householderQR(randn(n * n, g), n, n).Q, Q2 = householderQR(randn(n * n, g), n, n).Q;
  const withSigma = (sig: number[]) => {
    const D = Float64Array.from(Q1);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) D[i * n + j] *= sig[j];
    return matmul(D, transpose(Q2, n, n), n, n, n);
  };
  const cases: [string, number[]][] = [
    ['repeated', Array.from({ length: n }, (_, i) => (i < 8 ? 2 : i < 16 ? 1 : 0.5))],
    ['graded', Array.from({ length: n }, (_, i) => 10 ** (-i / 2))],
    ['rank 5', Array.from({ length: n }, (_, i) => (i < 5 ? 5 - i : 0))],
    ['identity', Array.from({ length: n }, () => 1)],
  ];
  for (const [name, sig] of cases) {
    for (const scale of [1, 1e-150, 1e150]) {
      const A = withSigma(sig).map((x) => x * scale);
      const r = svd(A, n, n, undefined, 'golub-kahan');
      const want = [...sig].sort((a, b) => b - a).map((x) => x * scale);
      assert.ok(maxAbsDiff(r.s, want) < 1e-13 * want[0], `${name} ×${scale}: σ`);
      assert.ok(orthoErrorColumns(r.U, n, n) < 1e-13 && orthoErrorColumns(r.V, n, n) < 1e-13, `${name} ×${scale}: orthonormal`);
      assert.ok(maxAbsDiff(reconstruct(r.U, r.s, r.V, n, n, n), A) < 1e-13 * want[0], `${name} ×${scale}: A = UΣVᵀ`);
    }
  }
  // a bidiagonal-structured input (already bidiagonal, with zero diagonal entries)
  const B = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    B[i * n + i] = i % 3 === 0 ? 0 : i + 1;
    if (i + 1 < n) B[i * n + i + 1] = 1;
  }
  const r = svd(B, n, n);
  const ref = new SingularValueDecomposition(new Matrix(Array.from({ length: n }, (_, i) => Array.from(B.subarray(i * n, (i + 1) * n)))));
  assert.ok(maxAbsDiff(r.s, ref.diagonal) < 1e-13 * r.s[0]);
  assert.ok(maxAbsDiff(reconstruct(r.U, r.s, r.V, n, n, n), B) < 1e-13 * r.s[0]);
});

test('orderDescending is stable; completeOrthonormalRows fills gaps', () => {
  assert.deepEqual(Array.from(orderDescending([1, 3, 3, 2], 4)), [1, 2, 3, 0]);
  const H = new Float64Array(3 * 3);
  H.set([Math.SQRT1_2, Math.SQRT1_2, 0], 0);
  completeOrthonormalRows(H, 0, 3, 3, 3, [false, true, true]);
  assert.ok(orthoErrorRows(H, 3, 3) < 1e-15);
});

test('gkSvd reports non-convergence (−1) so callers can fall back', () => {
  const n = 8, ld = 8, sq = ld * ld;
  const ar = new Arena();
  const H = ar.reserve(5 * sq + 7 * ld);
  H.fill(0);
  const g = rng(23);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) H[i * ld + j] = g();
  const R = { a: 0, p: sq, s: 2 * sq, vl: 3 * sq, vr: 4 * sq, w: 5 * sq, idx: 5 * sq + ld, cs: 5 * sq + 2 * ld, idx2: 5 * sq + 4 * ld, cs2: 5 * sq + 5 * ld };
  assert.equal(gkSvd(ar, R, n, ld, new Float64Array(n), 0), -1);
});
