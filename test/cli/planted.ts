import { Matrix, QrDecomposition } from 'ml-matrix';
import type { PlantedQK } from '../fixtures/models.js';

/**
 * Planted singular structure for one head: orthonormal e_1..e_2dh (from the QR of a seeded
 * random d×2d_h matrix), u_n = e_n, v_n = c_n e_n + sqrt(1−c_n²) e_{d_h+n}, and
 * W_q = diag(√σ) Uᵀ, W_k = diag(√σ) Vᵀ, so W_qᵀW_k = U diag(σ) Vᵀ with known σ, u, v, c.
 */
export interface PlantedHead extends PlantedQK {
  sigma: number[];
  cosine: number[];
  /** u_n and v_n, mode-major (n*d + i). */
  u: Float64Array;
  v: Float64Array;
}

export function plantHead(d: number, sigma: number[], cosine: number[], seed: number): PlantedHead {
  const dh = sigma.length;
  if (2 * dh > d) throw new Error('plantHead needs d >= 2 d_h');
  let s = seed >>> 0 || 1;
  const rnd = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296 - 0.5;
  };
  const R = Matrix.zeros(d, 2 * dh).apply(function (this: Matrix, i: number, j: number) {
    this.set(i, j, rnd());
  });
  const Q = new QrDecomposition(R).orthogonalMatrix; // d × d, first 2dh columns span R
  const u = new Float64Array(dh * d);
  const v = new Float64Array(dh * d);
  const wq: number[] = new Array(dh * d);
  const wk: number[] = new Array(dh * d);
  for (let n = 0; n < dh; n++) {
    const c = cosine[n];
    const sc = Math.sqrt(Math.max(0, 1 - c * c));
    for (let i = 0; i < d; i++) {
      u[n * d + i] = Q.get(i, n);
      v[n * d + i] = c * Q.get(i, n) + sc * Q.get(i, dh + n);
      wq[n * d + i] = Math.sqrt(sigma[n]) * u[n * d + i];
      wk[n * d + i] = Math.sqrt(sigma[n]) * v[n * d + i];
    }
  }
  return { sigma, cosine, u, v, wq, wk };
}
