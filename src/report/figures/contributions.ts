/**
 * `contributions` figure (paper figure 5): one head's modes on one image.
 *
 *   [photo: the model's crop]  [mode tiles: query map red, key map cyan over the dimmed photo]
 *   [colour key            ]  [... in rows of up to four, ranked by contribution          ]
 *   [ranked mode contributions (bars; the rest as one line)         ] [bias terms (own axis)]
 *
 * Tiles come in as image hrefs (PNG data URIs made by the job), so the SVG is deterministic
 * for given tiles. Bias terms get their own panel and axis: the key bias is often larger than
 * any single mode and would flatten the mode bars. Positive bars red, negative blue, as in the
 * project's diverging maps.
 */
import * as Plot from '@observablehq/plot';
import { FigureBuilder, escapeXml, num, plotPanel, svgText, textWidth, titleBlock } from '../plot.js';

export interface ContributionTile {
  /** e.g. "M3" (mode index, 0-based). */
  label: string;
  contribution: number;
  /** contribution / Σ|contributions| (signed). */
  share: number;
  cosine: number;
  /** Overlay image (query red, key cyan, white both); null: not available. */
  href: string | null;
}

export interface ContributionsFigureInput {
  title: string;
  subtitle?: string;
  /** The model's crop of the photo (PNG data URI), null when there is none (pixel input). */
  photo: string | null;
  /** Patch grid [rows, cols] (for the query-patch marker). */
  grid: [number, number];
  /** Patch (row, col) of the chosen query, marked on the photo and the tiles. */
  queryPatch?: [number, number];
  /** The ranked modes drawn as tiles (largest contribution first). */
  tiles: ContributionTile[];
  /** Ranked bars (the top modes). */
  bars: { label: string; value: number }[];
  /** The modes not drawn as bars: how many, their summed contribution and share (a line over the bars, not a bar that would flatten them). */
  rest?: { count: number; value: number; share: number };
  /** Bias terms (key bias, relative position ...): their own panel. */
  terms: { label: string; value: number }[];
  /** Text under the figure. */
  note?: string;
}

/** 3 significant digits, true minus sign. */
function sig(v: number): string {
  if (!Number.isFinite(v)) return '';
  const s = String(Number(Math.abs(v).toPrecision(3)));
  return (v < 0 && Number(s) !== 0 ? '\u2212' : '') + s;
}

/** Greedy word wrap to `width` px. */
function wrap(text: string, width: number, size: number): string[] {
  const lines: string[] = [];
  let cur = '';
  for (const w of text.split(' ')) {
    const next = cur ? `${cur} ${w}` : w;
    if (cur && textWidth(next, size) > width) {
      lines.push(cur);
      cur = w;
    } else cur = next;
  }
  if (cur) lines.push(cur);
  return lines;
}

const POS = '#b2182b';
const NEG = '#2166ac';

/** The colour key of the overlays: query (x) in red, key (y) in cyan, white where both are high. */
function colourKey(x0: number, y0: number, size: number): { svg: string; height: number; width: number } {
  const n = 6;
  const c = size / n;
  const parts: string[] = [];
  const hex = (v: number) => Math.round(v * 255).toString(16).padStart(2, '0');
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      const q = i / (n - 1), k = (n - 1 - j) / (n - 1);
      parts.push(`<rect x="${num(x0 + 14 + i * c)}" y="${num(y0 + j * c)}" width="${num(c + 0.3)}" height="${num(c + 0.3)}" fill="#${hex(q)}${hex(k)}${hex(k)}"/>`);
    }
  parts.push(`<rect x="${num(x0 + 14)}" y="${num(y0)}" width="${num(size)}" height="${num(size)}" fill="none" stroke="#666" stroke-width="0.5"/>`);
  parts.push(svgText(x0 + 14 + size / 2, y0 + size + 12, 'query x·u →', { size: 10, anchor: 'middle', fill: '#b2182b' }));
  parts.push(svgText(x0 + 8, y0 + size / 2, 'key x·v →', { size: 10, anchor: 'middle', rotate: -90, fill: '#008b9a' }));
  parts.push(svgText(x0 + 14 + size / 2, y0 + size + 25, 'each map: 0 → its max', { size: 9, anchor: 'middle', fill: '#555' }));
  return { svg: parts.join(''), height: size + 30, width: 14 + size };
}

function barPanel(bars: { label: string; value: number; fill: string }[], width: number, height: number, yLabel: string, rotate: boolean) {
  const vals = bars.map((b) => b.value);
  const lo = Math.min(0, ...vals), hi = Math.max(0, ...vals);
  const pad = 0.08 * Math.max(1e-12, hi - lo);
  return plotPanel({
    width,
    height,
    marginLeft: 56,
    marginRight: 8,
    marginTop: 18,
    marginBottom: rotate ? 44 : 28,
    style: { fontSize: '10px' },
    x: { domain: bars.map((b) => b.label), label: null, padding: 0.2, tickRotate: rotate ? -40 : 0 },
    y: { domain: [lo - (lo < 0 ? pad : 0), hi + (hi > 0 ? pad : 0)], label: null, grid: true, tickFormat: sig, ticks: 5 },
    marks: [
      Plot.barY(bars, { x: 'label', y: 'value', fill: (d: { fill: string }) => d.fill }),
      Plot.ruleY([0], { stroke: '#444', strokeWidth: 0.8 }),
      Plot.text([yLabel], { frameAnchor: 'top-left', dy: -14, dx: -50, fontSize: 10, textAnchor: 'start', fill: '#333' }),
    ],
  });
}

