/**
 * `position-content`: the modes of every head (weights only), then two passes of the model over
 * the images with the mode projections x·u_n, x·v_n computed inside the graph (one [d, 2·H·d_h]
 * matmul per layer), so only projections leave onnxruntime. Pass 1 gives the per-position
 * means, pass 2 the content statistics (analysis/position-content.ts). Pass 2 runs over exactly
 * the images that loaded in pass 1 (an unusable image is skipped in both). Memory is bounded by
 * one batch plus the per-position means.
 *
 *   const r = await runPositionContent(spec, source, { embedding: 'ln' }, ctx);
 *   await writePositionContent(r, 'runs/pos');   // position_content.json, shares.npy, heads.csv, figure
 */
import type { VitSpec } from '../arch/spec.js';
import { requireForward } from '../arch/runnable.js';
import { UserError } from '../errors.js';
import type { ImageSource } from '../images/source.js';
import { analyzeModel } from '../analysis/model-modes.js';
import { PositionContentLayer, addEnergies, shares, type PcEnergies } from '../analysis/position-content.js';
import { imageBatches, DEFAULT_BATCH, skippedEntries, type SkippedImage } from '../runtime/batch-loop.js';
import type { Device } from '../runtime/device.js';
import { VitRuntime } from '../runtime/vit-runtime.js';
import { positionContentFigure } from '../report/figures/position-content.js';
import { RunDir, modelInfo, type ModelInfo } from '../store/run-dir.js';
import { jobContext, type JobContext } from './job.js';

export interface PositionContentOptions {
  embedding?: 'ln' | 'residual';
  /** Tokens entering the sums: all (default) or the patch tokens only. */
  tokens?: 'all' | 'patches';
  layers?: number[];
  batch?: number;
  device?: Device;
  threads?: number;
  /** What the user passed as <model>. */
  input?: string;
}

export interface PcHead {
  head: number;
  sigma: number[];
  /** Per mode energies [CC, CP, PC, PP] (σ² included). */
  energies: PcEnergies[];
  /** Per mode shares, null for zero-energy modes. */
  shares: (PcEnergies | null)[];
  /** Head total energies and shares. */
  total: PcEnergies;
  total_shares: PcEnergies | null;
}

export interface PcLayer {
  layer: number;
  heads: PcHead[];
  total: PcEnergies;
  total_shares: PcEnergies | null;
}

export interface PositionContentResult {
  model: ModelInfo;
  options: { embedding: 'ln' | 'residual'; tokens: 'all' | 'patches'; layers: number[]; batch: number; device: Device; threads: number | null };
  layers: PcLayer[];
  /** Images in the statistics (skipped ones excluded). */
  images: number;
  tokens: number;
  range: [number, number];
  embedding: 'ln' | 'residual';
  skipped: SkippedImage[];
  /** The image source's description (for the manifest's `inputs`). */
  source: Record<string, unknown>;
}

