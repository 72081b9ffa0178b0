/**
 * `objects` figure (paper figure 2): attention share per category (same object, other object,
 * background) against normalised depth, mean over heads and images, each with its 95 %
 * bootstrap interval over images shaded in its colour.
 */
import { compareFigure } from './compare.js';

export interface ObjectsFigureLayer {
  depth: number;
  same_object: number;
  other_object: number;
  background: number;
  same_object_interval: [number, number] | null;
  other_object_interval: [number, number] | null;
  background_interval: [number, number] | null;
}

export interface ObjectsFigureInput {
  model: string;
  /** Images the means are over. */
  images: number;
  layers: ReadonlyArray<ObjectsFigureLayer>;
  /** e.g. "95% bootstrap interval over images (2000 resamples)". */
  intervalLabel: string;
}

export function objectsFigure(input: ObjectsFigureInput): string {
  const ls = input.layers;
  const depth = ls.map((l) => l.depth);
  const band = (k: 'same_object_interval' | 'other_object_interval' | 'background_interval') =>
    ls.every((l) => l[k]) ? { lo: ls.map((l) => l[k]![0]), hi: ls.map((l) => l[k]![1]) } : undefined;
  return compareFigure({
    title: `${input.model}: where do object tokens attend?`,
    subtitle: `n = ${input.images} images; query = patch at each mask's maximum; attention over patches renormalised; mean over heads`,
    curves: [
      { label: 'same object', depth, value: ls.map((l) => l.same_object), band: band('same_object_interval') },
      { label: 'other object', depth, value: ls.map((l) => l.other_object), band: band('other_object_interval') },
      { label: 'background', depth, value: ls.map((l) => l.background), band: band('background_interval') },
    ],
    bandLabel: input.intervalLabel,
    yLabel: 'attention share',
  });
}
