/**
 * The exact mode-ablation weight edit (docs/method.md §8): removing modes n ∈ S of head h is
 *
 *   W_q,h ← W_q,h (I − Σ_{n∈S} u_n u_nᵀ)
 *
 * (the u_n are orthonormal, so this is the projector onto the complement of their span). Then
 * M' = W_q,h'ᵀ W_k,h = M − Σ_{n∈S} σ_n u_n v_nᵀ exactly: the other modes are untouched. Only the
 * head's d_h rows of the query weight change; the key, value, biases and other heads do not.
 * Computed in float64, returned as float32 (the runtime's dtype).
 */
import { loadWeight, type VitSpec } from '../arch/spec.js';
import { headModes } from './modes.js';
import type { HeadModes } from './types.js';
import type { FloatArray } from '../checkpoint/types.js';

/**
 * `wq`: the full query weight [heads·d_h, d] (PyTorch [out, in]); `U`: the head's modes,
 * mode-major (U[n·d + i] = u_n[i]). Returns a new [heads·d_h, d] float32 weight with the
 * head's rows projected off span{u_n : n ∈ modes}.
 */
export function ablateQueryWeight(wq: ArrayLike<number>, head: number, dh: number, d: number, U: ArrayLike<number>, modes: readonly number[]): Float32Array {
  const out = wq instanceof Float32Array || wq instanceof Float64Array ? new Float32Array(wq) : Float32Array.from(wq);
  const row = new Float64Array(d);
  for (let r = head * dh; r < (head + 1) * dh; r++) {
    for (let i = 0; i < d; i++) row[i] = wq[r * d + i];
    // Classical projection with the original row (u's orthonormal: all projections commute).
    const coef = modes.map((n) => {
      let s = 0;
      for (let i = 0; i < d; i++) s += row[i] * U[n * d + i];
      return s;
    });
    for (let i = 0; i < d; i++) {
      let x = row[i];
      for (let k = 0; k < modes.length; k++) x -= coef[k] * U[modes[k] * d + i];
      out[r * d + i] = x;
    }
  }
  return out;
}

/** One block's attention weights as the edit needs them. */
export interface LayerQK {
  layer: number;
  /** Full query weight [heads·d_h, d]. */
  wq: FloatArray;
  /** Full key weight [kvHeads·d_h, d]. */
  wk: FloatArray;
  /** Query bias [heads·d_h] or null. */
  bq: FloatArray | null;
}

export async function loadLayerQK(spec: VitSpec, layer: number): Promise<LayerQK> {
  const b = spec.blocks[layer];
  return {
    layer,
    wq: await loadWeight(b.q.weight),
    wk: await loadWeight(b.k.weight),
    bq: b.q.bias ? await loadWeight(b.q.bias) : null,
  };
}

/** Singular modes of head `h` (with vectors) from a loaded layer. */
export function modesOf(spec: VitSpec, x: LayerQK, head: number): HeadModes {
  const d = spec.width;
  const dh = spec.headDim;
  const kh = Math.floor(head / (spec.heads / spec.kvHeads));
  return headModes(
    x.wq.subarray(head * dh * d, (head + 1) * dh * d),
    x.wk.subarray(kh * dh * d, (kh + 1) * dh * d),
    x.bq ? x.bq.subarray(head * dh, (head + 1) * dh) : null,
    d,
    dh,
    x.layer,
    head,
  );
}
