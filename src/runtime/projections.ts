/**
 * The scan's computation inside the ONNX graph (appended to the ViT graph with `extend`), so
 * that per image only O(L·H·d_h) numbers leave the runtime:
 *
 *   for each scanned layer l, on the patch tokens of the embedding x (LN output, or residual):
 *     Q_n(t) = x_t·u_n and K_n(t) = x_t·v_n for every head and mode      [N, 2·H·d_h, P]
 *     reduced over t: the mean, and two TopK(5, sorted): the 5 largest values (descending;
 *     the first is the max, its index the argmax, lowest index on ties) and the 5 smallest
 *     (ascending: min, argmin). TopK gives max and argmax in the same pass (ArgMax/ReduceMax
 *     would read the tensor again); the top-5 means are taken in JS in rank order, because
 *     onnxruntime's ReduceMean over the TopK output was seen to round differently with the
 *     batch size.
 *   -> output `scan_stats` [N, L·2·H·d_h, 13]   (per layer: the H·d_h query columns (head-major,
 *      column h·d_h + n), then the key columns; value order as STAT above)
 *   -> output `scan_centre` [N, L·d]: the centre patch's embedding (anisotropy baseline)
 *
 * Projection routes. 'direct': one MatMul of x [N, P, d] with [d, 2·H·d_h] (U and V columns).
 * 'fast' (LayerNorm embedding only): u_n lies in the row space of the head's W_q (u_n =
 * W_qᵀ W_k v_n / σ_n), so x·u_n = (W_q x)·a_n with a_n the least-squares solution of
 * W_qᵀ a = u_n; the graph already computes W_q x (its pre-bias query projection), so the
 * scan needs only a per-head d_h×d_h MatMul: d/d_h = H times fewer FLOPs. A mode whose
 * a_n would amplify float32 rounding (α_n = ‖a_n‖·‖W_q‖₂ > MAX_AMPLIFICATION, or u_n not in the
 * row space, e.g. σ_n = 0) is projected directly instead (output `scan_fallback` [N, F, 7]),
 * as are two check columns per layer whose agreement with the fast route is verified.
 */
import { loadWeight, type VitSpec } from '../arch/spec.js';
import type { OnnxGraph } from './onnx-graph.js';
import { roundUp, threadArena } from '../linalg/kernels.js';
import type { VitTensors } from './vit-graph.js';

export type Embedding = 'ln' | 'residual';

/** Order of the reductions in the stats outputs. */
export const STAT = { mean: 0, argmax: 1, argmin: 2, top: 3, bottom: 8, max: 3, min: 8 } as const;
/** Values per column: mean, argmax, argmin, 5 largest (descending), 5 smallest (ascending); fewer patches: padded with the last. */
export const NSTATS = 13;
export const TOPN = 5;
/** Above this error amplification a mode is projected directly. */
export const MAX_AMPLIFICATION = 100;

export interface HeadVectors {
  /** Mode-major [d_h, d]: row n is u_n (float32, exactly what the graph uses). */
  u: Float32Array;
  v: Float32Array;
}

export interface FallbackColumn {
  /** Index into the scanned layers. */
  li: number;
  /** 0: query (u), 1: key (v). */
  side: 0 | 1;
  /** Column within the side: head·d_h + mode. */
  col: number;
  /** A check column (the fast route also computes it; the two must agree). */
  check: boolean;
}

interface LayerFast {
  /** [H, d_h, d_h]: row n of head h is √d_h·a_n (query side; the graph's q carries 1/√d_h). */
  aq: Float32Array;
  ak: Float32Array;
  /** Columns to project directly (per side). */
  directQ: number[];
  directK: number[];
}

