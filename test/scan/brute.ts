/**
 * The scan's result computed the slow, obvious way from `embed` output (ln.npy or residual.npy,
 * [N, L, T, d]) and the svd vectors (U.npy, V.npy, [L, H, d, d_h]), in float64.
 */
import type { NpyArray } from '../../src/io/npy.js';

export interface BruteEntry {
  id: number;
  score: number;
  qmax: number;
  kmax: number;
  qToken: number;
  kToken: number;
  qMean: number;
  kMean: number;
  qTop5: number;
  kTop5: number;
  /** Gap between the best and second-best token (ties make argmax ambiguous). */
  qGap: number;
  kGap: number;
}

function reduce(vals: Float64Array): { max: number; arg: number; mean: number; top5: number; gap: number } {
  let max = -Infinity;
  let arg = 0;
  let sum = 0;
  for (let t = 0; t < vals.length; t++) {
    sum += vals[t];
    if (vals[t] > max) {
      max = vals[t];
      arg = t;
    }
  }
  const sorted = Array.from(vals).sort((a, b) => b - a);
  const k = Math.min(5, vals.length);
  const top5 = sorted.slice(0, k).reduce((a, b) => a + b, 0) / k;
  return { max, arg, mean: sum / vals.length, top5, gap: sorted.length > 1 ? sorted[0] - sorted[1] : Infinity };
}

/**
 * All entries (every image) of list (layer slot li, head, mode, sign), sorted best first;
 * `ids[i]` is image i's id (embed row i).
 */
export function bruteList(
  emb: NpyArray,
  U: NpyArray,
  V: NpyArray,
  opts: { li: number; layer: number; head: number; mode: number; sign: 1 | -1; patchStart: number; ids: number[] },
): BruteEntry[] {
  const [N, , T, d] = emb.shape;
  const Lsel = emb.shape[1];
  const [, H, , dh] = U.shape;
  const x = emb.data as Float32Array;
  const u = U.data as Float32Array | Float64Array;
  const v = V.data as Float32Array | Float64Array;
  const P = T - opts.patchStart;
  const out: BruteEntry[] = [];
  for (let i = 0; i < N; i++) {
    const q = new Float64Array(P);
    const k = new Float64Array(P);
    for (let t = 0; t < P; t++) {
      const base = ((i * Lsel + opts.li) * T + opts.patchStart + t) * d;
      let sq = 0;
      let sk = 0;
      for (let c = 0; c < d; c++) {
        const vi = ((opts.layer * H + opts.head) * d + c) * dh + opts.mode;
        sq += x[base + c] * u[vi];
        sk += x[base + c] * v[vi];
      }
      q[t] = opts.sign * sq;
      k[t] = opts.sign * sk;
    }
    const rq = reduce(q);
    const rk = reduce(k);
    out.push({ id: opts.ids[i], score: rq.max * rk.max, qmax: rq.max, kmax: rk.max, qToken: rq.arg, kToken: rk.arg, qMean: rq.mean, kMean: rk.mean, qTop5: rq.top5, kTop5: rk.top5, qGap: rq.gap, kGap: rk.gap });
  }
  return out.sort((a, b) => b.score - a.score || a.id - b.id);
}
