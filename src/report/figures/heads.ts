/**
 * Per-head small multiples (rows = layers, columns = heads). Each panel shows, for every
 * singular mode n of that head's M = W_qᵀW_k (docs/method.md §2–3):
 *   - the cosine c_n = u_n·v_n as a dot (left axis, −1…1),
 *   - the per-mode 95 % chance band for random unit vectors as a grey band, and a zero rule,
 *   - σ_n / σ_max as a line on the right-hand axis (0…1, drawn over the same panel height),
 * and is titled `L{l} H{h}  C̄={σ-weighted cosine}`. Only the outer panels carry axes.
 *
 * Written as plain SVG rather than through Observable Plot: a ViT-H has 512 panels and ~40 000
 * dots, which Plot renders as one DOM element each (seconds in linkedom, then seconds more in
 * librsvg). Here every mark type is ONE <path> for the whole grid (bands, zero rules, σ lines,
 * frames, ticks) and the dots are zero-length round-capped segments of one path, so the SVG
 * is a few hundred kB and rasterises in a fraction of the time. The geometry is Plot's
 * (same panel size, gaps, insets and tick positions), so the figure looks as before.
 */
import { FigureBuilder, OKABE_ITO, num, svgText, textWidth, titleBlock } from '../svg.js';
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
const AXIS_FONT = 9;
/** Plot's default insets of the x and y ranges inside each panel (px). */
const INSET_X = 3;
const INSET_Y = 2;

/** One decimal: 0.05 px at the PNG's 2× scale is invisible, and it halves the SVG. */
function c1(x: number): string {
  const r = Math.round(x * 10) / 10;
  return String(Object.is(r, -0) ? 0 : r);
}

