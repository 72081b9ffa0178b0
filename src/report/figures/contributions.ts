/**
 * `contributions` figure (paper figure 5): the modes of one head ranked by their
 * attention-weighted contribution to the scores on one image (bar chart, bias terms as extra
 * bars), and for the top modes the query map (red) and key map (cyan) over the patch grid,
 * drawn as in METHOD.md §5: red = query high, cyan = key high, white = both.
 */
import * as Plot from '@observablehq/plot';
import { FigureBuilder, plotPanel, textWidth, titleBlock, type Panel } from '../plot.js';

export interface ContributionsFigureInput {
  title: string;
  subtitle?: string;
  /** Ranked bars: label (e.g. "M3 c=0.41") and value. */
  bars: { label: string; value: number; kind: 'mode' | 'bias' }[];
  /** Maps of the top modes over the patch grid [rows, cols], raster order. */
  maps: { label: string; query: ArrayLike<number>; key: ArrayLike<number> }[];
  grid: [number, number];
  /** Patch (row, col) of the chosen query, marked on the maps. */
  queryPatch?: [number, number];
}

/** Min-max scaled to [0, 1] (0 everywhere when constant). */
function unit(v: ArrayLike<number>): number[] {
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < v.length; i++) {
    lo = Math.min(lo, v[i]);
    hi = Math.max(hi, v[i]);
  }
  const r = hi - lo;
  return Array.from(v, (x) => (r > 0 ? (x - lo) / r : 0));
}

function hex(x: number): string {
  return Math.round(Math.max(0, Math.min(1, x)) * 255).toString(16).padStart(2, '0');
}

export function overlayPanel(label: string, query: ArrayLike<number>, key: ArrayLike<number>, grid: [number, number], mark?: [number, number]): Panel {
  const [R, C] = grid;
  const q = unit(query), k = unit(key);
  const cells = q.map((qv, i) => ({ r: Math.floor(i / C), c: i % C, fill: `#${hex(qv)}${hex(k[i])}${hex(k[i])}` }));
  const size = Math.max(4, Math.min(12, Math.floor(140 / Math.max(R, C))));
  const marks: Plot.Markish[] = [Plot.cell(cells, { x: 'c', y: 'r', fill: (d: { fill: string }) => d.fill })];
  if (mark) marks.push(Plot.cell([{ r: mark[0], c: mark[1] }], { x: 'c', y: 'r', stroke: '#FFD700', strokeWidth: 2, fill: 'none' }));
  marks.push(Plot.text([label], { frameAnchor: 'top', dy: -12, fontSize: 10 }));
  return plotPanel({
    width: C * size + 8,
    height: R * size + 24,
    marginTop: 20,
    marginLeft: 4,
    marginRight: 4,
    marginBottom: 4,
    x: { axis: null, domain: Array.from({ length: C }, (_, i) => i), padding: 0 },
    y: { axis: null, domain: Array.from({ length: R }, (_, i) => i), padding: 0 },
    marks,
  });
}

export function contributionsFigure(input: ContributionsFigureInput): string {
  const bars = input.bars.map((b, i) => ({ ...b, i }));
  const barPanel = plotPanel({
    width: Math.max(360, 26 * bars.length + 80),
    height: 260,
    marginLeft: 60,
    marginBottom: 70,
    x: { domain: bars.map((b) => b.label), tickRotate: -50, label: null },
    y: { label: 'contribution to the attention-weighted score', grid: true },
    color: { domain: ['mode', 'bias'], range: ['#0072B2', '#999999'] },
    marks: [Plot.barY(bars, { x: 'label', y: 'value', fill: 'kind' }), Plot.ruleY([0])],
  });
  const maps = input.maps.map((m) => overlayPanel(m.label, m.query, m.key, input.grid, input.queryPatch));
  // Bars on top, the maps below in rows of four.
  const margin = 12, gap = 8, cols = 4;
  const head = titleBlock(input.title, input.subtitle, margin);
  const fig = new FigureBuilder().raw(head.body);
  let y = Math.max(margin, head.height);
  fig.add(barPanel, margin, y);
  y += barPanel.height + gap;
  let width = barPanel.width + 2 * margin;
  for (let r = 0; r * cols < maps.length; r++) {
    const row = maps.slice(r * cols, (r + 1) * cols);
    let x = margin, h = 0;
    for (const p of row) {
      fig.add(p, x, y);
      x += p.width + gap;
      h = Math.max(h, p.height);
    }
    width = Math.max(width, x - gap + margin);
    y += h + gap;
  }
  width = Math.max(width, textWidth(input.title, 16, true) + 2 * margin, textWidth(input.subtitle ?? '', 12) + 2 * margin);
  return fig.toSvg(width, y + margin - gap);
}
