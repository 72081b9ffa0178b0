/**
 * Position vs content shares of the logit energy (see analysis/position-content.ts): one
 * stacked horizontal bar per layer (left) and per head (right), four parts CC, CP, PC, PP
 * (query side first) in Okabe–Ito colours (colour-blind safe). Rows without energy say so.
 */
import * as Plot from '@observablehq/plot';
import { OKABE_ITO, gridSvg, plotPanel } from '../plot.js';

export interface ShareRow {
  label: string;
  /** [CC, CP, PC, PP], summing to 1 (null: no energy, drawn empty). */
  shares: readonly number[] | null;
}

export interface PositionContentFigureInput {
  title: string;
  subtitle?: string;
  layers: ShareRow[];
  heads: ShareRow[];
}

const PARTS = ['content–content', 'content–position', 'position–content', 'position–position'];
const COLORS = [OKABE_ITO[0], OKABE_ITO[5], OKABE_ITO[4], OKABE_ITO[1]];

function panel(rows: ShareRow[], title: string, legend: boolean) {
  const data = rows.flatMap((r) => (r.shares ? r.shares.map((v, p) => ({ label: r.label, part: PARTS[p], value: v })) : []));
  return plotPanel({
    width: 380,
    height: Math.max(120, 12 * rows.length + (legend ? 130 : 50)),
    marginLeft: 64,
    marginRight: 16,
    marginBottom: legend ? 110 : 36,
    x: { domain: [0, 1], label: title, grid: true, labelOffset: 32 },
    y: { domain: rows.map((r) => r.label), label: null },
    color: { domain: PARTS, range: COLORS },
    marks: [
      Plot.barX(data, Plot.stackX({ x: 'value', y: 'label', fill: 'part', order: PARTS })),
      // A row without energy (all σ = 0) would otherwise look like missing data.
      Plot.text(rows.filter((r) => !r.shares), { x: 0, y: 'label', text: () => 'no logit energy (σ = 0)', textAnchor: 'start', dx: 4, fill: '#555' }),
      ...(legend
        ? PARTS.map((p, i) => Plot.text([p], { frameAnchor: 'bottom-left', dy: 48 + 14 * i, dx: -56, text: (d: string) => `■ ${d} (${['CC', 'CP', 'PC', 'PP'][i]})`, fill: COLORS[i], textAnchor: 'start' }))
        : []),
    ],
  });
}

export function positionContentFigure(o: PositionContentFigureInput): string {
  return gridSvg({
    title: o.title,
    subtitle: o.subtitle,
    columns: 2,
    panels: [panel(o.layers, 'share of logit energy, per layer', true), panel(o.heads, 'share of logit energy, per head', false)],
  });
}
