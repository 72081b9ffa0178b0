/**
 * `ablate`: remove singular modes of heads by the exact weight edit
 * W_q,h ← W_q,h (I − Σ_{n∈S} u_n u_nᵀ) (analysis/ablation-edit.ts) and measure how the head's
 * attention and the model's output change (analysis/ablation-metrics.ts).
 *
 *   const { targets, sweep } = sweepTargets(spec, { layer: 5, head: 3, topModes: 8 });
 *   const r = await runAblation(spec, source, { targets, sweep }, ctx);
 *   await writeAblation(r, 'runs/abl');            // ablate.json, ablate.csv, ablate.svg/.png
 *
 * Cost. Editing W_q of layer l leaves the residual stream entering block l unchanged, so each
 * batch runs once through the whole model (the reference, which also outputs that residual) and
 * then, per target, only blocks l..L−1: a graph built with `startLayer: l` whose input is the
 * residual and whose W_q of layer l is a graph input fed per run (nothing is rebuilt). One
 * ablation of a layer-l head thus costs about (L − l)/L of a forward pass.
 *
 * Memory: one batch, the reference session and one such suffix session per target layer > 0. A sweep
 * over many layers of a large model packs its layers into groups whose suffix sessions hold at
 * most `maxSuffixBytes` of weights; each group is one pass over the images (with its own
 * reference run), the later passes over exactly the images that loaded in the first.
 */
import type { VitSpec } from '../arch/spec.js';
import { requireForward } from '../arch/runnable.js';
import { checkLayerHead } from '../arch/head-weights.js';
import type { HeadModes } from '../analysis/types.js';
import { ablateQueryWeight, loadLayerQK, modesOf, type LayerQK } from '../analysis/ablation-edit.js';
import { EffectAccumulator, type AttentionEffect, type OutputEffect } from '../analysis/ablation-metrics.js';
import { UserError } from '../errors.js';
import type { ImageSource } from '../images/source.js';
import { imageBatches, DEFAULT_BATCH, skippedEntries, type SkippedImage } from '../runtime/batch-loop.js';
import type { Device } from '../runtime/device.js';
import { VitRuntime } from '../runtime/vit-runtime.js';
import type { OnnxGraph } from '../runtime/onnx-graph.js';
import type { VitTensors } from '../runtime/vit-graph.js';
import { ablateFigure } from '../report/figures/ablate.js';
import { RunDir, modelInfo, type ModelInfo } from '../store/run-dir.js';
import { jobContext, type JobContext } from './job.js';

export interface AblationTarget {
  layer: number;
  head: number;
  /** 0-based mode indices removed together. */
  modes: number[];
}

export interface AblationEffect extends AblationTarget {
  /** σ_n of the removed modes (of W_qᵀW_k, not divided by √d_h). */
  sigma: number[];
  /** c_n = u_n·v_n of the removed modes. */
  cosine: number[];
  /** Σ_removed σ_n² / Σ_all σ_n²: share of ‖M‖_F² removed. */
  frobenius_share: number;
  attention: AttentionEffect;
  output: OutputEffect;
}

/** A sweep removes one mode at a time: every chosen mode of one head, or of every head. */
export type SweepKind = 'modes' | 'heads';

