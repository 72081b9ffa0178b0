/**
 * Mode ablation as a library call: one onnxruntime session whose query weights are graph inputs
 * (`overridable`), fed per run with the edited W_q, so no target rebuilds anything. Batches are
 * the outer loop: each batch is decoded once and run once unedited (the cached reference), then
 * once per target; memory is bounded by one batch whatever the image and target counts.
 */
import type { VitSpec } from '../arch/spec.js';
import type { HeadModes } from '../analysis/types.js';
import { UserError } from '../errors.js';
import type { Device } from '../runtime/device.js';
import { VitRuntime } from '../runtime/vit-runtime.js';
import { ablateQueryWeight, loadLayerQK, modesOf, type LayerQK } from '../analysis/ablation-edit.js';
import { EffectAccumulator, type AttentionEffect, type OutputEffect } from '../analysis/ablation-metrics.js';
import { type PixelSource } from '../images/source.js';

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

export interface AblateJobOptions {
  targets: AblationTarget[];
  batch?: number;
  device?: Device;
  threads?: number;
  /** Class index per image (−1: unlabelled), same order as the source. */
  labels?: Int32Array;
  onProgress?: (done: number, total: number) => void;
}

export interface AblateJobResult {
  effects: AblationEffect[];
  /** Modes of every (layer, head) touched, keyed `layer.head`. */
  modes: Map<string, HeadModes>;
  images: number;
  tokens: number;
  hasLogits: boolean;
  timing: { reference_s: number; ablated_s: number; per_target_s: number; batches: number };
}

export async function runAblation(spec: VitSpec, source: PixelSource, opts: AblateJobOptions): Promise<AblateJobResult> {
  if (spec.modality !== 'vision' || !spec.patchEmbed) {
    throw new UserError(`${spec.modelId}: ablation runs the model on images, so it needs a vision transformer (this is a ${spec.modality} model; use \`qkscope svd\` for its modes)`);
  }
  const { heads: H, headDim: dh, width: d, layers: L } = spec;
  if (opts.targets.length === 0) throw new UserError('ablate: nothing to ablate (no target modes)');
  const layerData = new Map<number, LayerQK>();
  const modes = new Map<string, HeadModes>();
  for (const t of opts.targets) {
    if (!Number.isInteger(t.layer) || t.layer < 0 || t.layer >= L) throw new UserError(`--layer ${t.layer}: out of range; the model has layers 0..${L - 1}`);
    if (!Number.isInteger(t.head) || t.head < 0 || t.head >= H) throw new UserError(`--head ${t.head}: out of range; the model has heads 0..${H - 1}`);
    for (const n of t.modes) if (!Number.isInteger(n) || n < 0 || n >= dh) throw new UserError(`--modes ${t.modes.join(',')}: mode ${n} is out of range; a head has modes 0..${dh - 1}`);
    if (!layerData.has(t.layer)) layerData.set(t.layer, await loadLayerQK(spec, t.layer));
    const key = `${t.layer}.${t.head}`;
    if (!modes.has(key)) modes.set(key, modesOf(spec, layerData.get(t.layer)!, t.head));
  }
  const layers = [...layerData.keys()].sort((a, b) => a - b);
  const headKeys = [...modes.keys()];
  const hasLogits = !!spec.head && spec.pooling !== 'none';
  const rt = await VitRuntime.create(spec, {
    outputs: { logits: hasLogits, features: !hasLogits },
    imageSize: source.imageSize,
    device: opts.device,
    threads: opts.threads,
    overridable: layers.map((l) => `blocks.${l}.q.weight`),
    extend: (g, t) => {
      for (const k of headKeys) {
        const [l, h] = k.split('.').map(Number);
        g.output(`abl_attn.${k}`, g.slice(t.attention[l], 1, h, h + 1, `abl_attn_${l}_${h}`));
      }
    },
  });
  const acc = opts.targets.map(() => new EffectAccumulator());
  const N = source.count;
  const batch = opts.batch ?? 8;
  const T = rt.layout.tokens;
  let refS = 0;
  let ablS = 0;
  let batches = 0;
  try {
    let next: Promise<Float32Array> | null = N > 0 ? source.read(0, Math.min(batch, N)) : null;
    next?.catch(() => undefined);
    for (let start = 0; start < N; start += batch) {
      const n = Math.min(batch, N - start);
      const pixels = await next!;
      next = start + batch < N ? source.read(start + batch, Math.min(batch, N - start - batch)) : null;
      next?.catch(() => undefined);
      const labels = opts.labels?.subarray(start, start + n);
      let t0 = performance.now();
      const ref = await rt.run(pixels, n);
      refS += (performance.now() - t0) / 1000;
      t0 = performance.now();
      for (let ti = 0; ti < opts.targets.length; ti++) {
        const t = opts.targets[ti];
        const x = layerData.get(t.layer)!;
        const m = modes.get(`${t.layer}.${t.head}`)!;
        const wq = ablateQueryWeight(x.wq, t.head, dh, d, m.U, t.modes);
        const r = await rt.run(pixels, n, { weights: { [`blocks.${t.layer}.q.weight`]: wq } });
        const name = `abl_attn.${t.layer}.${t.head}`;
        acc[ti].addAttention(ref.extra[name].data, r.extra[name].data, T);
        if (hasLogits) acc[ti].addLogits(ref.logits!, r.logits!, n, labels);
        else if (ref.features && r.features) acc[ti].addFeatures(ref.features, r.features, n);
      }
      ablS += (performance.now() - t0) / 1000;
      batches++;
      opts.onProgress?.(start + n, N);
    }
  } finally {
    await rt.close();
  }
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
  return { effects, modes, images: N, tokens: T, hasLogits, timing: { reference_s: refS, ablated_s: ablS, per_target_s: ablS / opts.targets.length, batches } };
}
