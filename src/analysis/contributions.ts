/**
 * Per-mode contributions to one head's attention scores on one image (docs/method.md §5).
 *
 * With x_t = LN(h_t) the attention input, the logit from query token i to key token j is
 *
 *   a_ij = [ Σ_n σ_n (x_i·u_n)(v_n·x_j)            (mode parts, σ_n of W_qᵀW_k, unscaled)
 *          + b_q·(W_k x_j)                           (key bias: salience s = W_kᵀb_q, query-independent)
 *          + (W_q x_i)·b_k                           (query bias: constant along a row, cancels in softmax)
 *          + b_q·b_k ] / sqrt(d_h)                   (constant)
 *          + r_ij                                    (BEiT relative position bias, when the model has one)
 *
 * The contribution of mode n is the attention-weighted sum over the chosen token pairs
 *
 *   C_n = Σ_{i∈R} Σ_j A_ij σ_n Q_n(i) K_n(j) / sqrt(d_h),   Q_n(t) = x_t·u_n, K_n(t) = x_t·v_n,
 *
 * where A is the model's attention (rows sum to 1), j runs over all tokens (special tokens
 * included, as in the softmax) and R is every token (default) or the one query patch asked
 * for. The bias terms get the same weighting, so Σ_n C_n + bias terms = Σ_{i∈R} Σ_j A_ij a_ij
 * (the attention-weighted mean logit, times |R|). Modes are ranked by C_n, largest first
 * (a negative C_n lowers the scores where the head attends).
 */
import type { HeadModes } from './types.js';

export interface ContributionInput {
  /** LN output of the block, [T, d] row-major. */
  x: ArrayLike<number>;
  T: number;
  d: number;
  dh: number;
  wq: ArrayLike<number>;
  wk: ArrayLike<number>;
  bq: ArrayLike<number> | null;
  bk: ArrayLike<number> | null;
  modes: Pick<HeadModes, 'sigma' | 'U' | 'V' | 'cosine'>;
  /** The model's attention probabilities of this head, [T, T]. */
  attention: ArrayLike<number>;
  /** Relative position bias [T, T] or null. */
  relPos: ArrayLike<number> | null;
  /** Query token indices R. */
  rows: number[];
  /** The model's own pre-softmax scores [T, T] (for the residual check), when available. */
  modelScores?: ArrayLike<number> | null;
}

export interface ModeContribution {
  /** Rank by contribution (0 = largest). */
  rank: number;
  mode: number;
  sigma: number;
  cosine: number;
  contribution: number;
  /** contribution / Σ_m |contribution_m| (signed). */
  share: number;
  /**
   * Display sign of the mode's maps: +1, or −1 when the query tokens with Q_n < 0 carry more of
   * C_n than those with Q_n > 0. (u_n, v_n) → (−u_n, −v_n) leaves the mode unchanged, so the
   * figure shows s·Q_n and s·K_n: their positive parts are where the contribution comes from.
   */
  orientation: 1 | -1;
}

export interface ContributionResult {
  /** Ranked, largest contribution first. */
  modes: ModeContribution[];
  terms: { key_bias: number; query_bias: number; constant: number; relative_position: number };
  /** Σ_{i∈R} Σ_j A_ij a_ij with a_ij the reconstructed logits. */
  total: number;
  /** Query maps Q_n(t), [d_h, T] (mode-major, all tokens). */
  Q: Float64Array;
  K: Float64Array;
  /** Reconstructed logits of the rows R: [|R|, T]. */
  logits: Float64Array;
  /** Per token t: b_q·W_k x_t/√d_h (the key-bias term when t is the key), W_q x_t·b_k/√d_h (the query-bias term when t is the query). */
  keyBias: Float64Array;
  queryBias: Float64Array;
  /** b_q·b_k/√d_h */
  constant: number;
  check: {
    /** max |recon − (W_q x_i + b_q)·(W_k x_j + b_k)/√d_h − r_ij| / max |logit| (float64 both). */
    direct_relative: number;
    /** max |recon − model scores| / max |model scores| (null without a scores tap). */
    model_relative: number | null;
    /** max |softmax(recon) − model attention| over the rows. */
    softmax_max_abs: number;
  };
}

