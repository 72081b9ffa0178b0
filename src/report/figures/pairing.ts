/** `pairing` figure (paper figure 6): probability that a mode's top query and key objects coincide, against normalised depth. */
import { compareFigure } from './compare.js';
import type { LayerPairing } from '../../analysis/pairing.js';

export function pairingFigure(model: string, layers: LayerPairing[], top: number, images: number): string {
  const depth = layers.map((l) => l.depth);
  const v = (x: number | null) => (x === null ? NaN : x);
  return compareFigure({
    title: `${model}: semantic pairing of query and key objects`,
    subtitle: `each mode's top-${top} images (${images} distinct); same object = largest mean query map and largest mean key map on one instance`,
    curves: [
      { label: 'σ-weighted probability', depth, value: layers.map((l) => v(l.weighted_probability)) },
      { label: 'plain mean over modes', depth, value: layers.map((l) => v(l.mean_probability)) },
    ],
    yLabel: 'P(same object)',
  });
}
