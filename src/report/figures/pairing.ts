/**
 * `pairing` figure (paper figure 6): probability that a mode's top query and key objects
 * coincide, against normalised depth: the σ-weighted probability with its 95 % bootstrap
 * interval over images (shaded), the plain mean over modes, and the chance baseline (dashed:
 * the key object drawn at random in proportion to object area, σ-weighted the same way).
 */
import { compareFigure } from './compare.js';
import type { LayerPairing } from '../../analysis/pairing.js';

export interface PairingFigureInput {
  model: string;
  layers: ReadonlyArray<LayerPairing>;
  top: number;
  /** Usable images (two objects or more) and images left out with fewer. */
  images: number;
  single: number;
  /** e.g. "95% bootstrap interval over images (2000 resamples)". */
  intervalLabel: string;
}

export function pairingFigure(input: PairingFigureInput): string {
  const ls = input.layers;
  const depth = ls.map((l) => l.depth);
  const v = (x: number | null | undefined) => (x === null || x === undefined ? NaN : x);
  const withBand = ls.some((l) => l.interval);
  return compareFigure({
    title: `${input.model}: semantic pairing of query and key objects`,
    subtitle:
      `each mode's top-${input.top} images: n = ${input.images} with two or more objects (${input.single} with fewer left out); ` +
      'same object = largest mean query map and largest mean key map on one instance',
    curves: [
      {
        label: 'σ-weighted probability',
        depth,
        value: ls.map((l) => v(l.weighted_probability)),
        band: withBand ? { lo: ls.map((l) => v(l.interval?.[0])), hi: ls.map((l) => v(l.interval?.[1])) } : undefined,
      },
      { label: 'plain mean over modes', depth, value: ls.map((l) => v(l.mean_probability)) },
      { label: 'chance (key object ∝ area), σ-weighted', depth, value: ls.map((l) => v(l.baseline)), dashed: true },
    ],
    bandLabel: input.intervalLabel,
    yLabel: 'P(same object)',
  });
}
