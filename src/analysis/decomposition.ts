/**
 * The explorer's logit decomposition of one query patch (docs/method.md §5) as the Image view
 * shows it (src/api-types.ts `Decomposition`), from a `modeContributions` result for that query
 * row: the top modes by |attention-weighted part|, the other modes together, the key salience,
 * the query constant and the relative position bias, each at every key, with the model's own
 * logits beside their sum. Pure (no Node): `serve` and the exported site's in-page model build
 * the same payload with it.
 */
import type * as A from '../api-types.js';
import { rowParts, type ContributionResult } from './contributions.js';

export const DECOMPOSITION_SCALE = 'logits include the 1/sqrt(d_h) factor: mode n contributes σ_n (x_i·u_n)(v_n·x_j)/sqrt(d_h)';

/** A ranked mode as the API shows it. */
export function modeRowOf(m: ContributionResult['modes'][number]): A.ModeContribution {
  return { mode: m.mode, sigma: m.sigma, cosine: m.cosine, contribution: m.contribution, share: m.share, rank: m.rank };
}

/** Every mode in mode order, with its rank and share from the ranked list. */
export function modesInOrder(result: ContributionResult, dh: number): A.ModeContribution[] {
  const out = new Array<A.ModeContribution>(dh);
  for (const m of result.modes) out[m.mode] = modeRowOf(m);
  return out;
}

export interface DecompositionInput {
  layer: number;
  head: number;
  /** `modeContributions` with rows = [the query token]. */
  result: ContributionResult;
  sigma: ArrayLike<number>;
  dh: number;
  layout: { tokens: number; patchStart: number; grid: [number, number]; special: readonly string[] };
  /** The query patch (0-based over the patches). */
  patch: number;
  /** The head's attention row of the query, length T. */
  attention: ArrayLike<number>;
  /** The model's pre-softmax logits of that row (null: not tapped). */
  modelLogits: ArrayLike<number> | null;
  /** Relative position bias [T, T] of the head, or null. */
  relPos: ArrayLike<number> | null;
  /** Modes shown as parts of their own. */
  top: number;
}

export function decompositionOf(o: DecompositionInput): A.Decomposition {
  const { tokens: T, patchStart, grid } = o.layout;
  const { result, dh } = o;
  const i = patchStart + o.patch;
  const parts = rowParts(result, o.sigma, dh, i, T, o.relPos);
  const attention = Array.from(o.attention, Number);
  const model = o.modelLogits ? Array.from(o.modelLogits, Number) : new Array<number>(T).fill(NaN);
  const weightedOf = (vals: ArrayLike<number>) => attention.reduce((s, a, j) => s + a * vals[j], 0);
  const byMode = modesInOrder(result, dh);
  const top = [...byMode]
    .sort((a, b) => Math.abs(b.contribution) - Math.abs(a.contribution) || a.mode - b.mode)
    .slice(0, Math.max(0, Math.min(o.top, dh)))
    .map((x) => x.mode);
  const topSet = new Set(top);
  const out: A.Part[] = top.map((n) => ({ kind: 'mode', mode: n, label: `mode ${n}`, values: Array.from(parts.modes[n]), weighted: byMode[n].contribution }));
  if (top.length < dh) {
    const other = new Float64Array(T);
    for (let n = 0; n < dh; n++) if (!topSet.has(n)) for (let j = 0; j < T; j++) other[j] += parts.modes[n][j];
    out.push({ kind: 'other_modes', label: `other ${dh - top.length} modes`, values: Array.from(other), weighted: weightedOf(other) });
  }
  out.push({ kind: 'key_salience', label: 'key salience', values: Array.from(parts.keyBias), weighted: weightedOf(parts.keyBias) });
  out.push({ kind: 'query_constant', label: 'query constant', values: new Array<number>(T).fill(parts.queryConstant), weighted: parts.queryConstant * attention.reduce((a, b) => a + b, 0) });
  if (parts.relPos) out.push({ kind: 'rel_pos_bias', label: 'relative position bias', values: Array.from(parts.relPos), weighted: weightedOf(parts.relPos) });
  const reconstructed = Array.from(result.logits.subarray(0, T));
  const residual = model.map((x, j) => x - reconstructed[j]);
  return {
    layer: o.layer,
    head: o.head,
    query: { token: i, patch: o.patch, row: Math.floor(o.patch / grid[1]), col: o.patch % grid[1] },
    tokens: { count: T, patch_start: patchStart, grid, special: o.layout.special.map(String) },
    attention,
    model_logit: model,
    parts: out,
    reconstructed,
    residual,
    max_abs_residual: residual.reduce((a, x) => Math.max(a, Math.abs(x)), 0),
    softmax_max_abs_diff: result.check.softmax_max_abs,
    modes: byMode,
    top_modes: top,
    scale: DECOMPOSITION_SCALE,
  };
}

/** The Image view's "modes on this image": every mode's contribution over all query tokens, ranked. */
export function imageModesOf(layer: number, head: number, result: ContributionResult, definition: string): A.ImageModes {
  return { layer, head, definition, modes: result.modes.map(modeRowOf), terms: result.terms, total: result.total };
}