export async function runPositionContent(spec: VitSpec, source: ImageSource, opts: PositionContentOptions = {}, context?: Partial<JobContext>): Promise<PositionContentResult> {
  const ctx = jobContext(context);
  requireForward(spec, 'position-content');
  const N = source.count;
  if (N < 2) throw new UserError(`position-content: give at least 2 images (got ${N}); the position part is the mean over images, so one image has no content part`);
  const { heads: H, headDim: dh, width: d } = spec;
  const K = H * dh;
  const embedding = opts.embedding ?? 'ln';
  const tokens = opts.tokens ?? 'all';
  const batch = opts.batch ?? DEFAULT_BATCH;
  const layers = opts.layers ?? Array.from({ length: spec.layers }, (_, l) => l);
  for (const l of layers) if (!Number.isInteger(l) || l < 0 || l >= spec.layers) throw new UserError(`--layers: layer ${l} is out of range; the model has layers 0..${spec.layers - 1}`);
  // Projection matrices [d, 2K]: column h·d_h+n is u_n of head h, K + h·d_h+n is v_n.
  const proj = new Map<number, Float32Array>();
  const sigma = new Map<number, Float64Array>();
  await analyzeModel(spec, {
    layers,
    threads: opts.threads,
    onLayer: (l, hs) => {
      const P = new Float32Array(d * 2 * K);
      const s = new Float64Array(K);
      for (const hm of hs) {
        for (let n = 0; n < dh; n++) {
          const k = hm.head * dh + n;
          s[k] = hm.sigma[n];
          for (let i = 0; i < d; i++) {
            P[i * 2 * K + k] = hm.U[n * d + i];
            P[i * 2 * K + K + k] = hm.V[n * d + i];
          }
        }
      }
      proj.set(l, P);
      sigma.set(l, s);
    },
  });
  const rt = await VitRuntime.create(spec, {
    outputs: {},
    imageSize: source.imageSize,
    device: opts.device,
    threads: opts.threads,
    // The projections read only ln / residual tensors, which fused blocks keep too.
    unfused: [],
    extend: (g, t) => {
      for (const l of layers) {
        const x = embedding === 'ln' ? t.ln[l] : t.residual[l];
        g.output(`pc_proj.${l}`, g.matmul(x, g.init(`pc_uv.${l}`, [d, 2 * K], proj.get(l)!), `pc_proj_${l}`));
      }
    },
  });
  const T = rt.layout.tokens;
  const range: [number, number] = tokens === 'patches' ? [rt.layout.patchStart, T] : [0, T];
  const acc = new Map(layers.map((l) => [l, new PositionContentLayer(T, K, range)]));
  const skipped: SkippedImage[] = [];
  const loaded: number[] = [];
  const interrupted = () => new UserError('position-content interrupted: its statistics need both passes over the same images; nothing written', 130);
  try {
    // Pass 1: per-position means over the images that load.
    ctx.progress.start('position-content pass 1/2 (position means)', N);
    for await (const b of imageBatches(source, { batch, progress: ctx.progress, stop: ctx.stop })) {
      skipped.push(...b.skipped);
      if (b.items.length === 0) continue;
      loaded.push(...b.items.map((it) => it.id));
      const r = await rt.run(b.pixels, b.items.length);
      for (const l of layers) {
        const data = r.extra[`pc_proj.${l}`].data;
        for (let i = 0; i < b.items.length; i++) acc.get(l)!.addMean(data, i * T * 2 * K);
      }
    }
    if (ctx.stop?.stop && loaded.length + skipped.length < N) throw interrupted();
    if (loaded.length < 2) {
      throw new UserError(`position-content: only ${loaded.length} of ${N} images could be used (${skipped[0]?.label}: ${skipped[0]?.reason}); the split needs at least 2`);
    }
    // Pass 2: content statistics over exactly the same images.
    ctx.progress.start('position-content pass 2/2 (content)', loaded.length);
    let seen = 0;
    for await (const b of imageBatches(source, { batch, progress: ctx.progress, stop: ctx.stop, ids: loaded })) {
      if (b.skipped.length) {
        const s = b.skipped[0];
        throw new UserError(`${s.label}: loaded in the first pass over the images but not in the second (${s.reason}); did it change during the run?`);
      }
      seen += b.items.length;
      const r = await rt.run(b.pixels, b.items.length);
      for (const l of layers) {
        const data = r.extra[`pc_proj.${l}`].data;
        for (let i = 0; i < b.items.length; i++) acc.get(l)!.addImage(data, i * T * 2 * K);
      }
    }
    if (seen < loaded.length) throw interrupted();
  } finally {
    ctx.progress.end();
    await rt.close();
  }
  const zero = (): PcEnergies => [0, 0, 0, 0];
  const out: PcLayer[] = layers.map((l) => {
    const e = acc.get(l)!.energies(sigma.get(l)!);
    const s = sigma.get(l)!;
    const heads: PcHead[] = Array.from({ length: H }, (_, h) => {
      const energies = e.slice(h * dh, (h + 1) * dh);
      const total = energies.reduce(addEnergies, zero());
      return { head: h, sigma: Array.from(s.subarray(h * dh, (h + 1) * dh)), energies, shares: energies.map(shares), total, total_shares: shares(total) };
    });
    const total = heads.map((h) => h.total).reduce(addEnergies, zero());
    return { layer: l, heads, total, total_shares: shares(total) };
  });
  return {
    model: modelInfo(spec, opts.input ?? spec.modelId),
    options: { embedding, tokens, layers, batch, device: rt.device, threads: opts.threads ?? null },
    layers: out,
    images: loaded.length,
    tokens: T,
    range,
    embedding,
    skipped,
    source: source.describe(),
  };
}