export function headsFigure(input: HeadsInput): string {
  if (input.layers.length === 0) throw new Error('headsFigure: no layers');
  const layerSet = new Set<number>();
  const headSet = new Set<number>();
  let nModes = 1;
  for (const { layer, heads } of input.layers) {
    layerSet.add(layer);
    for (const h of heads) {
      headSet.add(h.head);
      const n = h.cosine.length;
      if (h.sigma.length !== n) throw new Error(`headsFigure: L${layer} H${h.head} has ${h.sigma.length} σ but ${n} cosines`);
      nModes = Math.max(nModes, n);
    }
  }
  const layers = [...layerSet].sort((a, b) => a - b);
  const heads = [...headSet].sort((a, b) => a - b);
  const row = new Map(layers.map((l, i) => [l, i]));
  const col = new Map(heads.map((h, i) => [h, i]));
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
  const lastMode = Math.max(1, nModes - 1);
  const xTicks = modeTicks(nModes);
  const fmt = minusFormat(2);

  // Panel geometry in the grid group's coordinates (its origin is the plot's top-left corner).
  const left = (c: number) => marginLeft + c * (pw + gapX);
  const top = (r: number) => marginTop + r * (ph + gapY);
  const xAt = (x0: number, n: number) => x0 + INSET_X + ((pw - 2 * INSET_X) * n) / lastMode;
  const yAt = (y0: number, v: number) => y0 + INSET_Y + ((ph - 2 * INSET_Y) * (1 - v)) / 2; // v ∈ [−1, 1]

  const bands: string[] = [];
  const rules: string[] = [];
  const lines: string[] = [];
  const dots: string[] = [];
  const frames: string[] = [];
  const titles: string[] = [];
  for (const { layer, heads: hs } of input.layers) {
    const y0 = top(row.get(layer)!);
    for (const h of hs) {
      const x0 = left(col.get(h.head)!);
      const n = h.cosine.length;
      const lo = yAt(y0, h.band95.hi);
      bands.push(`M${c1(x0)},${c1(lo)}h${pw}v${c1(yAt(y0, h.band95.lo) - lo)}h-${pw}z`);
      rules.push(`M${c1(x0)},${c1(yAt(y0, 0))}h${pw}`);
      let line = '';
      let dot = '';
      let smax = 0;
      for (let i = 0; i < n; i++) if (Number.isFinite(h.sigma[i])) smax = Math.max(smax, Math.abs(h.sigma[i]));
      // σ/σ_max ∈ [0, 1] drawn on the panel's −1…1 scale (y = 2·σ/σ_max − 1); a non-finite σ breaks the line.
      if (smax > 0) {
        let pen = 'M';
        for (let i = 0; i < n; i++) {
          const s = (2 * h.sigma[i]) / smax - 1;
          if (!Number.isFinite(s)) {
            pen = 'M';
            continue;
          }
          line += `${pen}${c1(xAt(x0, i))},${c1(yAt(y0, s))}`;
          pen = 'L';
        }
      }
      for (let i = 0; i < n; i++) {
        const c = h.cosine[i];
        if (Number.isFinite(c)) dot += `M${c1(xAt(x0, i))},${c1(yAt(y0, c))}h0`;
      }
      if (line) lines.push(`<path d="${line}"/>`);
      if (dot) dots.push(`<path d="${dot}"/>`);
      frames.push(`M${x0},${y0}h${pw}v${ph}h-${pw}z`);
      const w = h.weightedCosine;
      titles.push(svgText(x0, y0 - 3, `L${layer} H${h.head}  C̄=${Number.isFinite(w) ? fmt(w) : 'n/a'}`));
    }
  }

  // Axes on the outer panels: left (cosine) on the first column, right (σ/σ_max) on the last, x on the bottom row.
  const axisTicks: string[] = [];
  const sigmaTicks: string[] = [];
  const axisLabels: string[] = [];
  const sigmaLabels: string[] = [];
  const yTick = minusFormat(0);
  const sTick = minusFormat(1, true);
  for (let r = 0; r < nL; r++) {
    const y0 = top(r);
    const xl = left(0);
    const xr = left(nH - 1) + pw;
    for (const v of [-1, 0, 1]) {
      const y = c1(yAt(y0, v));
      axisTicks.push(`M${xl},${y}h-3`);
      axisLabels.push(`<text x="${xl - 9}" y="${y}" dy="0.32em">${yTick(v)}</text>`);
      sigmaTicks.push(`M${xr},${y}h3`);
      sigmaLabels.push(`<text x="${xr + 9}" y="${y}" dy="0.32em">${sTick((v + 1) / 2)}</text>`);
    }
  }
  const xLabels: string[] = [];
  const yb = top(nL - 1) + ph;
  for (let c = 0; c < nH; c++) {
    for (const t of xTicks) {
      const x = c1(xAt(left(c), t));
      axisTicks.push(`M${x},${yb}v3`);
      xLabels.push(`<text x="${x}" y="${yb + 9}" dy="0.71em">${t}</text>`);
    }
  }

  const grid =
    `<path d="${bands.join('')}" fill="${BAND}" fill-opacity="0.5"/>` +
    `<path d="${rules.join('')}" stroke="#555" stroke-width="0.6" fill="none"/>` +
    `<g stroke="${SIGMA}" stroke-width="1.1" stroke-linejoin="round" stroke-linecap="round" fill="none">${lines.join('')}</g>` +
    // Zero-length round-capped segments: a dot of diameter stroke-width each (SVG 1.1 §11.4).
    `<g stroke="${DOT}" stroke-width="${num(2 * dotR)}" stroke-linecap="round" fill="none">${dots.join('')}</g>` +
    `<path d="${frames.join('')}" stroke="#8c8c8c" stroke-width="0.6" fill="none"/>` +
    `<g font-size="8.5">${titles.join('')}</g>` +
    `<path d="${axisTicks.join('')}" stroke="black" fill="none"/>` +
    `<path d="${sigmaTicks.join('')}" stroke="${SIGMA}" fill="none"/>` +
    `<g font-size="${AXIS_FONT}" font-variant="tabular-nums" text-anchor="end">${axisLabels.join('')}</g>` +
    `<g font-size="${AXIS_FONT}" font-variant="tabular-nums" fill="${SIGMA}">${sigmaLabels.join('')}</g>` +
    `<g font-size="${AXIS_FONT}" font-variant="tabular-nums" text-anchor="middle">${xLabels.join('')}</g>`;

  // Outer axis titles, centred on the grid of panels.
  const margin = 12;
  const head = titleBlock(input.title, input.subtitle, margin);
  const legend = legendRow(plotW, margin);
  const plotY = head.height + legend.height + 4;
  const fig = new FigureBuilder().raw(head.body).raw(`<g transform="translate(0,${num(head.height)})">${legend.body}</g>`);
  const gridTop = plotY + marginTop;
  const gridH = nL * ph + (nL - 1) * gapY;
  const gridLeft = margin + marginLeft;
  const gridW = nH * pw + (nH - 1) * gapX;
  fig.raw(`<g transform="translate(${margin},${num(plotY)})">${grid}</g>`);
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