export interface ScanGraph {
  layers: number[];
  embedding: Embedding;
  /** H·d_h. */
  columns: number;
  patches: number;
  /** Patch index of the centre patch (row ⌊rows/2⌋, column ⌊cols/2⌋). */
  centre: number;
  /** Values averaged for the top-5 means: min(5, patches). */
  topCount: number;
  /** Route actually built per scanned layer (set by `extend`). */
  routes: ('fast' | 'direct')[];
  fallback: FallbackColumn[];
  extend: (g: OnnxGraph, t: VitTensors) => void;
  /**
   * What the graph must be built with for `extend`: blocks whose q/k projections the fast
   * route reads (VitGraphOptions.qkProjections); no block needs to be plain.
   */
  graph: { unfused: number[]; qkProjections: number[] };
}

function powerNorm(G: Float64Array, n: number): number {
  // sqrt of the largest eigenvalue of the symmetric PSD G (power iteration).
  let x = new Float64Array(n).fill(1 / Math.sqrt(n));
  let lambda = 0;
  for (let it = 0; it < 100; it++) {
    const y = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += G[i * n + j] * x[j];
      y[i] = s;
    }
    let nrm = 0;
    for (let i = 0; i < n; i++) nrm += y[i] * y[i];
    nrm = Math.sqrt(nrm);
    if (nrm === 0) return 0;
    const next = nrm;
    for (let i = 0; i < n; i++) y[i] /= nrm;
    x = y;
    if (Math.abs(next - lambda) <= 1e-10 * next) {
      lambda = next;
      break;
    }
    lambda = next;
  }
  return Math.sqrt(lambda);
}

/** Cholesky of the SPD n×n G in place (lower); false when not positive definite. */
function cholesky(G: Float64Array, n: number): boolean {
  for (let j = 0; j < n; j++) {
    let s = G[j * n + j];
    for (let k = 0; k < j; k++) s -= G[j * n + k] * G[j * n + k];
    if (!(s > 0)) return false;
    const ljj = Math.sqrt(s);
    G[j * n + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let t = G[i * n + j];
      for (let k = 0; k < j; k++) t -= G[i * n + k] * G[j * n + k];
      G[i * n + j] = t / ljj;
    }
  }
  return true;
}

/**
 * Least-squares coefficients a_n with Wᵀ a_n ≈ w_n for every mode vector w_n of one head
 * (W: [d_h, d] rows of the head; vecs: mode-major [d_h, d]). Returns rows a_n (mode-major
 * [d_h, d_h]) and which modes must be projected directly.
 */
