import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Matrix, SingularValueDecomposition } from 'ml-matrix';
import { matmul, transpose } from '../../src/linalg/dense.js';
import { completeOrthonormalRows, orderDescending, svd } from '../../src/linalg/svd.js';
import { Arena } from '../../src/linalg/kernels.js';
import { maxAbsDiff, orthoErrorColumns, orthoErrorRows, randn, rng } from './helpers.js';

function reconstruct(U: Float64Array, s: Float64Array, V: Float64Array, m: number, n: number, k: number): Float64Array {
  const US = Float64Array.from(U);
  for (let i = 0; i < m; i++) for (let j = 0; j < k; j++) US[i * k + j] *= s[j];
  return matmul(US, transpose(V, n, k), m, k, n);
}

test('svd of small dense matrices matches ml-matrix and reconstructs A', () => {
  const g = rng(21);
  for (const [m, n] of [[1, 1], [5, 3], [3, 5], [16, 16], [40, 17], [64, 64]]) {
    for (const wasm of [true, false]) {
      const A = randn(m * n, g);
      const r = svd(A, m, n, new Arena({ wasm }));
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

test('svd: exactly zero singular values get an orthonormal, deterministic completion', () => {
  const m = 6, n = 4;
  const A = new Float64Array(m * n);
  A[0 * n + 0] = 3; // rank 2: two non-zero columns
  A[1 * n + 2] = 2;
  const r = svd(A, m, n);
  assert.deepEqual(Array.from(r.s), [3, 2, 0, 0]);
  assert.ok(orthoErrorColumns(r.U, m, n) < 1e-15);
  assert.ok(orthoErrorColumns(r.V, n, n) < 1e-15);
  assert.ok(maxAbsDiff(reconstruct(r.U, r.s, r.V, m, n, n), A) < 1e-15);
  assert.deepEqual(svd(A, m, n), r);
  const Z = svd(new Float64Array(12), 4, 3);
  assert.deepEqual(Array.from(Z.s), [0, 0, 0]);
  assert.ok(orthoErrorColumns(Z.U, 4, 3) < 1e-15);
});

test('orderDescending is stable; completeOrthonormalRows fills gaps', () => {
  assert.deepEqual(Array.from(orderDescending([1, 3, 3, 2], 4)), [1, 2, 3, 0]);
  const H = new Float64Array(3 * 3);
  H.set([Math.SQRT1_2, Math.SQRT1_2, 0], 0);
  completeOrthonormalRows(H, 0, 3, 3, 3, [false, true, true]);
  assert.ok(orthoErrorRows(H, 3, 3) < 1e-15);
});
