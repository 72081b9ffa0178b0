/**
 * A mode's query and key maps on one image (docs/method.md §5): with x_t the embedding of patch
 * token t (the LayerNorm output feeding the block, or the residual stream when a scan used it),
 *
 *   Q(t) = s·x_t·u_n,   K(t) = s·x_t·v_n,   S = max_t Q(t) × max_t K(t),
 *
 * over the patch tokens in raster order, s = ±1 the sign ((−u_n, −v_n) is the same mode). One
 * function for `figure modes`, the explorer's mode and image views, so they draw the same maps.
 */

export interface PatchMaps {
  q: Float64Array;
  k: Float64Array;
  qmax: number;
  kmax: number;
  /** max Q × max K */
  score: number;
}

/**
 * `x`: one image's tokens [T, d] starting at `offset`; `u`, `v`: mode-major [modes, d] (row n
 * is u_n / v_n); patch tokens are `patchStart .. patchStart + patches − 1`.
 */
export function patchMaps(
  x: ArrayLike<number>,
  offset: number,
  layout: { patchStart: number; patches: number },
  d: number,
  u: ArrayLike<number>,
  v: ArrayLike<number>,
  mode: number,
  sign: 1 | -1,
): PatchMaps {
  const P = layout.patches;
  const q = new Float64Array(P);
  const k = new Float64Array(P);
  const uo = mode * d;
  let qmax = -Infinity;
  let kmax = -Infinity;
  for (let t = 0; t < P; t++) {
    let sq = 0;
    let sk = 0;
    const off = offset + (layout.patchStart + t) * d;
    for (let c = 0; c < d; c++) {
      sq += x[off + c] * u[uo + c];
      sk += x[off + c] * v[uo + c];
    }
    q[t] = sign * sq;
    k[t] = sign * sk;
    if (q[t] > qmax) qmax = q[t];
    if (k[t] > kmax) kmax = k[t];
  }
  return { q, k, qmax, kmax, score: qmax * kmax };
}