export function headCoefficients(W: Float32Array, vecs: Float32Array, dh: number, d: number): { a: Float64Array; direct: boolean[]; amplification: Float64Array } {
  // The two dh×dh products (G = W·Wᵀ and B = W·Vᵀ, B[i][n] = W_i·w_n) through the wasm SIMD
  // kernel the svd uses, on zero-padded rows (zeros change no dot product).
  const m4 = roundUp(dh, 4);
  const k2 = roundUp(d, 2);
  const at = { w: 0, v: m4 * k2, g: 2 * m4 * k2, b: 2 * m4 * k2 + m4 * m4 };
  const ar = threadArena();
  const H = ar.reserve(at.b + m4 * m4);
  H.fill(0, 0, at.b + m4 * m4);
  for (let i = 0; i < dh; i++) {
    for (let c = 0; c < d; c++) {
      H[at.w + i * k2 + c] = W[i * d + c];
      H[at.v + i * k2 + c] = vecs[i * d + c];
    }
  }
  ar.gemmNT(at.w, at.w, at.g, m4, m4, k2, m4, true);
  ar.gemmNT(at.w, at.v, at.b, m4, m4, k2, m4);
  const G = new Float64Array(dh * dh);
  for (let i = 0; i < dh; i++)
    for (let j = i; j < dh; j++) {
      const s = H[at.g + i * m4 + j];
      G[i * dh + j] = s;
      G[j * dh + i] = s;
    }
  const B = new Float64Array(dh * dh); // B[n][i] = W_i·w_n
  for (let i = 0; i < dh; i++) for (let n = 0; n < dh; n++) B[n * dh + i] = H[at.b + i * m4 + n];
  const wn2 = new Float64Array(dh);
  for (let n = 0; n < dh; n++) {
    let t = 0;
    for (let c = n * d; c < (n + 1) * d; c++) t += vecs[c] * vecs[c];
    wn2[n] = t;
  }
  const wNorm = powerNorm(G, dh);
  const a = new Float64Array(dh * dh);
  const direct = new Array<boolean>(dh).fill(true);
  const amplification = new Float64Array(dh).fill(Infinity);
  const L = Float64Array.from(G);
  if (!cholesky(L, dh)) return { a, direct, amplification };
  const rhs = new Float64Array(dh);
  const y = new Float64Array(dh);
  const x = new Float64Array(dh);
  for (let n = 0; n < dh; n++) {
    for (let i = 0; i < dh; i++) rhs[i] = B[n * dh + i];
    // Solve L Lᵀ a = rhs.
    for (let i = 0; i < dh; i++) {
      let s = rhs[i];
      for (let k = 0; k < i; k++) s -= L[i * dh + k] * y[k];
      y[i] = s / L[i * dh + i];
    }
    for (let i = dh - 1; i >= 0; i--) {
      let s = y[i];
      for (let k = i + 1; k < dh; k++) s -= L[k * dh + i] * x[k];
      x[i] = s / L[i * dh + i];
    }
    // Residual of the least-squares fit without a d-length pass: Wᵀa is the projection of w onto
    // W's row space, so ‖Wᵀa − w‖² = ‖w‖² − aᵀ(W w). For unit-length w and an amplification
    // ≤ MAX_AMPLIFICATION the rounding of this difference is ~1e-14, far below the 1e-5 test.
    const wn = wn2[n];
    let proj = 0;
    let an = 0;
    for (let i = 0; i < dh; i++) {
      proj += x[i] * rhs[i];
      an += x[i] * x[i];
    }
    const res = Math.sqrt(Math.max(0, wn - proj));
    const amp = Math.sqrt(an) * wNorm;
    amplification[n] = amp;
    a.set(x, n * dh);
    direct[n] = !(res <= 1e-5 * Math.sqrt(wn)) || !(amp <= MAX_AMPLIFICATION);
  }
  return { a, direct, amplification };
}

/** Finds the graph's pre-bias projection `ln[l] · W_{q|k}ᵀ` (null if the graph is built otherwise). */
function preBiasProjection(g: OnnxGraph, t: VitTensors, l: number, which: 'q' | 'k', width: number): string | null {
  const init = `blocks.${l}.${which}.weight`;
  const info = g.initializers.get(init);
  if (!info || info.dims.length !== 2 || info.dims[0] !== width || info.dims[1] !== width) return null;
  const node = g.nodes.find((n) => n.opType === 'MatMul' && n.input?.[0] === t.ln[l] && n.input?.[1] === init);
  return node?.output?.[0] ?? null;
}

export interface ScanGraphOptions {
  layers: number[];
  embedding: Embedding;
  /** The mode vectors of (layer, head). */
  vectors: (layer: number, head: number) => HeadVectors;
  /** Force the direct route (tests, benchmarks). */
  directOnly?: boolean;
  /** Check columns verifying the fast route (default true; off only for benchmarks). */
  checks?: boolean;
}

