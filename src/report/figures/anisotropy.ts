/**
 * `anisotropy` figure: against normalised depth, the layer-mean σ-weighted cosine, the
 * anisotropy baseline (mean centre-patch cosine between different images) and the relative
 * cosine (their difference). Drawn with the compare figure's machinery.
 */
import { compareFigure } from './compare.js';
import type { AnisotropyLayer } from '../../analysis/anisotropy.js';

export function anisotropyFigure(model: string, layers: AnisotropyLayer[], embedding: string, images: number): string {
  const depth = layers.map((l) => l.depth);
  const nan = (v: number | null) => (v === null ? NaN : v);
  return compareFigure({
    title: `${model}: anisotropy control`,
    subtitle: `${images} images; centre patch, ${embedding === 'ln' ? 'LayerNorm output' : 'residual stream'}; relative = cosine − anisotropy`,
    curves: [
      { label: 'σ-weighted cosine (layer mean)', depth, value: layers.map((l) => l.mean_weighted_cosine) },
      { label: 'anisotropy (mean cosine between images)', depth, value: layers.map((l) => nan(l.anisotropy)) },
      { label: 'relative cosine', depth, value: layers.map((l) => nan(l.relative_mean_weighted_cosine)) },
    ],
    yLabel: 'cosine',
  });
}
