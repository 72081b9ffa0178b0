/**
 * Per-head small multiples (rows = layers, columns = heads). Each panel shows, for every
 * singular mode n of that head's M = W_qᵀW_k (METHOD.md §2–3):
 *   - the cosine c_n = u_n·v_n as a dot (left axis, −1…1),
 *   - the per-mode 95 % chance band for random unit vectors as a grey band, and a zero rule,
 *   - σ_n / σ_max as a line on the right-hand axis (0…1, drawn over the same panel height),
 * and is titled `L{l} H{h}  C̄={σ-weighted cosine}`. Only the outer panels carry axes.
 * Rendered as one faceted Plot, so 12×12 (ViT-B) or 32×16 (ViT-H) grids stay consistent.
 */
import * as Plot from '@observablehq/plot';
import { FigureBuilder, OKABE_ITO, num, plotPanel, svgText, textWidth, titleBlock } from '../plot.js';
import { minusFormat } from './common.js';

export interface HeadsPanelInput {
  head: number;
  /** σ_n, descending (any positive scale: each panel is normalised by its own max). */
  sigma: ArrayLike<number>;
  /** c_n = u_n · v_n, same length as sigma. */
  cosine: ArrayLike<number>;
  /** Σ σ_n c_n / Σ σ_n, shown in the panel title (NaN → "n/a"). */
  weightedCosine: number;
  /** Two-sided 95 % chance interval of a single mode's cosine. */
  band95: { lo: number; hi: number };
}

export interface HeadsInput {
  title: string;
  subtitle?: string;
  layers: ReadonlyArray<{ layer: number; heads: ReadonlyArray<HeadsPanelInput> }>;
  /** Width / height of one panel's plotting area in px (defaults 104 × 70). */
  panelWidth?: number;
  panelHeight?: number;
}

const DOT = OKABE_ITO[0]; // blue
const SIGMA = OKABE_ITO[1]; // vermillion
const BAND = '#b3b3b3';

interface Dot {
  layer: number;
  head: number;
  n: number;
  c: number;
}
interface SigmaPt {
  layer: number;
  head: number;
  n: number;
  s: number;
}
interface BandRow {
  layer: number;
  head: number;
  lo: number;
  hi: number;
  title: string;
}