/** Prepares the scan's graph extension (loads q/k weights for the fast route). */
export async function planScanGraph(spec: VitSpec, opts: ScanGraphOptions): Promise<ScanGraph> {
  const { width: d, heads: H, headDim: dh } = spec;
  const C = H * dh;
  const layers = opts.layers;
  const fast: (LayerFast | null)[] = [];
  const useFast = opts.embedding === 'ln' && !opts.directOnly;
  for (const l of layers) {
    if (!useFast) {
      fast.push(null);
      continue;
    }
    const b = spec.blocks[l];
    const wq = Float32Array.from(await loadWeight(b.q.weight));
    const wk = Float32Array.from(await loadWeight(b.k.weight));
    const aq = new Float32Array(H * dh * dh);
    const ak = new Float32Array(H * dh * dh);
    const directQ: number[] = [];
    const directK: number[] = [];
    const sq = Math.sqrt(dh);
    for (let h = 0; h < H; h++) {
      const { u, v } = opts.vectors(l, h);
      const Wq = wq.subarray(h * dh * d, (h + 1) * dh * d);
      const Wk = wk.subarray(h * dh * d, (h + 1) * dh * d);
      const cq = headCoefficients(Wq, u, dh, d);
      const ck = headCoefficients(Wk, v, dh, d);
      for (let n = 0; n < dh * dh; n++) {
        aq[h * dh * dh + n] = cq.a[n] * sq;
        ak[h * dh * dh + n] = ck.a[n];
      }
      cq.direct.forEach((x, n) => x && directQ.push(h * dh + n));
      ck.direct.forEach((x, n) => x && directK.push(h * dh + n));
    }
    fast.push({ aq, ak, directQ, directK });
  }

  const plan: ScanGraph = {
    layers,
    embedding: opts.embedding,
    columns: C,
    patches: 0,
    centre: 0,
    topCount: 0,
    routes: [],
    fallback: [],
    extend: () => undefined,
    graph: { unfused: [], qkProjections: layers.filter((_, li) => fast[li] !== null) },
  };

  /** Columns (side, col) as a [d, n] float32 matrix of mode vectors. */
  const directMatrix = (l: number, cols: { side: 0 | 1; col: number }[]): Float32Array => {
    const W = new Float32Array(d * cols.length);
    cols.forEach(({ side, col }, j) => {
      const h = Math.floor(col / dh);
      const n = col % dh;
      const hv = opts.vectors(l, h);
      const vec = side === 0 ? hv.u : hv.v;
      for (let i = 0; i < d; i++) W[i * cols.length + j] = vec[n * d + i];
    });
    return W;
  };

  plan.extend = (g: OnnxGraph, t: VitTensors) => {
    const lay = t.layout;
    const P = lay.patches;
    const ps = lay.patchStart;
    const T = lay.tokens;
    plan.patches = P;
    plan.centre = Math.floor(lay.grid[0] / 2) * lay.grid[1] + Math.floor(lay.grid[1] / 2);
    plan.topCount = Math.min(TOPN, P);
    const K = Math.min(TOPN, P);
    const kConst = g.ints([K]);
    const stats = (x: string, tag: string): string => {
      // x: [N, R, P] -> [N, R, 13]
      let [top, topIdx] = g.opN('TopK', [x, kConst], 2, { axis: 2, largest: 1, sorted: 1 }, { name: `${tag}_top` });
      let [bot, botIdx] = g.opN('TopK', [x, kConst], 2, { axis: 2, largest: 0, sorted: 1 }, { name: `${tag}_bottom` });
      const first = (i: string) => g.op('Cast', [g.slice(i, 2, 0, 1)], { to: 1 });
      const argmax = first(topIdx);
      const argmin = first(botIdx);
      if (K < TOPN) {
        // Fewer than 5 patches: repeat the last value (the JS side averages the first K).
        const pad = (v: string) => g.op('Concat', [v, ...Array<string>(TOPN - K).fill(g.slice(v, 2, K - 1, K))], { axis: 2 });
        top = pad(top);
        bot = pad(bot);
      }
      const mean = g.op('ReduceMean', [x], { axes: [2], keepdims: 1 }, { name: `${tag}_mean` });
      return g.op('Concat', [mean, argmax, argmin, top, bot], { axis: 2 }, { name: `${tag}_stats` });
    };
    const direct = (emb: string, W: Float32Array, n: number, tag: string): string => {
      const w = g.init(`${tag}_vectors`, [d, n], W);
      // Slice the smaller of input and output to the patch tokens (a slice is a copy).
      const p = n < d ? g.slice(g.matmul(emb, w, `${tag}_proj`), 1, ps, T, `${tag}_patches`) : g.matmul(g.slice(emb, 1, ps, T, `${tag}_patches`), w, `${tag}_proj`); // [N, P, n]
      return g.transpose(p, [0, 2, 1], `${tag}_projT`); // [N, n, P]
    };
    const layerStats: string[] = [];
    const fallbackStats: string[] = [];
    const centres: string[] = [];
    plan.routes = [];
    plan.fallback = [];
    layers.forEach((l, li) => {
      const emb = opts.embedding === 'ln' ? t.ln[l] : t.residual[l];
      centres.push(g.op('Gather', [emb, g.ints([ps + plan.centre], [])], { axis: 1 }, { name: `scan_centre_${l}` }));
      const f = fast[li];
      const qPre = f ? preBiasProjection(g, t, l, 'q', d) : null;
      const kPre = f ? preBiasProjection(g, t, l, 'k', d) : null;
      if (f && qPre && kPre) {
        plan.routes.push('fast');
        const side = (pre: string, A: Float32Array, tag: string) => {
          const x = g.slice(pre, 1, ps, T, `${tag}_patches`);
          const xh = g.transpose(g.reshape(x, [0, P, H, dh]), [0, 2, 3, 1], `${tag}_heads`); // [N, H, dh, P]
          const y = g.matmul(g.init(`${tag}_coef`, [H, dh, dh], A), xh, `${tag}_proj`); // [N, H, dh, P]
          return g.reshape(y, [0, C, P]);
        };
        const both = g.op('Concat', [side(qPre, f.aq, `scan_q${l}`), side(kPre, f.ak, `scan_k${l}`)], { axis: 1 });
        layerStats.push(stats(both, `scan_l${l}`));
        // Directly projected columns: the fallbacks plus one check column per side.
        const cols: { side: 0 | 1; col: number; check: boolean }[] = [];
        const addCols = (sideIdx: 0 | 1, list: number[]) => {
          const set = new Set(list);
          // One check column per side, in the first fast layer (a change of conventions would show in every layer).
          const check = opts.checks === false || plan.routes.filter((r) => r === 'fast').length > 1 ? undefined : [...Array(C).keys()].find((c) => !set.has(c));
          for (const c of list) cols.push({ side: sideIdx, col: c, check: false });
          if (check !== undefined) cols.push({ side: sideIdx, col: check, check: true });
        };
        addCols(0, f.directQ);
        addCols(1, f.directK);
        if (cols.length) {
          const p = direct(emb, directMatrix(l, cols), cols.length, `scan_f${l}`);
          fallbackStats.push(stats(p, `scan_f${l}`));
          for (const c of cols) plan.fallback.push({ li, ...c });
        }
      } else {
        plan.routes.push('direct');
        const cols = [...Array(2 * C).keys()].map((j) => ({ side: (j < C ? 0 : 1) as 0 | 1, col: j % C }));
        layerStats.push(stats(direct(emb, directMatrix(l, cols), 2 * C, `scan_d${l}`), `scan_l${l}`));
      }
    });
    const cat = (xs: string[], axis: number, name: string) => (xs.length === 1 ? xs[0] : g.op('Concat', xs, { axis }, { name }));
    g.output('scan_stats', cat(layerStats, 1, 'scan_stats_all'), ['batch', layers.length * 2 * C, NSTATS]);
    g.output('scan_centre', cat(centres, 1, 'scan_centre_all'), ['batch', layers.length * d]);
    if (fallbackStats.length) g.output('scan_fallback', cat(fallbackStats, 1, 'scan_fallback_all'), ['batch', plan.fallback.length, NSTATS]);
  };
  return plan;
}
