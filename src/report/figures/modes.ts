/**
 * The paper's optimal-attention-image figure (docs/method.md §5): one row per (mode, sign), labelled
 * `L{l} H{h} M{m}` with the mode's cosine (and relative cosine when the anisotropy baseline is
 * known), then the top images of that mode: the query map in red and the key map in cyan over
 * the dimmed image (white where both are high) — or, with style 'separate', the two maps side
 * by side as the official code draws them. Small squares mark the patch of each map's maximum.
 * Tiles come in as image hrefs (PNG data URIs), so the SVG is deterministic for given tiles.
 */
import { FigureBuilder, escapeXml, num, svgText, textWidth, titleBlock } from '../plot.js';

export interface ModesTile {
  /** Overlay (style 'overlay') or query map (style 'separate'); null: image unavailable. */
  href: string | null;
  /** Key map (style 'separate'). */
  hrefKey?: string | null;
  caption?: string;
  /** The image's name (class or file stem), drawn above the caption. */
  name?: string;
  /** Patch index (raster order) of the maxima, for the markers. */
  qToken?: number;
  kToken?: number;
}

export interface ModesRow {
  /** e.g. `L3 H5 M0 +` */
  label: string;
  /** Further lines under the label (cosine, relative cosine, σ). */
  lines: string[];
  tiles: ModesTile[];
}

export interface ModesFigureInput {
  title: string;
  subtitle?: string;
  rows: ModesRow[];
  style: 'overlay' | 'separate';
  /** Patch grid [rows, cols] (markers); omit for no markers. */
  grid?: [number, number];
  /** Displayed tile size in px (default 96). */
  tileSize?: number;
  /** Text under the figure. */
  note?: string;
}

const Q_COLOUR = '#ff2a2a';
const K_COLOUR = '#00e5ff';

export function modesFigure(input: ModesFigureInput): string {
  if (input.rows.length === 0) throw new Error('modesFigure: no rows');
  const T = input.tileSize ?? 96;
  const margin = 12;
  const gap = 6;
  const pairGap = 2;
  const captionH = input.rows.some((r) => r.tiles.some((t) => t.name)) ? 25 : 13;
  const rowGap = 10;
  const labelW = Math.max(110, ...input.rows.map((r) => Math.max(textWidth(r.label, 12, true), ...r.lines.map((l) => textWidth(l, 10))) + 12));
  const perImage = input.style === 'separate' ? 2 * T + pairGap : T;
  const maxTiles = Math.max(...input.rows.map((r) => r.tiles.length), 1);
  const head = titleBlock(input.title, input.subtitle, margin);
  const fig = new FigureBuilder().raw(head.body);
  let y = Math.max(margin, head.height) + 4;

  // Legend.
  const legend: [string, string, string][] =
    input.style === 'separate'
      ? [
          [Q_COLOUR, 'query map x·u (left)', '#000'],
          [K_COLOUR, 'key map x·v (right)', '#000'],
        ]
      : [
          [Q_COLOUR, 'query map x·u', '#000'],
          [K_COLOUR, 'key map x·v', '#000'],
          ['#ffffff', 'both high', '#000'],
        ];
  let lx = margin;
  for (const [colour, text] of legend) {
    fig.raw(`<rect x="${lx}" y="${num(y)}" width="10" height="10" fill="${colour}" stroke="#666" stroke-width="0.5"/>`);
    fig.raw(svgText(lx + 14, y + 9, text, { size: 10, fill: '#333' }));
    lx += 14 + textWidth(text, 10) + 16;
  }
  if (input.grid) {
    fig.raw(`<rect x="${lx}" y="${num(y)}" width="10" height="10" fill="none" stroke="#333" stroke-width="1"/>`);
    fig.raw(svgText(lx + 14, y + 9, 'patch of the maximum', { size: 10, fill: '#333' }));
    lx += 14 + textWidth('patch of the maximum', 10) + 16;
  }
  y += 20;

  const marker = (x0: number, y0: number, token: number | undefined, colour: string) => {
    if (token === undefined || !input.grid) return '';
    const [gr, gc] = input.grid;
    const r = Math.floor(token / gc);
    const c = token % gc;
    const cw = T / gc;
    const ch = T / gr;
    return `<rect x="${num(x0 + c * cw)}" y="${num(y0 + r * ch)}" width="${num(cw)}" height="${num(ch)}" fill="none" stroke="${colour}" stroke-width="1.5"/>`;
  };
  const tile = (x0: number, y0: number, href: string | null | undefined) =>
    href
      ? `<image x="${num(x0)}" y="${num(y0)}" width="${T}" height="${T}" preserveAspectRatio="none" href="${escapeXml(href)}"/>`
      : `<rect x="${num(x0)}" y="${num(y0)}" width="${T}" height="${T}" fill="#e6e6e6"/>` + svgText(x0 + T / 2, y0 + T / 2, 'unavailable', { size: 9, anchor: 'middle', fill: '#777', baseline: 'middle' });

  for (const row of input.rows) {
    fig.raw(svgText(margin, y + 13, row.label, { size: 12, weight: 'bold', fill: '#000' }));
    row.lines.forEach((l, i) => fig.raw(svgText(margin, y + 28 + i * 13, l, { size: 10, fill: '#333' })));
    row.tiles.forEach((t, i) => {
      const x0 = margin + labelW + i * (perImage + gap);
      if (input.style === 'separate') {
        fig.raw(tile(x0, y, t.href) + (t.href ? marker(x0, y, t.qToken, Q_COLOUR) : ''));
        fig.raw(tile(x0 + T + pairGap, y, t.hrefKey) + (t.hrefKey ? marker(x0 + T + pairGap, y, t.kToken, K_COLOUR) : ''));
      } else {
        fig.raw(tile(x0, y, t.href));
        if (t.href) {
          if (t.qToken !== undefined && t.qToken === t.kToken) fig.raw(marker(x0, y, t.qToken, '#ffffff'));
          else fig.raw(marker(x0, y, t.qToken, Q_COLOUR) + marker(x0, y, t.kToken, K_COLOUR));
        }
      }
      let cy = y + T + 10;
      if (t.name) {
        fig.raw(svgText(x0 + perImage / 2, cy, fitText(t.name, perImage, 9), { size: 9, anchor: 'middle', fill: '#000' }));
        cy += 12;
      }
      if (t.caption) fig.raw(svgText(x0 + perImage / 2, cy, t.caption, { size: 9, anchor: 'middle', fill: '#555' }));
    });
    if (row.tiles.length === 0) fig.raw(svgText(margin + labelW, y + T / 2, 'no images', { size: 10, fill: '#777', baseline: 'middle' }));
    y += Math.max(T + captionH, 28 + row.lines.length * 13) + rowGap;
  }
  if (input.note) {
    fig.raw(svgText(margin, y + 8, input.note, { size: 9, fill: '#555' }));
    y += 16;
  }
  const width = Math.max(
    margin * 2 + labelW + maxTiles * perImage + (maxTiles - 1) * gap,
    lx + margin,
    textWidth(input.title, 16, true) + 2 * margin,
    input.subtitle ? textWidth(input.subtitle, 12) + 2 * margin : 0,
    input.note ? textWidth(input.note, 9) + 2 * margin : 0,
  );
  return fig.toSvg(width, y + margin - rowGap);
}

/** `text`, shortened with an ellipsis to fit `width` px at `size`. */
function fitText(text: string, width: number, size: number): string {
  if (textWidth(text, size) <= width) return text;
  let t = text;
  while (t.length > 1 && textWidth(`${t}…`, size) > width) t = t.slice(0, -1);
  return `${t}…`;
}
