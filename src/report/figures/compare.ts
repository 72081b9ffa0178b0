/**
 * The paper's main figure: the layer mean of the σ-weighted cosine against normalised depth
 * l/(L−1), one line per model, with the chance band shaded and a zero rule (docs/method.md §3).
 * Colours are Okabe–Ito (colour-blind safe); past 8 curves the marker shape also changes, so
 * every curve is told apart by colour × symbol. The legend is drawn beside the plot.
 */
import * as Plot from '@observablehq/plot';
import { FigureBuilder, OKABE_ITO, SYMBOLS, num, plotPanel, svgText, textWidth, titleBlock } from '../plot.js';
import { minusFormat } from './common.js';

export interface CompareBand {
  /** Lower / upper edge at each depth (same length as depth). */
  lo: ArrayLike<number>;
  hi: ArrayLike<number>;
}

export interface CompareCurve {
  /** Legend label, e.g. the model id. */
  label: string;
  /** l / (L − 1) for each point, in [0, 1]. */
  depth: ArrayLike<number>;
  /** The value at each depth (layer mean of the head score). */
  value: ArrayLike<number>;
  /** Optional per-curve chance band at the curve's own depths, shaded in the curve's colour. */
  band?: CompareBand;
  /** Drawn dashed and without markers (a reference such as a chance baseline). */
  dashed?: boolean;
  /**
   * A group (e.g. the training objective). With groups, curves of one group share a line style
   * (solid, dashed, dotted, …), colours restart in each group and the legend lists the curves
   * under their group's name. Give the curves ordered by group.
   */
  group?: string;
}

export interface CompareInput {
  title: string;
  subtitle?: string;
  curves: ReadonlyArray<CompareCurve>;
  /** One shared chance band (grey), e.g. for the smallest model's d and H. */
  band?: CompareBand & { depth: ArrayLike<number> };
  /** Legend text for the band(s), used as given; default "95% chance band" (+ "(per model, its colour)" for per-curve bands). */
  bandLabel?: string;
  /** Values are relative cosines (minus the anisotropy baseline): changes the y title. */
  relative?: boolean;
  /** Overrides the y-axis title. */
  yLabel?: string;
  /** Plot area size in px (defaults 560 × 340). */
  width?: number;
  height?: number;
}