export function headsFigure(input: HeadsInput): string {
  if (input.layers.length === 0) throw new Error('headsFigure: no layers');
  const dots: Dot[] = [];
  const sig: SigmaPt[] = [];
  const bands: BandRow[] = [];
  const layerSet = new Set<number>();
  const headSet = new Set<number>();
  let nModes = 1;
  const fmt = minusFormat(2);
  for (const { layer, heads } of input.layers) {
    layerSet.add(layer);
    for (const h of heads) {
      headSet.add(h.head);
      const n = h.cosine.length;
      if (h.sigma.length !== n) throw new Error(`headsFigure: L${layer} H${h.head} has ${h.sigma.length} σ but ${n} cosines`);
      nModes = Math.max(nModes, n);
      let smax = 0;
      for (let i = 0; i < n; i++) smax = Math.max(smax, Math.abs(h.sigma[i]));
      for (let i = 0; i < n; i++) {
        if (Number.isFinite(h.cosine[i])) dots.push({ layer, head: h.head, n: i, c: h.cosine[i] });
        // σ/σ_max ∈ [0, 1] drawn on the panel's −1…1 scale: y = 2·σ/σ_max − 1.
        if (smax > 0) sig.push({ layer, head: h.head, n: i, s: (2 * h.sigma[i]) / smax - 1 });
      }
      const w = h.weightedCosine;
      bands.push({
        layer,
        head: h.head,
        lo: h.band95.lo,
        hi: h.band95.hi,
        title: `L${layer} H${h.head}  C̄=${Number.isFinite(w) ? fmt(w) : 'n/a'}`,
      });
    }
  }
  const layers = [...layerSet].sort((a, b) => a - b);
  const heads = [...headSet].sort((a, b) => a - b);
  const nL = layers.length;
  const nH = heads.length;
  const pw = input.panelWidth ?? 104;
  const ph = input.panelHeight ?? 70;
  const gapX = 12;
  const gapY = 18; // room for the panel titles
  const marginLeft = 52;
  const marginRight = 52;
  const marginTop = gapY;
  const marginBottom = 40;
  const plotW = marginLeft + marginRight + nH * pw + (nH - 1) * gapX;
  const plotH = marginTop + marginBottom + nL * ph + (nL - 1) * gapY;
  const dotR = nModes > 48 ? 1.2 : nModes > 24 ? 1.5 : 2;
  const xTicks = modeTicks(nModes);
  const axisFont = 9;

  const plot = plotPanel({
    width: plotW,
    height: plotH,
    marginLeft,
    marginRight,
    marginTop,
    marginBottom,
    fx: { domain: heads, paddingInner: gapX / (pw + gapX), paddingOuter: 0, axis: null },
    fy: { domain: layers, paddingInner: gapY / (ph + gapY), paddingOuter: 0, axis: null },
    x: { domain: [0, Math.max(1, nModes - 1)], inset: 3 },
    y: { domain: [-1, 1], inset: 2 },
    marks: [
      Plot.rect(bands, { fx: 'head', fy: 'layer', y1: 'lo', y2: 'hi', fill: BAND, fillOpacity: 0.5 }),
      Plot.ruleY([0], { stroke: '#555', strokeWidth: 0.6 }),
      Plot.line(sig, { fx: 'head', fy: 'layer', x: 'n', y: 's', stroke: SIGMA, strokeWidth: 1.1 }),
      Plot.dot(dots, { fx: 'head', fy: 'layer', x: 'n', y: 'c', r: dotR, fill: DOT, stroke: 'none' }),
      Plot.frame({ stroke: '#8c8c8c', strokeWidth: 0.6 }),
      Plot.text(bands, {
        fx: 'head',
        fy: 'layer',
        text: 'title',
        frameAnchor: 'top-left',
        textAnchor: 'start',
        lineAnchor: 'bottom',
        dy: -3,
        fontSize: 8.5,
      }),
      Plot.axisY({
        anchor: 'left',
        ticks: [-1, 0, 1],
        tickSize: 3,
        tickFormat: minusFormat(0),
        fontSize: axisFont,
        label: null,
      }),
      Plot.axisY({
        anchor: 'right',
        ticks: [-1, 0, 1],
        tickSize: 3,
        tickFormat: (v: number) => minusFormat(1, true)((v + 1) / 2),
        fontSize: axisFont,
        color: SIGMA,
        label: null,
      }),
      Plot.axisX({ anchor: 'bottom', ticks: xTicks, tickSize: 3, tickFormat: (v: number) => String(v), fontSize: axisFont, label: null }),
    ],
  });

  // Outer axis titles (Plot would repeat them on every facet or place them off-centre).
  const margin = 12;
  const head = titleBlock(input.title, input.subtitle, margin);
  const legend = legendRow(plotW, margin);
  const plotY = head.height + legend.height + 4;
  const fig = new FigureBuilder().raw(head.body).raw(`<g transform="translate(0,${num(head.height)})">${legend.body}</g>`);
  const gridTop = plotY + marginTop;
  const gridH = nL * ph + (nL - 1) * gapY;
  const gridLeft = margin + marginLeft;
  const gridW = nH * pw + (nH - 1) * gapX;
  fig.add(plot, margin, plotY);
  fig.raw(svgText(margin + 14, gridTop + gridH / 2, 'cosine c = u·v', { size: 11, anchor: 'middle', rotate: -90 }));
  fig.raw(
    svgText(margin + plotW - 12, gridTop + gridH / 2, 'σ / max σ (line)', { size: 11, anchor: 'middle', rotate: 90, fill: SIGMA }),
  );
  fig.raw(svgText(gridLeft + gridW / 2, gridTop + gridH + 34, 'mode index n (0-based, σ descending)', { size: 11, anchor: 'middle' }));
  const width = Math.max(plotW + 2 * margin, legend.width + 2 * margin, 2 * margin + textWidth(input.title, 16, true), 2 * margin + textWidth(input.subtitle ?? '', 12));
  return fig.toSvg(width, plotY + plotH + margin);
}

/** 0, a round step, …, ≤ n−1 (at most 4 ticks: panels are narrow). */
function modeTicks(n: number): number[] {
  const last = Math.max(1, n - 1);
  const steps = [1, 2, 5, 10, 20, 25, 40, 50, 100, 200, 250, 500, 1000];
  const step = steps.find((s) => last / s <= 3.5) ?? Math.ceil(last / 2);
  const out: number[] = [];
  for (let t = 0; t <= last; t += step) out.push(t);
  return out;
}

/** The key: dots, band, σ line, C̄; wraps onto several lines within `width`. */
function legendRow(maxWidth: number, x0: number): { width: number; height: number; body: string } {
  const size = 11;
  const items: { sym: string; text: string }[] = [
    { sym: `<circle cx="6" cy="-4" r="3" fill="${DOT}"/>`, text: 'cosine c = u·v of each mode (left axis)' },
    { sym: `<rect x="0" y="-9" width="14" height="10" fill="${BAND}" fill-opacity="0.5" stroke="none"/>`, text: '95% chance band of one mode (random unit vectors)' },
    { sym: `<line x1="0" y1="-4" x2="14" y2="-4" stroke="${SIGMA}" stroke-width="1.6"/>`, text: 'σ / max σ (right axis)' },
    { sym: '', text: 'C̄ = σ-weighted cosine Σσc / Σσ' },
  ];
  const itemWidth = (it: { sym: string; text: string }) => (it.sym ? 20 : 0) + textWidth(it.text, size) + 22;
  // Never narrower than the widest item, so nothing is clipped in small figures.
  const width = Math.max(maxWidth, ...items.map(itemWidth));
  const parts: string[] = [];
  let x = x0;
  let y = 14;
  for (const it of items) {
    const w = itemWidth(it);
    if (x > x0 && x + w > x0 + width) {
      x = x0;
      y += 17;
    }
    if (it.sym) parts.push(`<g transform="translate(${num(x)},${num(y)})">${it.sym}</g>`);
    parts.push(svgText(x + (it.sym ? 20 : 0), y, it.text, { size, fill: '#222' }));
    x += w;
  }
  return { width, height: y + 8, body: parts.join('') };
}