export interface SweepSelection {
  /** The sweep's layer (required with `head`); without it a heads sweep covers every layer. */
  layer?: number;
  /** One head: sweep its modes. Without it: every head of `layer` (or of the model). */
  head?: number;
  /** Modes swept, each in turn (per head). Default: all modes of one head; mode 0 of each head. */
  modes?: number[] | 'all';
  /** Sweep only the N modes with the largest σ (per head). */
  topModes?: number;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

function checkModes(spec: VitSpec, modes: readonly number[], flag = '--modes'): void {
  const dh = spec.headDim;
  for (const n of modes) {
    if (!Number.isInteger(n) || n < 0 || n >= dh) throw new UserError(`${flag} ${modes.join(',')}: mode ${n} is out of range; a head of ${spec.modelId} has modes 0..${dh - 1}`);
  }
}

/**
 * The targets of a sweep. Modes are numbered by descending σ (svd's order), so the top N modes
 * by σ are 0..N−1.
 */
export function sweepTargets(spec: VitSpec, s: SweepSelection): { targets: AblationTarget[]; sweep: SweepKind } {
  const dh = spec.headDim;
  if (s.head !== undefined && s.layer === undefined) throw new UserError('--sweep --head H needs --layer L too');
  if (s.modes !== undefined && s.topModes !== undefined) throw new UserError('--modes and --top-modes both choose the swept modes; give one of them');
  if (s.layer !== undefined) checkLayerHead(spec, s.layer, s.head);
  if (s.topModes !== undefined && (!Number.isInteger(s.topModes) || s.topModes < 1 || s.topModes > dh)) {
    throw new UserError(`--top-modes ${s.topModes}: a head of ${spec.modelId} has ${dh} modes; give 1..${dh}`);
  }
  const chosen = s.modes === 'all' ? range(dh) : s.modes ?? (s.topModes !== undefined ? range(s.topModes) : undefined);
  if (chosen) checkModes(spec, chosen);
  if (s.head !== undefined) {
    const { layer, head } = s as { layer: number; head: number };
    return { sweep: 'modes', targets: (chosen ?? range(dh)).map((n) => ({ layer, head, modes: [n] })) };
  }
  const layers = s.layer !== undefined ? [s.layer] : range(spec.layers);
  const modes = chosen ?? [0];
  return { sweep: 'heads', targets: layers.flatMap((layer) => range(spec.heads).flatMap((head) => modes.map((n) => ({ layer, head, modes: [n] })))) };
}

export interface AblateOptions {
  targets: AblationTarget[];
  /** How the targets were chosen (recorded; a sweep gets a ranked figure). */
  sweep?: SweepKind | null;
  batch?: number;
  device?: Device;
  threads?: number;
  /** Class index per source image (−1: unlabelled), in source order. */
  labels?: Int32Array;
  /** Weights (bytes) the suffix sessions of one pass may hold (default DEFAULT_SUFFIX_BYTES). */
  maxSuffixBytes?: number;
  /** What the user passed as <model>. */
  input?: string;
}

/**
 * Default cap on the weights of one pass's suffix sessions: a heads sweep over all layers of a
 * ViT-B (≈1.9 GB of suffix weights) runs in one pass, a ViT-L (≈14 GB) in 7.
 */
export const DEFAULT_SUFFIX_BYTES = 2 * 2 ** 30;

export interface AblateResult {
  model: ModelInfo;
  options: { batch: number; device: Device; threads: number | null; sweep: SweepKind | null; targets: number; labels: boolean; max_suffix_bytes: number };
  sweep: SweepKind | null;
  effects: AblationEffect[];
  /** Modes of every (layer, head) touched, keyed `layer.head`. */
  modes: Map<string, HeadModes>;
  /** Images that ran (skipped ones excluded). */
  images: number;
  tokens: number;
  hasLogits: boolean;
  skipped: SkippedImage[];
  /** Stopped early (ctx.stop): the effects cover the images done so far. */
  interrupted: boolean;
  /** The image source's description (for the manifest's `inputs`). */
  source: Record<string, unknown>;
  timing: {
    /** Reference passes (whole model), seconds. */
    reference_s: number;
    /** Ablated runs (blocks l..L−1 with the edited W_q, plus metrics), seconds. */
    ablated_s: number;
    per_target_s: number;
    batches: number;
    /** Passes over the images (layer groups). */
    passes: number;
  };
}

/** Float32 bytes of every weight under `x` (a block, a norm, a head...). */
function weightBytes(x: unknown): number {
  if (!x || typeof x !== 'object') return 0;
  if ('source' in x && 'shape' in x && Array.isArray((x as { shape: unknown }).shape)) return 4 * (x as { shape: number[] }).shape.reduce((a, b) => a * b, 1);
  return Object.values(x).reduce((a: number, v) => a + weightBytes(v), 0);
}

/** Weights of a graph that starts at block l: blocks l..L−1 and everything after them. */
export function suffixWeightBytes(spec: VitSpec, l: number): number {
  let n = weightBytes([spec.finalNorm, spec.fcNorm, spec.head, spec.distHead]);
  for (let b = l; b < spec.blocks.length; b++) n += weightBytes(spec.blocks[b]);
  return n;
}

/**
 * Target layers (ascending) packed into passes whose suffix sessions fit `budget` (one layer at
 * least). Layer 0 costs nothing: its suffix is the reference session.
 */
export function layerGroups(spec: VitSpec, layers: number[], budget: number): number[][] {
  const groups: number[][] = [];
  let used = 0;
  for (const l of [...layers].sort((a, b) => a - b)) {
    const b = l === 0 ? 0 : suffixWeightBytes(spec, l);
    if (groups.length === 0 || used + b > budget) {
      groups.push([]);
      used = 0;
    }
    groups[groups.length - 1].push(l);
    used += b;
  }
  return groups;
}

const attnName = (l: number, h: number) => `abl_attn.${l}.${h}`;
const residName = (l: number) => `abl_residual.${l}`;

export async function runAblation(spec: VitSpec, source: ImageSource, opts: AblateOptions, context?: Partial<JobContext>): Promise<AblateResult> {
  const ctx = jobContext(context);
  requireForward(spec, 'ablate');
  const { headDim: dh, width: d } = spec;
  if (opts.targets.length === 0) throw new UserError('ablate: nothing to ablate (no target modes)');
  if (opts.labels && opts.labels.length !== source.count) throw new Error(`runAblation: ${opts.labels.length} labels for ${source.count} images`);
  const layerData = new Map<number, LayerQK>();
  const modes = new Map<string, HeadModes>();
  for (const t of opts.targets) {
    checkLayerHead(spec, t.layer, t.head);
    checkModes(spec, t.modes);
    if (!layerData.has(t.layer)) layerData.set(t.layer, await loadLayerQK(spec, t.layer));
    const key = `${t.layer}.${t.head}`;
    if (!modes.has(key)) modes.set(key, modesOf(spec, layerData.get(t.layer)!, t.head));
  }
  const batch = opts.batch ?? DEFAULT_BATCH;
  const budget = opts.maxSuffixBytes ?? DEFAULT_SUFFIX_BYTES;
  const groups = layerGroups(spec, [...layerData.keys()], budget);
  const headsOf = (l: number) => [...new Set(opts.targets.filter((t) => t.layer === l).map((t) => t.head))];
  const hasLogits = !!spec.head && spec.pooling !== 'none';
  const outputs = { logits: hasLogits, features: !hasLogits };
  const tapAttention = (g: OnnxGraph, t: VitTensors, l: number) => {
    for (const h of headsOf(l)) g.output(attnName(l, h), g.slice(t.attention[l], 1, h, h + 1, `abl_attn_${l}_${h}`));
  };
  const base = { imageSize: source.imageSize, device: opts.device, threads: opts.threads };
  // Only the ablated blocks need plain nodes (their Softmax is read); the others run on fused
  // kernels, the same blocks in the reference and in every suffix graph, so that an edit that
  // changes nothing measures exactly nothing (fused and plain kernels round differently).
  const plainFrom = (l: number) => [...layerData.keys()].filter((k) => k >= l);
  // Block 0's input is the embedded pixels, so its suffix is the whole model: the reference
  // session itself, with W_q of block 0 fed per run (one session fewer to build and hold).
  const reference = await VitRuntime.create(spec, {
    ...base,
    outputs,
    overridable: layerData.has(0) ? ['blocks.0.q.weight'] : [],
    unfused: plainFrom(0),
    extend: (g, t) => {
      for (const l of layerData.keys()) {
        tapAttention(g, t, l);
        if (l > 0) g.output(residName(l), t.residual[l]);
      }
    },
  });

  const N = source.count;
  const T = reference.layout.tokens;
  const acc = opts.targets.map(() => new EffectAccumulator());
  const unitsPerImage = groups.length + opts.targets.length;
  const skipped: SkippedImage[] = [];
  const loaded: number[] = [];
  const timing = { reference_s: 0, ablated_s: 0, per_target_s: 0, batches: 0, passes: groups.length };
  let interrupted = false;
  ctx.progress.start(`ablate (${opts.targets.length} ablation${opts.targets.length === 1 ? '' : 's'}${groups.length > 1 ? `, ${groups.length} passes` : ''})`, N * unitsPerImage, { unit: 'runs' });
  try {
    for (let p = 0; p < groups.length && !interrupted; p++) {
      const group = groups[p];
      const targets = opts.targets.map((t, i) => ({ t, i })).filter(({ t }) => group.includes(t.layer));
      // One suffix session per layer of the pass: blocks l..L−1, W_q of layer l fed per run.
      const suffix = new Map<number, VitRuntime>();
      try {
        for (const l of group) {
          suffix.set(l, l === 0 ? reference : await VitRuntime.create(spec, { ...base, outputs, startLayer: l, overridable: [`blocks.${l}.q.weight`], unfused: plainFrom(l), extend: (g, t) => tapAttention(g, t, l) }));
        }
        const ids = p === 0 ? undefined : loaded.slice();
        const expected = ids ? ids.length : N;
        let seen = 0;
        for await (const b of imageBatches(source, { batch, stop: ctx.stop, ids })) {
          seen += b.items.length + b.skipped.length;
          if (b.skipped.length) {
            if (p > 0) {
              const s = b.skipped[0];
              throw new UserError(`${s.label}: loaded in the first pass over the images but not in pass ${p + 1} (${s.reason}); did it change during the run?`);
            }
            skipped.push(...b.skipped);
            ctx.progress.advance(b.skipped.length * unitsPerImage, b.skipped.length);
          }
          const n = b.items.length;
          if (n === 0) continue;
          if (p === 0) loaded.push(...b.items.map((it) => it.id));
          const labels = opts.labels ? Int32Array.from(b.items, (it) => opts.labels![it.id]) : undefined;
          let t0 = performance.now();
          const ref = await reference.run(b.pixels, n);
          timing.reference_s += (performance.now() - t0) / 1000;
          ctx.progress.advance(n);
          for (const { t, i } of targets) {
            t0 = performance.now();
            const m = modes.get(`${t.layer}.${t.head}`)!;
            const wq = ablateQueryWeight(layerData.get(t.layer)!.wq, t.head, dh, d, m.U, t.modes);
            const input = t.layer === 0 ? b.pixels : ref.extra[residName(t.layer)].data;
            const r = await suffix.get(t.layer)!.run(input, n, { weights: { [`blocks.${t.layer}.q.weight`]: wq } });
            const name = attnName(t.layer, t.head);
            acc[i].addAttention(ref.extra[name].data, r.extra[name].data, T);
            if (hasLogits) acc[i].addLogits(ref.logits!, r.logits!, n, labels);
            else if (ref.features && r.features) acc[i].addFeatures(ref.features, r.features, n);
            timing.ablated_s += (performance.now() - t0) / 1000;
            ctx.progress.advance(n);
          }
          timing.batches++;
        }
        if (ctx.stop?.stop && (seen < expected || p < groups.length - 1)) interrupted = true;
      } finally {
        for (const [l, rt] of suffix) if (l !== 0) await rt.close();
      }
    }
  } finally {
    ctx.progress.end();
    await reference.close();
  }
  timing.per_target_s = timing.ablated_s / opts.targets.length;

  const effects = opts.targets.map((t, ti): AblationEffect => {
    const m = modes.get(`${t.layer}.${t.head}`)!;
    let all = 0;
    let rem = 0;
    for (let n = 0; n < dh; n++) all += m.sigma[n] ** 2;
    for (const n of t.modes) rem += m.sigma[n] ** 2;
    return {
      ...t,
      sigma: t.modes.map((n) => m.sigma[n]),
      cosine: t.modes.map((n) => m.cosine[n]),
      frobenius_share: all > 0 ? rem / all : 0,
      attention: acc[ti].attention(),
      output: acc[ti].output(),
    };
  });
  const sweep = opts.sweep ?? null;
  return {
    model: modelInfo(spec, opts.input ?? spec.modelId),
    options: { batch, device: reference.device, threads: opts.threads ?? null, sweep, targets: opts.targets.length, labels: !!opts.labels, max_suffix_bytes: budget },
    sweep,
    effects,
    modes,
    images: loaded.length,
    tokens: T,
    hasLogits,
    skipped,
    interrupted,
    source: source.describe(),
    timing,
  };
}

// ---- writing -------------------------------------------------------------------------------

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

const CSV_HEADER = [
  'layer', 'head', 'modes', 'sigma', 'cosine', 'frobenius_share', 'attention_mean_abs_change', 'attention_mean_kl',
  'top1_agreement', 'mean_logit_kl', 'accuracy_original', 'accuracy_ablated', 'labelled', 'feature_cosine', 'effect', 'rank',
];

export interface AblateWritten {
  manifest: string;
  files: string[];
}

/** Writes ablate.csv, (for sweeps) ablate.svg/.png, and ablate.json last. */
export async function writeAblation(r: AblateResult, dir: string, opts: { figures?: boolean; argv?: string[] } = {}): Promise<AblateWritten> {
  const ranked = r.effects.map((e, i) => ({ i, s: effectSize(e) })).sort((a, b) => b.s - a.s || a.i - b.i);
  const rank = new Array<number>(r.effects.length);
  ranked.forEach((x, k) => (rank[x.i] = k + 1));
  const out = new RunDir(dir, 'ablate');
  const files = ['ablate.json', 'ablate.csv'];
  try {
    const rows = r.effects.map((e, i) => [
      e.layer, e.head, e.modes.join(';'), e.sigma.join(';'), e.cosine.join(';'), e.frobenius_share, e.attention.mean_abs_change, e.attention.mean_kl,
      e.output.top1_agreement, e.output.mean_logit_kl, e.output.accuracy_original, e.output.accuracy_ablated, e.output.labelled, e.output.feature_cosine, effectSize(e), rank[i],
    ]);
    out.csv('ablate.csv', [CSV_HEADER, ...rows], 'one row per ablation: target, removed σ/cosine, attention and output effects, effect and rank (0-based indices)');
    if (r.sweep && opts.figures !== false) {
      const svg = ablateFigure({
        title: `${r.model.id}: mode ablation`,
        subtitle: `${r.effects.length} ${r.sweep === 'modes' ? 'modes of one head' : '(head, mode) pairs'} removed one at a time, ${r.images} images; ranked by effect (0-based indices)`,
        bars: ranked.map(({ i }) => ({ label: targetLabel(r.effects[i]), output: effectSize(r.effects[i]), attention: r.effects[i].attention.mean_kl })),
        outputLabel: r.hasLogits ? 'output: mean KL of class probabilities (nats)' : 'output: 1 − cosine of pooled features',
      });
      await out.figure('ablate', svg, 'ablations ranked by effect: output change and the head’s attention change');
      files.push('ablate.svg', 'ablate.png');
    }
    const argv = opts.argv ?? null;
    const manifest = out.commit(out.header(r.model, { ...r.options }, { ...r.source, argv }), {
      index_base: 0,
      input: r.model.input,
      argv,
      images: r.images,
      tokens: r.tokens,
      sweep: r.sweep,
      definitions: ABLATE_DEFINITIONS,
      effects: r.effects.map((e, i) => ({ ...e, effect: effectSize(e), rank: rank[i] })),
      ranking: ranked.map(({ i }) => targetLabel(r.effects[i])),
      skipped: skippedEntries(r.skipped),
      interrupted: r.interrupted,
      timing: r.timing,
    });
    return { manifest, files };
  } catch (e) {
    out.abort();
    throw e;
  }
}
