/**
 * How an ablation changes what the model computes (definitions, all means over images):
 *
 * - Attention of the ablated head, rows A_i = softmax_j(a_ij) over every query token i and key
 *   token j (special tokens included):
 *     mean_abs_change = mean over (image, i, j) of |A'_ij − A_ij|
 *     mean_kl         = mean over (image, i) of KL(A_i ‖ A'_i) = Σ_j A_ij ln(A_ij / A'_ij)  (nats;
 *                       terms with A_ij = 0 are 0, A'_ij is floored at 1e-12)
 * - Output (classifier logits z): top1_agreement = share of images whose argmax is unchanged;
 *   mean_logit_kl = mean over images of KL(softmax(z) ‖ softmax(z')); with labels, the accuracy
 *   of both models on the labelled images. Models without a classifier: mean cosine between
 *   the original and ablated pooled features instead.
 */
const FLOOR = 1e-12;

export interface AttentionEffect {
  mean_abs_change: number;
  mean_kl: number;
  /** Query rows averaged over (images × tokens). */
  rows: number;
}

export interface OutputEffect {
  top1_agreement: number | null;
  mean_logit_kl: number | null;
  accuracy_original: number | null;
  accuracy_ablated: number | null;
  labelled: number;
  /** Mean cosine of pooled features (models without a classifier). */
  feature_cosine: number | null;
  images: number;
}

export class EffectAccumulator {
  private absSum = 0;
  private absCount = 0;
  private klSum = 0;
  private rows = 0;
  private agree = 0;
  private logitKl = 0;
  private logitImages = 0;
  private correctO = 0;
  private correctA = 0;
  private labelled = 0;
  private featCos = 0;
  private featImages = 0;

  /** `orig`, `abl`: [rows, T] attention rows of the head. */
  addAttention(orig: ArrayLike<number>, abl: ArrayLike<number>, T: number): void {
    const rows = orig.length / T;
    for (let r = 0; r < rows; r++) {
      let kl = 0;
      for (let j = r * T; j < (r + 1) * T; j++) {
        const p = orig[j];
        const q = abl[j];
        this.absSum += Math.abs(q - p);
        if (p > 0) kl += p * Math.log(p / Math.max(q, FLOOR));
      }
      this.klSum += Math.max(0, kl);
    }
    this.absCount += orig.length;
    this.rows += rows;
  }

  /** `orig`, `abl`: [n, C] logits; `labels[i]` the class of image i of this batch or −1. */
  addLogits(orig: ArrayLike<number>, abl: ArrayLike<number>, n: number, labels?: ArrayLike<number>): void {
    const C = orig.length / n;
    for (let i = 0; i < n; i++) {
      const o = softmaxRow(orig, i * C, C);
      const a = softmaxRow(abl, i * C, C);
      let kl = 0;
      for (let c = 0; c < C; c++) if (o.p[c] > 0) kl += o.p[c] * Math.log(o.p[c] / Math.max(a.p[c], FLOOR));
      this.logitKl += Math.max(0, kl);
      if (o.arg === a.arg) this.agree++;
      this.logitImages++;
      const y = labels ? labels[i] : -1;
      if (y >= 0) {
        this.labelled++;
        if (o.arg === y) this.correctO++;
        if (a.arg === y) this.correctA++;
      }
    }
  }

  /** `orig`, `abl`: [n, F] pooled features. */
  addFeatures(orig: ArrayLike<number>, abl: ArrayLike<number>, n: number): void {
    const F = orig.length / n;
    for (let i = 0; i < n; i++) {
      let ab = 0, aa = 0, bb = 0;
      for (let k = i * F; k < (i + 1) * F; k++) {
        ab += orig[k] * abl[k];
        aa += orig[k] * orig[k];
        bb += abl[k] * abl[k];
      }
      this.featCos += aa > 0 && bb > 0 ? ab / Math.sqrt(aa * bb) : aa === bb ? 1 : 0;
      this.featImages++;
    }
  }

  attention(): AttentionEffect {
    return { mean_abs_change: this.absCount ? this.absSum / this.absCount : NaN, mean_kl: this.rows ? this.klSum / this.rows : NaN, rows: this.rows };
  }

  output(): OutputEffect {
    const li = this.logitImages;
    return {
      top1_agreement: li ? this.agree / li : null,
      mean_logit_kl: li ? this.logitKl / li : null,
      accuracy_original: this.labelled ? this.correctO / this.labelled : null,
      accuracy_ablated: this.labelled ? this.correctA / this.labelled : null,
      labelled: this.labelled,
      feature_cosine: this.featImages ? this.featCos / this.featImages : null,
      images: Math.max(li, this.featImages),
    };
  }
}

/** Softmax of one row (float64, max-shifted) and its argmax (lowest index on ties). */
export function softmaxRow(z: ArrayLike<number>, off: number, C: number): { p: Float64Array; arg: number } {
  let m = -Infinity;
  let arg = 0;
  for (let c = 0; c < C; c++) if (z[off + c] > m) {
    m = z[off + c];
    arg = c;
  }
  const p = new Float64Array(C);
  let s = 0;
  for (let c = 0; c < C; c++) s += p[c] = Math.exp(z[off + c] - m);
  for (let c = 0; c < C; c++) p[c] /= s;
  return { p, arg };
}
