/** Writes an ablation run: ablate.json, ablate.csv and (for sweeps) ablate.svg/.png. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { VitSpec } from '../arch/spec.js';
import { toCsv } from '../io/csv.js';
import { ablateFigure } from '../report/figures/ablate.js';
import { writeFigure } from '../report/svd-figures.js';
import { VERSION } from '../version.js';
import type { AblateJobResult, AblationEffect } from './ablate.js';
import { ensureDir } from '../io/fs.js';

export const ABLATE_DEFINITIONS = {
  edit: 'W_q,h ← W_q,h (I − Σ_{n∈S} u_n u_nᵀ) on the head’s d_h query rows (exact; M′ = M − Σ_{n∈S} σ_n u_n v_nᵀ)',
  attention_mean_abs_change: 'mean over (image, query token i, key token j) of |A′_ij − A_ij| for the ablated head',
  attention_mean_kl: 'mean over (image, query token i) of KL(A_i ‖ A′_i) in nats (A′ floored at 1e-12)',
  top1_agreement: 'share of images whose top-1 class is unchanged',
  mean_logit_kl: 'mean over images of KL(softmax(z) ‖ softmax(z′)) in nats',
  accuracy: 'top-1 accuracy on the labelled images, original and ablated',
  feature_cosine: 'models without a classifier: mean cosine between original and ablated pooled features',
  frobenius_share: 'Σ_{n∈S} σ_n² / Σ_n σ_n²',
  effect: 'ranking key: mean_logit_kl (1 − feature_cosine without a classifier)',
};

/** The ranking key of an effect (larger = stronger). */
export function effectSize(e: AblationEffect): number {
  if (e.output.mean_logit_kl !== null) return e.output.mean_logit_kl;
  if (e.output.feature_cosine !== null) return 1 - e.output.feature_cosine;
  return e.attention.mean_kl;
}

export function targetLabel(e: { layer: number; head: number; modes: number[] }): string {
  return `L${e.layer} H${e.head} M${e.modes.join('+')}`;
}

export interface AblateReportOptions {
  outDir: string;
  sweep: 'modes' | 'heads' | null;
  figures: boolean;
  manifest?: Record<string, unknown>;
}

export async function writeAblationReport(spec: VitSpec, r: AblateJobResult, o: AblateReportOptions): Promise<string[]> {
  ensureDir(o.outDir);
  const ranked = r.effects.map((e, i) => ({ i, s: effectSize(e) })).sort((a, b) => b.s - a.s || a.i - b.i);
  const rank = new Array<number>(r.effects.length);
  ranked.forEach((x, k) => (rank[x.i] = k + 1));
  const files = ['ablate.json', 'ablate.csv'];
  const header = [
    'layer', 'head', 'modes', 'sigma', 'cosine', 'frobenius_share', 'attention_mean_abs_change', 'attention_mean_kl',
    'top1_agreement', 'mean_logit_kl', 'accuracy_original', 'accuracy_ablated', 'labelled', 'feature_cosine', 'effect', 'rank',
  ];
  const rows = r.effects.map((e, i) => [
    e.layer, e.head, e.modes.join(';'), e.sigma.join(';'), e.cosine.join(';'), e.frobenius_share, e.attention.mean_abs_change, e.attention.mean_kl,
    e.output.top1_agreement, e.output.mean_logit_kl, e.output.accuracy_original, e.output.accuracy_ablated, e.output.labelled, e.output.feature_cosine, effectSize(e), rank[i],
  ]);
  writeFileSync(join(o.outDir, 'ablate.csv'), toCsv(rows, { header, eol: '\n' }));
  if (o.sweep && o.figures) {
    const bars = ranked.map(({ i }) => ({ label: targetLabel(r.effects[i]), output: effectSize(r.effects[i]), attention: r.effects[i].attention.mean_kl }));
    const svg = ablateFigure({
      title: `${spec.modelId}: mode ablation`,
      subtitle: `${o.sweep === 'modes' ? 'each mode of one head' : 'each head’s top mode'} removed in turn, ${r.images} images; ranked by effect (0-based indices)`,
      bars,
      outputLabel: r.hasLogits ? 'output: mean KL of class probabilities (nats)' : 'output: 1 − cosine of pooled features',
    });
    await writeFigure(join(o.outDir, 'ablate'), svg);
    files.push('ablate.svg', 'ablate.png');
  }
  const json = {
    tool: 'qkscope',
    version: VERSION,
    command: 'ablate',
    created: new Date().toISOString(),
    index_base: 0,
    model: { id: spec.modelId, family: spec.family, layers: spec.layers, heads: spec.heads, width: spec.width, head_dim: spec.headDim },
    images: r.images,
    tokens: r.tokens,
    sweep: o.sweep,
    definitions: ABLATE_DEFINITIONS,
    effects: r.effects.map((e, i) => ({ ...e, effect: effectSize(e), rank: rank[i] })),
    ranking: ranked.map(({ i }) => targetLabel(r.effects[i])),
    timing: r.timing,
    ...(o.manifest ?? {}),
  };
  writeFileSync(join(o.outDir, 'ablate.json'), JSON.stringify(json, (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) + '\n');
  return files;
}