export function modeContributions(inp: ContributionInput): ContributionResult {
  const { x, T, d, dh, wq, wk, bq, bk, modes, attention: A, relPos, rows } = inp;
  const scale = 1 / Math.sqrt(dh);
  const nm = modes.sigma.length;
  // Maps Q_n(t), K_n(t).
  const Q = new Float64Array(nm * T);
  const K = new Float64Array(nm * T);
  for (let n = 0; n < nm; n++) {
    for (let t = 0; t < T; t++) {
      let q = 0, k = 0;
      for (let i = 0; i < d; i++) {
        const xv = x[t * d + i];
        q += xv * modes.U[n * d + i];
        k += xv * modes.V[n * d + i];
      }
      Q[n * T + t] = q;
      K[n * T + t] = k;
    }
  }
  // W_q x_t, W_k x_t (no bias), [T, d_h].
  const qx = new Float64Array(T * dh);
  const kx = new Float64Array(T * dh);
  for (let t = 0; t < T; t++) {
    for (let r = 0; r < dh; r++) {
      let q = 0, k = 0;
      for (let i = 0; i < d; i++) {
        const xv = x[t * d + i];
        q += wq[r * d + i] * xv;
        k += wk[r * d + i] * xv;
      }
      qx[t * dh + r] = q;
      kx[t * dh + r] = k;
    }
  }
  const keyBias = new Float64Array(T); // b_q·W_k x_j / √d_h
  const queryBias = new Float64Array(T); // W_q x_i·b_k / √d_h
  let constant = 0;
  for (let t = 0; t < T; t++) {
    let kb = 0, qb = 0;
    for (let r = 0; r < dh; r++) {
      if (bq) kb += bq[r] * kx[t * dh + r];
      if (bk) qb += qx[t * dh + r] * bk[r];
    }
    keyBias[t] = kb * scale;
    queryBias[t] = qb * scale;
  }
  if (bq && bk) for (let r = 0; r < dh; r++) constant += bq[r] * bk[r];
  constant *= scale;

  const contrib = new Float64Array(nm);
  const fromPositive = new Float64Array(nm); // part of C_n from query rows with Q_n(i) > 0
  const fromNegative = new Float64Array(nm);
  const terms = { key_bias: 0, query_bias: 0, constant: 0, relative_position: 0 };
  const logits = new Float64Array(rows.length * T);
  let total = 0;
  let maxLogit = 0, maxDirect = 0, maxModel = 0, maxModelDiff = 0, maxSoft = 0;
  const AK = new Float64Array(nm);
  rows.forEach((i, ri) => {
    AK.fill(0);
    let aKb = 0, aRp = 0, aSum = 0;
    for (let j = 0; j < T; j++) {
      const a = A[i * T + j];
      aSum += a;
      for (let n = 0; n < nm; n++) AK[n] += a * K[n * T + j];
      aKb += a * keyBias[j];
      if (relPos) aRp += a * relPos[i * T + j];
    }
    for (let n = 0; n < nm; n++) {
      const c = modes.sigma[n] * Q[n * T + i] * AK[n] * scale;
      contrib[n] += c;
      if (Q[n * T + i] > 0) fromPositive[n] += c;
      else if (Q[n * T + i] < 0) fromNegative[n] += c;
    }
    terms.key_bias += aKb;
    terms.query_bias += aSum * queryBias[i];
    terms.constant += aSum * constant;
    terms.relative_position += aRp;
    // Reconstructed logits of this row, and the checks.
    let rowMax = -Infinity;
    for (let j = 0; j < T; j++) {
      let s = 0;
      for (let n = 0; n < nm; n++) s += modes.sigma[n] * Q[n * T + i] * K[n * T + j];
      const rec = s * scale + keyBias[j] + queryBias[i] + constant + (relPos ? relPos[i * T + j] : 0);
      logits[ri * T + j] = rec;
      total += A[i * T + j] * rec;
      let dir = 0;
      for (let r = 0; r < dh; r++) dir += (qx[i * dh + r] + (bq ? bq[r] : 0)) * (kx[j * dh + r] + (bk ? bk[r] : 0));
      dir = dir * scale + (relPos ? relPos[i * T + j] : 0);
      maxLogit = Math.max(maxLogit, Math.abs(dir));
      maxDirect = Math.max(maxDirect, Math.abs(rec - dir));
      if (inp.modelScores) {
        const m = inp.modelScores[i * T + j];
        maxModel = Math.max(maxModel, Math.abs(m));
        maxModelDiff = Math.max(maxModelDiff, Math.abs(rec - m));
      }
      if (rec > rowMax) rowMax = rec;
    }
    let z = 0;
    for (let j = 0; j < T; j++) z += Math.exp(logits[ri * T + j] - rowMax);
    for (let j = 0; j < T; j++) maxSoft = Math.max(maxSoft, Math.abs(Math.exp(logits[ri * T + j] - rowMax) / z - A[i * T + j]));
  });
  let absSum = 0;
  for (let n = 0; n < nm; n++) absSum += Math.abs(contrib[n]);
  const order = Array.from({ length: nm }, (_, n) => n).sort((a, b) => contrib[b] - contrib[a] || a - b);
  return {
    modes: order.map((n, rank) => ({
      rank,
      mode: n,
      sigma: modes.sigma[n],
      cosine: modes.cosine[n],
      contribution: contrib[n],
      share: absSum > 0 ? contrib[n] / absSum : 0,
      orientation: fromNegative[n] > fromPositive[n] ? (-1 as const) : (1 as const),
    })),
    terms,
    total,
    Q,
    K,
    logits,
    keyBias,
    queryBias,
    constant,
    check: {
      direct_relative: maxLogit > 0 ? maxDirect / maxLogit : maxDirect,
      model_relative: inp.modelScores ? (maxModel > 0 ? maxModelDiff / maxModel : maxModelDiff) : null,
      softmax_max_abs: maxSoft,
    },
  };
}