export function contributionsFigure(input: ContributionsFigureInput): string {
  const T = 112; // tile side
  const gap = 8;
  const margin = 12;
  const capH = 38;
  // Rows of at most four tiles, as even as possible (6 → 3 + 3, 7 → 4 + 3): no half-empty row.
  const n = input.tiles.length;
  const cols = Math.max(1, Math.ceil(n / Math.ceil(n / 4)));
  const rows = Math.ceil(input.tiles.length / cols);
  const head = titleBlock(input.title, input.subtitle, margin);
  const fig = new FigureBuilder().raw(head.body);
  const top = Math.max(margin, head.height) + 2;

  const [gr, gc] = input.grid;
  const marker = (x0: number, y0: number) => {
    if (!input.queryPatch) return '';
    const [r, c] = input.queryPatch;
    return `<rect x="${num(x0 + (c * T) / gc)}" y="${num(y0 + (r * T) / gr)}" width="${num(T / gc)}" height="${num(T / gr)}" fill="none" stroke="#ffd700" stroke-width="1.5"/>`;
  };
  const image = (x0: number, y0: number, href: string | null, missing: string) =>
    href
      ? `<image x="${num(x0)}" y="${num(y0)}" width="${T}" height="${T}" preserveAspectRatio="none" href="${escapeXml(href)}"/>`
      : `<rect x="${num(x0)}" y="${num(y0)}" width="${T}" height="${T}" fill="#e6e6e6"/>` + svgText(x0 + T / 2, y0 + T / 2, missing, { size: 9, anchor: 'middle', fill: '#777', baseline: 'middle' });

  // Left column: the photo, then the colour key.
  fig.raw(image(margin, top, input.photo, 'no photo') + marker(margin, top));
  fig.raw(svgText(margin + T / 2, top + T + 12, input.queryPatch ? `model's crop, query ${input.queryPatch.join(',')}` : "model's crop", { size: 9, anchor: 'middle', fill: '#333' }));
  const key = colourKey(margin + (T - 14 - 72) / 2, top + T + capH, 72);
  fig.raw(key.svg);
  const leftH = T + capH + key.height;

  // Mode tiles, ranked.
  const tx = margin + T + 2 * gap;
  input.tiles.forEach((t, i) => {
    const x0 = tx + (i % cols) * (T + gap);
    const y0 = top + Math.floor(i / cols) * (T + capH);
    fig.raw(image(x0, y0, t.href, 'unavailable') + (t.href ? marker(x0, y0) : ''));
    fig.raw(svgText(x0, y0 + T + 11, `${i + 1}. ${t.label}`, { size: 9.5, weight: 'bold', fill: '#111' }));
    fig.raw(svgText(x0, y0 + T + 22, `C=${sig(t.contribution)} (${sig(100 * t.share)} %)`, { size: 9, fill: '#333' }));
    fig.raw(svgText(x0, y0 + T + 33, `cosine c=${sig(t.cosine)}`, { size: 9, fill: '#555' }));
  });
  const tilesW = cols * T + (cols - 1) * gap;
  const tilesH = rows * (T + capH);
  let y = top + Math.max(leftH, tilesH) + gap;

  // Bars: modes (wide), bias terms (own axis).
  const termsW = input.terms.length ? 56 + 8 + Math.max(...input.terms.map((b) => Math.max(44, textWidth(b.label, 10) + 14))) * input.terms.length : 0;
  const width = Math.max(tx + tilesW + margin, 2 * margin + 260 + (termsW ? termsW + gap : 0), textWidth(input.title, 16, true) + 2 * margin, textWidth(input.subtitle ?? '', 12) + 2 * margin);
  // The bars fill whatever width the tiles or the title need.
  const modesW = width - 2 * margin - (termsW ? termsW + gap : 0);
  const band = (modesW - 64) / Math.max(1, input.bars.length);
  const rotate = input.bars.some((b) => textWidth(b.label, 10) > 0.9 * band);
  const barH = 190;
  const modes = barPanel(
    input.bars.map((b) => ({ label: b.label, value: b.value, fill: b.value >= 0 ? POS : NEG })),
    modesW,
    barH,
    'mode contribution Cₙ (ranked)',
    rotate,
  );
  if (input.rest && input.rest.count > 0) {
    const r = input.rest;
    fig.raw(svgText(margin + 6, y + 10, `not drawn: ${r.count} more modes, Σ C = ${sig(r.value)} (${sig(100 * r.share)} %)`, { size: 10, fill: '#333' }));
    y += 14;
  }
  fig.add(modes, margin, y);
  if (input.terms.length) {
    const terms = barPanel(
      input.terms.map((b) => ({ label: b.label, value: b.value, fill: b.value >= 0 ? POS : NEG })),
      termsW,
      barH,
      'bias terms',
      false,
    );
    fig.add(terms, margin + modesW + gap, y);
  }
  y += barH;
  const W = width;
  if (input.note) {
    y += 4;
    for (const line of wrap(input.note, W - 2 * margin, 9)) {
      fig.raw(svgText(margin, y + 8, line, { size: 9, fill: '#555' }));
      y += 12;
    }
  }
  return fig.toSvg(W, y + margin);
}
