/**
 * Position vs content in each mode's logits (docs/method.md §8; arXiv 2601.05328).
 *
 * Definition. For a layer, let x_{m,t} be the embedding of token t in image m (the LayerNorm
 * output feeding the attention by default, or the residual stream), over N ≥ 2 images at one
 * input size. The position part is the per-position mean over the images, P_t = (1/N) Σ_m x_{m,t};
 * the content part is the residual C_{m,t} = x_{m,t} − P_t. Mode n of a head contributes
 * σ_n (x_i·u_n)(v_n·x_j) to the logit from query token i to key token j; substituting x = C + P on
 * each side splits it into four terms (first letter: query side, second: key side):
 *
 *   CC = σ_n (C_i·u_n)(v_n·C_j)   CP = σ_n (C_i·u_n)(v_n·P_j)
 *   PC = σ_n (P_i·u_n)(v_n·C_j)   PP = σ_n (P_i·u_n)(v_n·P_j)
 *
 * The energy of a term is its sum of squares over images and token pairs,
 * E_XY = Σ_m Σ_i Σ_j XY², and the share of XY is E_XY / (E_CC + E_CP + E_PC + E_PP). We use the
 * sum of the four energies, not the energy of the full product, because the full product's
 * square has cross terms (CC·PP, CC·CP, ...) that are not attributable to one part and can be
 * negative; the four shares are each in [0, 1] and add to 1. (Cross terms that are linear in
 * the content vanish over the images, but those with two content factors do not.)
 *
 * Factorisation used to compute it exactly in O(N·T) per mode: with a_{m,i} = x_{m,i}·u_n,
 * ā_i = P_i·u_n (the mean of a over images), b likewise with v_n,
 *   Sqc_m = Σ_i (a_{m,i} − ā_i)², Sqp = Σ_i ā_i², Skc_m, Skp likewise, then
 *   E_CC = σ² Σ_m Sqc_m Skc_m, E_CP = σ² Skp Σ_m Sqc_m, E_PC = σ² Sqp Σ_m Skc_m, E_PP = σ² N Sqp Skp.
 *
 * Head summary: the energies summed over the head's modes, then shares (so strong modes weigh
 * by σ²). Layer summary: summed over the layer's heads. Modes with zero energy (σ_n = 0) have
 * no shares (null).
 */

export const PC_PARTS = ['CC', 'CP', 'PC', 'PP'] as const;
export type PcPart = (typeof PC_PARTS)[number];

/** Energies [CC, CP, PC, PP]. */
export type PcEnergies = [number, number, number, number];

export function shares(e: PcEnergies): PcEnergies | null {
  const s = e[0] + e[1] + e[2] + e[3];
  if (!(s > 0)) return null;
  return [e[0] / s, e[1] / s, e[2] / s, e[3] / s];
}

/**
 * Accumulates the statistics of one layer. Projections come per image as [T, 2K]: columns
 * 0..K−1 are x·u_k (query side), K..2K−1 are x·v_k (key side), for the K = H·d_h modes of the
 * layer (head-major). Needs two passes over the same images: `addMean` for all, then `addImage`.
 */
export class PositionContentLayer {
  private readonly sum: Float64Array;
  private mean: Float64Array | null = null;
  private readonly cc: Float64Array;
  private readonly qc: Float64Array;
  private readonly kc: Float64Array;
  private nMean = 0;
  private n = 0;

  constructor(
    readonly tokens: number,
    readonly modes: number,
    /** Token range [t0, t1) that enters the sums (all tokens, or the patches). */
    readonly range: [number, number] = [0, tokens],
  ) {
    this.sum = new Float64Array(tokens * 2 * modes);
    this.cc = new Float64Array(modes);
    this.qc = new Float64Array(modes);
    this.kc = new Float64Array(modes);
  }

  /** Pass 1: one image's projections [T, 2K]. */
  addMean(proj: ArrayLike<number>, offset = 0): void {
    const W = 2 * this.modes;
    for (let i = 0; i < this.tokens * W; i++) this.sum[i] += proj[offset + i];
    this.nMean++;
  }

  /** Pass 2: the same images again. */
  addImage(proj: ArrayLike<number>, offset = 0): void {
    const K = this.modes;
    const W = 2 * K;
    if (!this.mean) {
      if (this.nMean < 2) throw new Error('position-content: the split needs at least 2 images');
      this.mean = this.sum.map((v) => v / this.nMean);
    }
    const m = this.mean;
    const sq = new Float64Array(W);
    for (let t = this.range[0]; t < this.range[1]; t++) {
      const o = t * W;
      for (let k = 0; k < W; k++) {
        const c = proj[offset + o + k] - m[o + k];
        sq[k] += c * c;
      }
    }
    for (let k = 0; k < K; k++) {
      this.cc[k] += sq[k] * sq[K + k];
      this.qc[k] += sq[k];
      this.kc[k] += sq[K + k];
    }
    this.n++;
  }

  /** Energies per mode (σ² applied), [K] of [CC, CP, PC, PP]. */
  energies(sigma: ArrayLike<number>): PcEnergies[] {
    if (!this.mean) throw new Error('position-content: no images in pass 2');
    if (this.n !== this.nMean) throw new Error(`position-content: pass 2 saw ${this.n} images, pass 1 ${this.nMean}`);
    const K = this.modes;
    const W = 2 * K;
    const sqp = new Float64Array(W);
    for (let t = this.range[0]; t < this.range[1]; t++) for (let k = 0; k < W; k++) sqp[k] += this.mean[t * W + k] ** 2;
    const out: PcEnergies[] = [];
    for (let k = 0; k < K; k++) {
      const s2 = sigma[k] * sigma[k];
      out.push([s2 * this.cc[k], s2 * this.qc[k] * sqp[K + k], s2 * sqp[k] * this.kc[k], s2 * this.n * sqp[k] * sqp[K + k]]);
    }
    return out;
  }
}

export function addEnergies(a: PcEnergies, b: PcEnergies): PcEnergies {
  return [a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]];
}