export function compareFigure(input: CompareInput): string {
  const curves = input.curves;
  if (curves.length === 0) throw new Error('compareFigure: no curves');
  type Pt = { k: number; depth: number; value: number };
  type BandPt = { k: number; depth: number; lo: number; hi: number };
  const pts: Pt[] = [];
  const curveBands: BandPt[] = [];
  const ys: number[] = [0];
  curves.forEach((c, k) => {
    if (c.depth.length !== c.value.length) throw new Error(`compareFigure: curve "${c.label}" has ${c.depth.length} depths but ${c.value.length} values`);
    for (let i = 0; i < c.depth.length; i++) {
      const v = Number(c.value[i]);
      pts.push({ k, depth: Number(c.depth[i]), value: v });
      if (Number.isFinite(v)) ys.push(v);
    }
    if (c.band) {
      if (c.band.lo.length !== c.depth.length || c.band.hi.length !== c.depth.length) {
        throw new Error(`compareFigure: band of curve "${c.label}" does not match its ${c.depth.length} depths`);
      }
      for (let i = 0; i < c.depth.length; i++) {
        curveBands.push({ k, depth: Number(c.depth[i]), lo: Number(c.band.lo[i]), hi: Number(c.band.hi[i]) });
        ys.push(Number(c.band.lo[i]), Number(c.band.hi[i]));
      }
    }
  });
  const shared: BandPt[] = [];
  if (input.band) {
    const b = input.band;
    if (b.lo.length !== b.depth.length || b.hi.length !== b.depth.length) throw new Error('compareFigure: band lo/hi/depth lengths differ');
    for (let i = 0; i < b.depth.length; i++) {
      shared.push({ k: -1, depth: Number(b.depth[i]), lo: Number(b.lo[i]), hi: Number(b.hi[i]) });
      ys.push(Number(b.lo[i]), Number(b.hi[i]));
    }
  }
  const finiteYs = ys.filter(Number.isFinite);
  // With groups, a curve is told apart by its group's line style and its colour within the group.
  const groups = [...new Set(curves.map((c) => c.group).filter((g): g is string => g !== undefined))];
  const GROUP_DASH = ['', '7,3', '2,2.5', '9,3,2,3'];
  const within = curves.map((c, k) => curves.slice(0, k).filter((x) => x.group === c.group).length);
  const groupSize = (g: string | undefined) => curves.filter((c) => c.group === g).length;
  const colorOf = (k: number) => OKABE_ITO[(groups.length ? within[k] : k) % OKABE_ITO.length];
  const dashOf = (k: number) => (groups.length ? GROUP_DASH[Math.max(0, groups.indexOf(curves[k].group ?? '')) % GROUP_DASH.length] : '');
  // Past 8 curves (in a group) the colour repeats: vary the symbol with k mod 7 (colour × symbol unique for 56 curves).
  const symbolOf = (k: number) =>
    (groups.length ? groupSize(curves[k].group) : curves.length) <= OKABE_ITO.length ? 'circle' : SYMBOLS[(groups.length ? within[k] : k) % SYMBOLS.length];

  const yLabel = input.yLabel ?? (input.relative ? 'relative σ-weighted cosine (layer mean − anisotropy baseline)' : 'σ-weighted cosine (layer mean)');
  const bandLabel = input.bandLabel ?? '95% chance band';
  const bandText = input.bandLabel ?? (curveBands.length && !shared.length ? `${bandLabel} (per model, its colour)` : bandLabel);
  const pw = input.width ?? 560;
  const ph = input.height ?? 340;
  const marginLeft = 64;
  const marginRight = 16;
  const marginTop = 12;
  const marginBottom = 46;

  const marks: Plot.Markish[] = [];
  if (shared.length) {
    marks.push(Plot.areaY(shared, { x: 'depth', y1: 'lo', y2: 'hi', fill: '#999999', fillOpacity: 0.3, curve: 'linear' }));
  }
  curves.forEach((_, k) => {
    const b = curveBands.filter((p) => p.k === k);
    if (b.length) marks.push(Plot.areaY(b, { x: 'depth', y1: 'lo', y2: 'hi', fill: colorOf(k), fillOpacity: 0.12 }));
  });
  marks.push(Plot.ruleY([0], { stroke: '#444', strokeWidth: 0.8 }));
  curves.forEach((c, k) => {
    const p = pts.filter((q) => q.k === k && Number.isFinite(q.value));
    if (c.dashed) marks.push(Plot.line(p, { x: 'depth', y: 'value', stroke: colorOf(k), strokeWidth: 1.6, strokeDasharray: '5,3' }));
    else
      marks.push(
        Plot.line(p, { x: 'depth', y: 'value', stroke: colorOf(k), strokeWidth: 1.6, ...(dashOf(k) ? { strokeDasharray: dashOf(k) } : {}) }),
        Plot.dot(p, { x: 'depth', y: 'value', fill: colorOf(k), stroke: 'white', strokeWidth: 0.5, r: 3.2, symbol: symbolOf(k) }),
      );
  });
  const [y0, y1] = [Math.min(...finiteYs), Math.max(...finiteYs)];
  const pad = 0.05 * Math.max(1e-3, y1 - y0);
  const plot = plotPanel({
    width: marginLeft + pw + marginRight,
    height: marginTop + ph + marginBottom,
    marginLeft,
    marginRight,
    marginTop,
    marginBottom,
    style: { fontSize: '11px' },
    x: { domain: [0, 1], inset: 6, label: null, tickFormat: minusFormat(2, true) },
    y: { domain: [y0 - pad, y1 + pad], nice: true, label: null },
    marks: [Plot.gridY({ ticks: 6, stroke: '#000', strokeOpacity: 0.08 }), ...marks, Plot.frame({ stroke: '#888', strokeWidth: 0.6 }), Plot.axisX({ tickFormat: minusFormat(2, true), ticks: 5, label: null }), Plot.axisY({ ticks: 6, label: null })],
  });

  // Legend on the right: one row per curve (line + marker + label), then the band(s).
  const fs = 11;
  const rowH = 17;
  const rows: string[] = [];
  let ly = 0;
  curves.forEach((c, k) => {
    const col = colorOf(k);
    if (c.group !== undefined && (k === 0 || curves[k - 1].group !== c.group)) {
      if (k > 0) ly += 4;
      rows.push(svgText(0, ly, c.group, { size: fs, baseline: 'middle', fill: '#111', weight: 'bold' }));
      ly += rowH;
    }
    const dash = c.dashed ? '5,3' : dashOf(k);
    rows.push(
      `<line x1="0" y1="${num(ly)}" x2="22" y2="${num(ly)}" stroke="${col}" stroke-width="1.6"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`,
      c.dashed ? '' : markerSvg(symbolOf(k), 11, ly, col),
      svgText(30, ly, c.label, { size: fs, baseline: 'middle', fill: '#111' }),
    );
    ly += rowH;
  });
  if (shared.length || curveBands.length) {
    ly += 4;
    const fill = shared.length ? '#999999' : colorOf(0);
    const op = shared.length ? 0.3 : 0.12;
    rows.push(
      `<rect x="0" y="${num(ly - 6)}" width="22" height="12" fill="${fill}" fill-opacity="${op}"/>`,
      svgText(30, ly, bandText, { size: fs, baseline: 'middle', fill: '#111' }),
    );
    ly += rowH;
  }
  const legendW = 30 + Math.max(...curves.map((c) => textWidth(c.label, fs)), ...groups.map((g) => textWidth(g, fs, true) - 30), textWidth(bandText, fs) * (shared.length || curveBands.length ? 1 : 0), textWidth(bandLabel, fs));

  const margin = 12;
  const head = titleBlock(input.title, input.subtitle, margin);
  const plotX = margin + 18; // room for the rotated y title
  const plotY = head.height + 4;
  const fig = new FigureBuilder().raw(head.body).add(plot, plotX, plotY);
  const areaMidY = plotY + marginTop + ph / 2;
  fig.raw(svgText(margin + 8, areaMidY, yLabel, { size: 12, anchor: 'middle', rotate: -90, baseline: 'middle' }));
  fig.raw(svgText(plotX + marginLeft + pw / 2, plotY + marginTop + ph + 40, 'normalised depth l / (L − 1)', { size: 12, anchor: 'middle' }));
  const legendX = plotX + marginLeft + pw + marginRight + 14;
  fig.raw(`<g transform="translate(${num(legendX)},${num(plotY + marginTop + 8)})">${rows.join('')}</g>`);
  const width = Math.max(legendX + legendW + margin, 2 * margin + textWidth(input.title, 16, true), 2 * margin + textWidth(input.subtitle ?? '', 12));
  const height = Math.max(plotY + marginTop + ph + marginBottom, plotY + marginTop + 8 + ly) + margin;
  return fig.toSvg(width, height);
}

/** An SVG marker matching Plot's symbol of that name, centred at (x, y). */
function markerSvg(symbol: string, x: number, y: number, color: string): string {
  const r = 3.2;
  const fill = `fill="${color}" stroke="white" stroke-width="0.5"`;
  if (symbol === 'circle') return `<circle cx="${num(x)}" cy="${num(y)}" r="${num(r)}" ${fill}/>`;
  return `<path transform="translate(${num(x)},${num(y)})" d="${plotSymbolPath(symbol, r)}" ${fill}/>`;
}

/** The path Plot draws for a symbol of radius r (so legend markers match the plot exactly). */
function plotSymbolPath(symbol: string, r: number): string {
  const svg = plotPanel({
    width: 20,
    height: 20,
    margin: 0,
    x: { domain: [0, 1], axis: null },
    y: { domain: [0, 1], axis: null },
    marks: [Plot.dot([0], { x: 0.5, y: 0.5, r, symbol, fill: 'black' })],
  }).body;
  const m = / d="([^"]+)"/.exec(svg);
  return m ? m[1] : '';
}