/** The terms of one query row's logits, per key token j: a_ij = Σ_n modes[n][j] + keyBias[j] + queryConstant + relPos[j]. */
export interface RowParts {
  /** σ_n Q_n(i) K_n(j)/√d_h: [modes][T], mode index order. */
  modes: Float64Array[];
  /** b_q·W_k x_j/√d_h (the key salience s·x_j/√d_h, s = W_kᵀ b_q). */
  keyBias: Float64Array;
  /** (W_q x_i·b_k + b_q·b_k)/√d_h: the same for every key (cancels in the softmax). */
  queryConstant: number;
  /** r_ij, or null without relative position bias. */
  relPos: Float64Array | null;
}

/** The parts of query token `i`'s logits from a result of `modeContributions` (for any i: the maps cover every token). */
export function rowParts(res: ContributionResult, sigma: ArrayLike<number>, dh: number, i: number, T: number, relPos: ArrayLike<number> | null): RowParts {
  const scale = 1 / Math.sqrt(dh);
  const nm = sigma.length;
  const modes: Float64Array[] = [];
  for (let n = 0; n < nm; n++) {
    const row = new Float64Array(T);
    const c = sigma[n] * res.Q[n * T + i] * scale;
    for (let j = 0; j < T; j++) row[j] = c * res.K[n * T + j];
    modes.push(row);
  }
  return {
    modes,
    keyBias: Float64Array.from(res.keyBias),
    queryConstant: res.queryBias[i] + res.constant,
    relPos: relPos ? Float64Array.from({ length: T }, (_, j) => relPos[i * T + j]) : null,
  };
}
