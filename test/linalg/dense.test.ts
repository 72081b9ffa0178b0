import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  cholesky,
  choleskyUpperInPlace,
  condEstimateUpper,
  householderQR,
  invUpper,
  matmul,
  solveUpper,
  solveUpperTransposed,
  transpose,
} from '../../src/linalg/dense.js';
import { maxAbsDiff, orthoErrorColumns, randn, rng } from './helpers.js';

function spd(n: number, g: () => number): Float64Array {
  const A = randn(n * (n + 5), g);
  return matmul(A, transpose(A, n, n + 5), n, n + 5, n);
}

test('Cholesky: RᵀR = G, R upper; fails on indefinite and singular input', () => {
  const g = rng(11);
  for (const n of [1, 2, 7, 64]) {
    const G = spd(n, g);
    const R = cholesky(G, n)!;
    assert.ok(R);
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) assert.equal(R[i * n + j], 0);
    assert.ok(maxAbsDiff(matmul(transpose(R, n, n), R, n, n, n), G) < 1e-12 * Math.max(...G));
  }
  assert.equal(cholesky([1, 2, 2, 1], 2), null); // indefinite
  assert.equal(cholesky([1, 1, 1, 1], 2), null); // singular: second pivot exactly 0
  assert.equal(cholesky([0, 0, 0, 1], 2), null);
  assert.equal(choleskyUpperInPlace(new Float64Array([NaN]), 0, 1, 1), false);
});

test('invUpper and triangular solves', () => {
  const g = rng(12);
  const n = 9;
  const R = cholesky(spd(n, g), n)!;
  const Z = new Float64Array(n * n);
  assert.ok(invUpper(R, 0, n, Z, 0, n, n));
  const I = matmul(R, Z, n, n, n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) assert.ok(Math.abs(I[i * n + j] - (i === j ? 1 : 0)) < 1e-12);
  const b = randn(n, g);
  const x = Float64Array.from(b);
  solveUpper(R, n, x);
  assert.ok(maxAbsDiff(matmul(R, x, n, n, 1), b) < 1e-12);
  const y = Float64Array.from(b);
  solveUpperTransposed(R, n, y);
  assert.ok(maxAbsDiff(matmul(transpose(R, n, n), y, n, n, 1), b) < 1e-12);
  const S = new Float64Array([1, 2, 0, 0]);
  assert.equal(invUpper(S, 0, 2, new Float64Array(4), 0, 2, 2), false);
});

test('condEstimateUpper is close to the true 2-norm condition number', () => {
  // R = diag(s)·Q-ish: use an upper triangular with known singular values via diag
  const n = 6;
  const R = new Float64Array(n * n);
  const s = [1000, 50, 3, 1, 0.5, 0.01];
  for (let i = 0; i < n; i++) R[i * n + i] = s[i];
  const Z = new Float64Array(n * n);
  invUpper(R, 0, n, Z, 0, n, n);
  const k = condEstimateUpper(R, 0, n, Z, 0, n, n, 30);
  assert.ok(Math.abs(k / 1e5 - 1) < 1e-6, `κ ${k}`);
  // a generic one: compare with the Frobenius bounds κ₂ ≤ κ_F ≤ n κ₂
  const g = rng(13);
  const m = 20;
  const R2 = cholesky(spd(m, g), m)!;
  const Z2 = new Float64Array(m * m);
  invUpper(R2, 0, m, Z2, 0, m, m);
  const kf = Math.hypot(...R2) * Math.hypot(...Z2);
  const k2 = condEstimateUpper(R2, 0, m, Z2, 0, m, m);
  assert.ok(k2 <= kf * (1 + 1e-12) && k2 >= kf / m, `${k2} vs κ_F ${kf}`);
});

test('Householder QR: A = QR with orthonormal Q, also when rank-deficient', () => {
  const g = rng(14);
  const cases: [number, number, (A: Float64Array) => void][] = [
    [30, 7, () => {}],
    [12, 12, () => {}],
    [20, 5, (A) => { for (let i = 0; i < 20; i++) A[i * 5 + 3] = A[i * 5 + 1]; }], // duplicate column
    [20, 5, (A) => { for (let i = 0; i < 20; i++) A[i * 5 + 0] = 0; }], // zero column
    [10, 4, (A) => A.fill(0)], // all zero
  ];
  for (const [m, n, edit] of cases) {
    const A = randn(m * n, g);
    edit(A);
    const { Q, R } = householderQR(A, m, n);
    assert.ok(orthoErrorColumns(Q, m, n) < 1e-14 * m, `orthonormal ${m}x${n}`);
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) assert.equal(R[i * n + j], 0);
    assert.ok(maxAbsDiff(matmul(Q, R, m, n, n), A) < 1e-13 * Math.max(1, ...A.map(Math.abs)));
  }
  assert.throws(() => householderQR(new Float64Array(6), 2, 3), RangeError);
});
