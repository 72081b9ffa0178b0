/** `objects` figure (paper figure 2): attention share per category against normalised depth. */
import { compareFigure } from './compare.js';

export function objectsFigure(model: string, images: number, depth: number[], same: number[], other: number[], background: number[]): string {
  return compareFigure({
    title: `${model}: where do object tokens attend?`,
    subtitle: `${images} images; query = patch at each mask's maximum; attention over patches renormalised; mean over heads`,
    curves: [
      { label: 'same object', depth, value: same },
      { label: 'other object', depth, value: other },
      { label: 'background', depth, value: background },
    ],
    yLabel: 'attention share',
  });
}
