/** Shared helpers for the linear-algebra and analysis tests. */
import { gaussian, mulberry32 } from '../../src/analysis/synthetic.js';
import { householderQR } from '../../src/linalg/dense.js';

export function rng(seed: number): () => number {
  return gaussian(mulberry32(seed));
}

export function randn(n: number, g: () => number, scale = 1): Float64Array {
  const a = new Float64Array(n);
  for (let i = 0; i < n; i++) a[i] = g() * scale;
  return a;
}

/** m×k (m ≥ k) matrix with orthonormal columns, row-major (Q factor of a Gaussian matrix). */
export function randomOrthonormalColumns(m: number, k: number, g: () => number): Float64Array {
  return householderQR(randn(m * k, g), m, k).Q;
}

/** max |a_i − b_i| */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** ‖AᵀA − I‖_max for A m×k row-major (columns orthonormal?). */
export function orthoErrorColumns(A: ArrayLike<number>, m: number, k: number): number {
  let e = 0;
  for (let i = 0; i < k; i++)
    for (let j = 0; j < k; j++) {
      let s = 0;
      for (let p = 0; p < m; p++) s += A[p * k + i] * A[p * k + j];
      e = Math.max(e, Math.abs(s - (i === j ? 1 : 0)));
    }
  return e;
}

/** ‖AAᵀ − I‖_max for A k×m row-major (rows orthonormal?). */
export function orthoErrorRows(A: ArrayLike<number>, k: number, m: number): number {
  let e = 0;
  for (let i = 0; i < k; i++)
    for (let j = 0; j < k; j++) {
      let s = 0;
      for (let p = 0; p < m; p++) s += A[i * m + p] * A[j * m + p];
      e = Math.max(e, Math.abs(s - (i === j ? 1 : 0)));
    }
  return e;
}
