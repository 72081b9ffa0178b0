/**
 * The ablation sweep figure: one bar per ablated target (a mode of one head, or each head's top
 * mode), sorted by effect, in two panels: the change of the model's output (mean KL of the
 * class distribution; pooled-feature 1 − cosine for models without a classifier) and the change
 * of the ablated head's own attention (mean KL over query rows).
 */
import * as Plot from '@observablehq/plot';
import { OKABE_ITO, gridSvg, plotPanel } from '../plot.js';

export interface AblateBar {
  label: string;
  /** Effect on the output (the ranking key). */
  output: number;
  /** Effect on the head's attention. */
  attention: number;
}

export interface AblateFigureInput {
  title: string;
  subtitle?: string;
  bars: AblateBar[];
  outputLabel: string;
}

export function ablateFigure(o: AblateFigureInput): string {
  const bars = [...o.bars];
  const order = bars.map((b) => b.label);
  const height = Math.max(120, 16 * bars.length + 50);
  const panel = (key: 'output' | 'attention', label: string, color: string) =>
    plotPanel({
      width: 360,
      height,
      marginLeft: 90,
      marginRight: 16,
      x: { label, grid: true, nice: true },
      y: { domain: order, label: null },
      marks: [Plot.barX(bars, { x: key, y: 'label', fill: color }), Plot.ruleX([0])],
    });
  return gridSvg({
    title: o.title,
    subtitle: o.subtitle,
    columns: 2,
    panels: [panel('output', o.outputLabel, OKABE_ITO[1]), panel('attention', 'head attention: mean KL(A ‖ A′) (nats)', OKABE_ITO[0])],
  });
}
