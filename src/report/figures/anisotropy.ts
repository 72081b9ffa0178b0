/**
 * `anisotropy` figure: against normalised depth, the anisotropy baseline (mean centre-patch
 * cosine between different images) and the relative cosine (layer-mean σ-weighted cosine minus
 * that baseline), each with its 95 % interval over images shaded in its colour, and the
 * σ-weighted cosine itself (weights only: no interval). Drawn with the compare figure's machinery.
 */
import { compareFigure } from './compare.js';
import type { AnisotropyLayer } from '../../analysis/anisotropy.js';

export interface AnisotropyFigureInput {
  model: string;
  layers: ReadonlyArray<AnisotropyLayer>;
  embedding: 'ln' | 'residual';
  /** Images the baseline was computed on. */
  images: number;
  /** How the interval was made, for the legend (e.g. "95% jackknife interval over images"). */
  intervalLabel: string;
}

export function anisotropyFigure(input: AnisotropyFigureInput): string {
  const layers = input.layers;
  const depth = layers.map((l) => l.depth);
  const nan = (v: number | null | undefined) => (v === null || v === undefined ? NaN : v);
  const band = (get: (l: AnisotropyLayer) => [number, number] | null) =>
    layers.some((l) => get(l)) ? { lo: layers.map((l) => nan(get(l)?.[0])), hi: layers.map((l) => nan(get(l)?.[1])) } : undefined;
  return compareFigure({
    title: `${input.model}: anisotropy control`,
    subtitle: `n = ${input.images} images; centre patch, ${input.embedding === 'ln' ? 'LayerNorm output' : 'residual stream'}; relative = cosine − anisotropy`,
    curves: [
      { label: 'anisotropy (mean cosine between images)', depth, value: layers.map((l) => nan(l.anisotropy)), band: band((l) => l.anisotropy_interval) },
      { label: 'relative cosine', depth, value: layers.map((l) => nan(l.relative_mean_weighted_cosine)), band: band((l) => l.relative_interval) },
      { label: 'σ-weighted cosine (layer mean, weights only)', depth, value: layers.map((l) => l.mean_weighted_cosine) },
    ],
    bandLabel: input.intervalLabel,
    yLabel: 'cosine',
  });
}
