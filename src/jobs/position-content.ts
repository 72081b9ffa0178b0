/**
 * `position-content` as a library call: the modes of every head (weights only), then two passes
 * of the model over the images with the mode projections x·u_n, x·v_n computed inside the graph
 * (one [d, 2·H·d_h] matmul per layer), so only projections leave onnxruntime. Pass 1 gives the
 * per-position means, pass 2 the content statistics (see position-content.ts). Memory is bounded
 * by one batch plus the per-position means.
 */
import type { VitSpec } from '../arch/spec.js';
import { UserError } from '../errors.js';
import type { Device } from '../runtime/device.js';
import { VitRuntime } from '../runtime/vit-runtime.js';
import { analyzeModel } from '../analysis/model-modes.js';
import { PositionContentLayer, addEnergies, shares, type PcEnergies } from '../analysis/position-content.js';
import { type PixelSource } from '../images/source.js';

export interface PositionContentOptions {
  embedding?: 'ln' | 'residual';
  /** Tokens entering the sums: all (default) or the patch tokens only. */
  tokens?: 'all' | 'patches';
  layers?: number[];
  batch?: number;
  device?: Device;
  threads?: number;
  onProgress?: (pass: 1 | 2, done: number, total: number) => void;
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
  layers: PcLayer[];
  images: number;
  tokens: number;
  range: [number, number];
  embedding: 'ln' | 'residual';
}

export async function runPositionContent(spec: VitSpec, source: PixelSource, opts: PositionContentOptions = {}): Promise<PositionContentResult> {
  if (spec.modality !== 'vision' || !spec.patchEmbed) {
    throw new UserError(`${spec.modelId}: position-content runs the model on images, so it needs a vision transformer (this is a ${spec.modality} model; use \`qkscope svd\` for its modes)`);
  }
  const N = source.count;
  if (N < 2) throw new UserError(`position-content: give at least 2 images (got ${N}); the position part is the mean over images, so one image has no content part`);
  const { heads: H, headDim: dh, width: d } = spec;
  const K = H * dh;
  const embedding = opts.embedding ?? 'ln';
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
    extend: (g, t) => {
      for (const l of layers) {
        const x = embedding === 'ln' ? t.ln[l] : t.residual[l];
        g.output(`pc_proj.${l}`, g.matmul(x, g.init(`pc_uv.${l}`, [d, 2 * K], proj.get(l)!), `pc_proj_${l}`));
      }
    },
  });
  const T = rt.layout.tokens;
  const range: [number, number] = opts.tokens === 'patches' ? [rt.layout.patchStart, T] : [0, T];
  const acc = new Map(layers.map((l) => [l, new PositionContentLayer(T, K, range)]));
  const batch = opts.batch ?? 8;
  try {
    for (const pass of [1, 2] as const) {
      for (let start = 0; start < N; start += batch) {
        const n = Math.min(batch, N - start);
        const r = await rt.run(await source.read(start, n), n);
        for (const l of layers) {
          const data = r.extra[`pc_proj.${l}`].data;
          const a = acc.get(l)!;
          for (let i = 0; i < n; i++) {
            if (pass === 1) a.addMean(data, i * T * 2 * K);
            else a.addImage(data, i * T * 2 * K);
          }
        }
        opts.onProgress?.(pass, start + n, N);
      }
    }
  } finally {
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
  return { layers: out, images: N, tokens: T, range, embedding };
}
