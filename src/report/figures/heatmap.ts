/**
 * Layer × head heat map of a per-head score (by default the σ-weighted cosine
 * C = Σ σ_n c_n / Σ σ_n, METHOD.md §3): one cell per head, diverging colours centred at 0.
 */
import * as Plot from '@observablehq/plot';
import { FigureBuilder, plotPanel, svgText, textWidth, titleBlock } from '../plot.js';
import { clamp, colorbarPanel, divergingColor, minusFormat, symmetricLimit, tickSubset } from './common.js';

export interface HeatmapInput {
  /** Figure title; should name the model, e.g. "google/vit-base-patch16-224". */
  title: string;
  /** Optional second line (e.g. "σ-weighted cosine per head; LayerNorm space"). */
  subtitle?: string;
  /** values[l][h]: the score of head h in layer l (NaN = undefined, drawn grey). */
  values: ReadonlyArray<ArrayLike<number>>;
  /** Half-width of the symmetric colour domain [−limit, limit]; default max |v| rounded up to 0.05 (≤ 1). */
  limit?: number;
  /** Colour legend title; default "σ-weighted cosine". */
  label?: string;
  /** Print the value in each cell; default when the grid is at most 16 × 16. */
  showValues?: boolean;
}

interface Cell {
  layer: number;
  head: number;
  value: number;
}

export function heatmapFigure(input: HeatmapInput): string {
  const L = input.values.length;
  if (L === 0) throw new Error('heatmapFigure: no layers');
  const H = Math.max(...input.values.map((r) => r.length));
  if (H === 0) throw new Error('heatmapFigure: no heads');
  const cells: Cell[] = [];
  for (let l = 0; l < L; l++) {
    const row = input.values[l];
    for (let h = 0; h < H; h++) cells.push({ layer: l, head: h, value: h < row.length ? Number(row[h]) : NaN });
  }
  const finite = cells.filter((c) => Number.isFinite(c.value));
  const limit = input.limit ?? symmetricLimit(finite.map((c) => c.value));
  if (!(limit > 0)) throw new Error(`heatmapFigure: limit must be positive, got ${limit}`);
  const label = input.label ?? 'σ-weighted cosine';
  const showValues = input.showValues ?? (L <= 16 && H <= 16);

  const cellW = showValues ? 38 : clamp(Math.floor(720 / H), 10, 30);
  const cellH = showValues ? 24 : clamp(Math.floor(560 / L), 8, 24);
  const marginLeft = 52;
  const marginRight = 12;
  const marginTop = 6;
  const marginBottom = 40;
  const plotW = marginLeft + H * cellW + marginRight;
  const plotH = marginTop + L * cellH + marginBottom;
  const color = divergingColor(limit);
  const fmt = minusFormat(2);
  const dark = (c: Cell) => Math.abs(c.value) > 0.6 * limit;

  const marks: Plot.Markish[] = [
    // Grey under every cell, visible where the value is NaN.
    Plot.cell(cells, { x: 'head', y: 'layer', fill: '#d9d9d9', inset: 0.5 }),
    Plot.cell(finite, { x: 'head', y: 'layer', fill: 'value', inset: 0.5 }),
  ];
  if (showValues) {
    const fontSize = 9;
    marks.push(
      Plot.text(finite.filter((c) => !dark(c)), { x: 'head', y: 'layer', text: (c: Cell) => fmt(c.value), fill: 'black', fontSize }),
      Plot.text(finite.filter(dark), { x: 'head', y: 'layer', text: (c: Cell) => fmt(c.value), fill: 'white', fontSize }),
      Plot.text(
        cells.filter((c) => !Number.isFinite(c.value)),
        { x: 'head', y: 'layer', text: () => 'n/a', fill: '#555', fontSize },
      ),
    );
  }
  const heads = Array.from({ length: H }, (_, i) => i);
  const layers = Array.from({ length: L }, (_, i) => i);
  const plot = plotPanel({
    width: plotW,
    height: plotH,
    marginLeft,
    marginRight,
    marginTop,
    marginBottom,
    x: {
      type: 'band',
      domain: heads,
      padding: 0,
      ticks: cellW >= 18 ? heads : tickSubset(H, Math.floor((H * cellW) / 20)),
      tickSize: 0,
      label: 'head (0-based)',
      labelAnchor: 'center',
      labelArrow: 'none',
      labelOffset: 32,
    },
    y: {
      type: 'band',
      domain: layers,
      padding: 0,
      ticks: cellH >= 12 ? layers : tickSubset(L, Math.floor((L * cellH) / 12)),
      tickSize: 0,
      label: 'layer (0-based)',
      labelAnchor: 'center',
      labelArrow: 'none',
      labelOffset: 40,
    },
    color,
    marks,
  });

  const margin = 12;
  const head = titleBlock(input.title, input.subtitle, margin);
  const barW = clamp(Math.round(H * cellW * 0.6), 220, 360);
  const bar = colorbarPanel(color, label, barW);
  const fig = new FigureBuilder().raw(head.body);
  // Centred over the cells; the bar's own 14 px inner margin lines its left end up with them.
  const barX = margin + marginLeft - 14 + Math.max(0, (H * cellW - (barW - 28)) / 2);
  fig.add(bar, barX, head.height);
  const plotY = head.height + bar.height + 6;
  fig.add(plot, margin, plotY);
  let bottom = plotY + plotH;
  if (finite.length < cells.length) {
    bottom += 4;
    fig.raw(`<rect x="${margin + marginLeft}" y="${bottom}" width="12" height="10" fill="#d9d9d9"/>`);
    fig.raw(svgText(margin + marginLeft + 16, bottom + 9, 'no value (e.g. all σ = 0)', { size: 10, fill: '#333' }));
    bottom += 12;
  }
  const width = Math.max(2 * margin + plotW, margin + barX + barW, 2 * margin + textWidth(input.title, 16, true), 2 * margin + textWidth(input.subtitle ?? '', 12));
  return fig.toSvg(width, bottom + margin);
}
