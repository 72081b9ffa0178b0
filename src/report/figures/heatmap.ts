/**
 * Layer × head heat map of a per-head score (by default the σ-weighted cosine
 * C = Σ σ_n c_n / Σ σ_n, docs/method.md §3): one cell per head, diverging colours centred at 0.
 * Plain SVG in the layout Observable Plot gave it (band scales without padding, cells inset by
 * 0.5 px, the same tick and label offsets), so drawing it loads neither Plot nor a DOM.
 */
import { FigureBuilder, num, svgText, textWidth, titleBlock } from '../svg.js';
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
  const cx = (h: number) => marginLeft + h * cellW; // left edge of column h
  const cy = (l: number) => marginTop + l * cellH; // top edge of row l

  // Grey under every cell (visible where the value is NaN), then the coloured cells.
  const grey = cells.map((c) => `M${cx(c.head) + 0.5},${cy(c.layer) + 0.5}h${cellW - 1}v${cellH - 1}h-${cellW - 1}z`).join('');
  const coloured = finite
    .map((c) => `<rect x="${cx(c.head) + 0.5}" y="${cy(c.layer) + 0.5}" width="${cellW - 1}" height="${cellH - 1}" fill="${color(c.value)}"/>`)
    .join('');
  const parts = [`<path d="${grey}" fill="#d9d9d9"/>`, coloured];
  if (showValues) {
    const text = (list: Cell[], fill: string, label: (c: Cell) => string) =>
      `<g font-size="9" fill="${fill}">${list
        .map((c) => `<text x="${num(cx(c.head) + cellW / 2)}" y="${num(cy(c.layer) + cellH / 2)}" dy="0.32em">${label(c)}</text>`)
        .join('')}</g>`;
    parts.push(
      text(finite.filter((c) => !dark(c)), 'black', (c) => fmt(c.value)),
      text(finite.filter(dark), 'white', (c) => fmt(c.value)),
      text(cells.filter((c) => !Number.isFinite(c.value)), '#555', () => 'n/a'),
    );
  }
  const xTicks = cellW >= 18 ? Array.from({ length: H }, (_, i) => i) : tickSubset(H, Math.floor((H * cellW) / 20));
  const yTicks = cellH >= 12 ? Array.from({ length: L }, (_, i) => i) : tickSubset(L, Math.floor((L * cellH) / 12));
  const gridBottom = cy(L);
  parts.push(
    `<g text-anchor="end">${yTicks.map((l) => `<text x="${marginLeft - 9}" y="${num(cy(l) + cellH / 2)}" dy="0.32em">${l}</text>`).join('')}</g>`,
    `<g>${xTicks.map((h) => `<text x="${num(cx(h) + cellW / 2)}" y="${gridBottom + 9}" dy="0.71em">${h}</text>`).join('')}</g>`,
    `<text transform="translate(${marginLeft - 40},${num(marginTop + (L * cellH) / 2)}) rotate(-90)" dy="0.71em">layer (0-based)</text>`,
    `<text x="${num(marginLeft + (H * cellW) / 2)}" y="${gridBottom + 32}">head (0-based)</text>`,
  );
  const plot = `<g text-anchor="middle" font-variant="tabular-nums">${parts.join('')}</g>`;

  const margin = 12;
  const head = titleBlock(input.title, input.subtitle, margin);
  const barW = clamp(Math.round(H * cellW * 0.6), 220, 360);
  const bar = colorbarPanel(color, [-limit, limit], label, barW);
  const fig = new FigureBuilder().raw(head.body);
  // Centred over the cells; the bar's own 14 px inner margin lines its left end up with them.
  const barX = margin + marginLeft - 14 + Math.max(0, (H * cellW - (barW - 28)) / 2);
  fig.raw(`<g transform="translate(${num(barX)},${num(head.height)})">${bar.body}</g>`);
  const plotY = head.height + bar.height + 6;
  fig.raw(`<g transform="translate(${margin},${num(plotY)})">${plot}</g>`);
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