// ---- writing -------------------------------------------------------------------------------

export const PC_DEFINITION = {
  position: 'P_t = mean over the images of the embedding x_{m,t} of token t (per layer)',
  content: 'C_{m,t} = x_{m,t} − P_t',
  terms: 'mode n’s logit σ_n (x_i·u_n)(v_n·x_j) = CC + CP + PC + PP with x = C + P on each side; first letter = query side (i), second = key side (j)',
  energy: 'E_XY = Σ over images and token pairs (i, j) of XY² (σ_n² included; 1/√d_h omitted, shares do not depend on it)',
  share: 'E_XY / (E_CC + E_CP + E_PC + E_PP): the four parts’ energies add to 1 (the square of the full product has cross terms that belong to no part)',
  head: 'energies summed over the head’s modes, then shares (modes weigh by their energy)',
  layer: 'energies summed over the layer’s heads, then shares',
};

export interface PositionContentWritten {
  manifest: string;
  files: string[];
}

/** Writes shares.npy, heads.csv, the figure, and position_content.json last. */
export async function writePositionContent(r: PositionContentResult, dir: string, opts: { figures?: boolean; argv?: string[] } = {}): Promise<PositionContentWritten> {
  const H = r.model.heads;
  const dh = r.model.head_dim;
  const L = r.layers.length;
  const out = new RunDir(dir, 'position-content', { manifest: 'position_content.json' });
  const files = ['position_content.json', 'shares.npy', 'heads.csv'];
  try {
    const arr = new Float64Array(L * H * dh * 4).fill(NaN);
    r.layers.forEach((ly, li) => ly.heads.forEach((h) => h.shares.forEach((s, n) => s && arr.set(s, ((li * H + h.head) * dh + n) * 4))));
    out.npy('shares.npy', '<f8', [L, H, dh, 4], arr, 'float64 [layers,H,d_h,4]: each mode’s shares [CC, CP, PC, PP] of its logit energy (NaN: zero-energy mode); layers as in position_content.json');
    const rows = r.layers.flatMap((ly) => ly.heads.map((h) => [ly.layer, h.head, ...(h.total_shares ?? [null, null, null, null]), h.total.reduce((a, b) => a + b, 0)]));
    out.csv('heads.csv', [['layer', 'head', 'share_cc', 'share_cp', 'share_pc', 'share_pp', 'energy'], ...rows], 'one row per head: shares of the head’s summed energies, and that energy');
    if (opts.figures !== false) {
      const svg = positionContentFigure({
        title: `${r.model.id}: position vs content`,
        subtitle: `share of each mode’s logit energy, ${r.embedding === 'ln' ? 'LayerNorm output' : 'residual stream'}, ${r.images} images; first letter = query side; 0-based`,
        layers: r.layers.map((ly) => ({ label: `L${ly.layer}`, shares: ly.total_shares })),
        heads: r.layers.flatMap((ly) => ly.heads.map((h) => ({ label: `L${ly.layer} H${h.head}`, shares: h.total_shares }))),
      });
      await out.figure('position_content', svg, 'stacked shares CC/CP/PC/PP per layer and per head');
      files.push('position_content.svg', 'position_content.png');
    }
    const argv = opts.argv ?? null;
    const manifest = out.commit(out.header(r.model, { ...r.options }, { ...r.source, argv }), {
      index_base: 0,
      input: r.model.input,
      argv,
      images: r.images,
      tokens: r.tokens,
      token_range: r.range,
      embedding: r.embedding,
      parts: ['CC', 'CP', 'PC', 'PP'],
      definition: PC_DEFINITION,
      skipped: skippedEntries(r.skipped),
      layers: r.layers.map((ly) => ({
        layer: ly.layer,
        shares: ly.total_shares,
        energy: ly.total,
        heads: ly.heads.map((h) => ({ head: h.head, shares: h.total_shares, energy: h.total, sigma: h.sigma, mode_shares: h.shares })),
      })),
    });
    return { manifest, files };
  } catch (e) {
    out.abort();
    throw e;
  }
}
