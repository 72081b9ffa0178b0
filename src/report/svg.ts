/**
 * Plain SVG pieces shared by every figure: text, numbers, title blocks and the figure builder
 * that writes a standalone, deterministic SVG (xmlns, white background, DejaVu Sans so that the
 * PNG made by librsvg shows the same text). Nothing here loads Observable Plot or a DOM, so a
 * figure written as plain SVG (heads, heatmap) costs no Plot/linkedom start-up (~0.3 s).
 * Figures drawn with Plot use `plot.ts`, which re-exports all of this.
 *
 * Panels are embedded as `<g transform="translate(x,y)">` groups rather than nested `<svg>`
 * elements: Plot's own stylesheet (`height: auto; max-width: 100%`) would resize nested SVGs in
 * browsers, and groups survive every editor (Inkscape, Illustrator) unchanged.
 */

export const FONT_FAMILY = 'DejaVu Sans, sans-serif';
export const SVG_NS = 'http://www.w3.org/2000/svg';

/**
 * Okabe & Ito (2008) colour-blind-safe palette, ordered for lines on white (the yellow
 * #F0E442 is last: it is hard to see on white).
 */
export const OKABE_ITO = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000', '#F0E442'] as const;

/** Plot's filled symbol names, to tell apart curves that share a colour. */
export const SYMBOLS = ['circle', 'square', 'triangle', 'diamond', 'star', 'cross', 'wye'] as const;

/** A rendered piece of a figure: an SVG fragment drawn in [0, width] × [0, height]. */
export interface Panel {
  width: number;
  height: number;
  /** SVG markup (no outer <svg>), in the panel's own coordinates. */
  body: string;
}

/** Escapes text for SVG content and attribute values. */
export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Formats a number for an SVG attribute: at most 2 decimals, no trailing zeros, no "-0". */
export function num(x: number): string {
  const r = Math.round(x * 100) / 100;
  return String(Object.is(r, -0) ? 0 : r);
}

/**
 * Approximate rendered width of `s` in DejaVu Sans at `fontSize` (px). Good to a few percent
 * for Latin text and digits; used only for layout (legend columns, label room).
 */
export function textWidth(s: string, fontSize: number, bold = false): number {
  let em = 0;
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (c >= 0x300 && c <= 0x36f) continue; // combining marks
    if ('iljI.,:;|!\'`'.includes(ch)) em += 0.3;
    else if (' ()[]{}ftr-/'.includes(ch)) em += 0.38;
    else if ('mwMW@%'.includes(ch)) em += 0.92;
    else if (ch >= 'A' && ch <= 'Z') em += 0.72;
    else em += 0.62;
  }
  return em * fontSize * (bold ? 1.16 : 1);
}

export interface TextOptions {
  size?: number;
  weight?: 'normal' | 'bold';
  anchor?: 'start' | 'middle' | 'end';
  fill?: string;
  /** Rotation in degrees about (x, y). */
  rotate?: number;
  baseline?: 'alphabetic' | 'middle' | 'hanging';
}

/** An SVG <text> element. */
export function svgText(x: number, y: number, text: string, o: TextOptions = {}): string {
  const attrs = [`x="${num(x)}"`, `y="${num(y)}"`];
  if (o.size !== undefined) attrs.push(`font-size="${num(o.size)}"`);
  if (o.weight === 'bold') attrs.push('font-weight="bold"');
  attrs.push(`text-anchor="${o.anchor ?? 'start'}"`);
  if (o.fill) attrs.push(`fill="${o.fill}"`);
  if (o.baseline === 'middle') attrs.push('dy="0.35em"');
  else if (o.baseline === 'hanging') attrs.push('dy="0.8em"');
  if (o.rotate) attrs.push(`transform="rotate(${num(o.rotate)},${num(x)},${num(y)})"`);
  return `<text ${attrs.join(' ')}>${escapeXml(text)}</text>`;
}

export interface HeaderBlock {
  height: number;
  body: string;
}

/** Title (bold, 16 px) and optional subtitle (12 px, grey) at the top-left of a figure. */
export function titleBlock(title: string | undefined, subtitle: string | undefined, x = 16, top = 10): HeaderBlock {
  let y = top;
  const parts: string[] = [];
  if (title) {
    y += 16;
    parts.push(svgText(x, y, title, { size: 16, weight: 'bold', fill: '#000' }));
    y += 4;
  }
  if (subtitle) {
    y += 13;
    parts.push(svgText(x, y, subtitle, { size: 12, fill: '#444' }));
    y += 3;
  }
  return { height: y + (parts.length ? 8 : 0), body: parts.join('') };
}

/** Builds one figure from panels and raw SVG pieces placed at absolute positions. */
export class FigureBuilder {
  private parts: string[] = [];
  /** Whether a panel (Plot output, with its counter ids and long decimals) was added. */
  private fromPlot = false;

  /** Places a panel with its top-left corner at (x, y). */
  add(panel: Panel, x: number, y: number): this {
    this.parts.push(`<g transform="translate(${num(x)},${num(y)})">${panel.body}</g>`);
    this.fromPlot = true;
    return this;
  }

  /** Adds raw SVG markup in figure coordinates. */
  raw(svg: string): this {
    this.parts.push(svg);
    return this;
  }

  /** The standalone SVG document. */
  toSvg(width: number, height: number, options: { fontSize?: number } = {}): string {
    const W = Math.ceil(width);
    const H = Math.ceil(height);
    const open =
      `<svg xmlns="${SVG_NS}" xml:space="preserve" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
      `font-family="${FONT_FAMILY}" font-size="${options.fontSize ?? 10}" fill="black">`;
    const style = '<style>text, tspan { white-space: pre; }</style>';
    const bg = `<rect x="0" y="0" width="${W}" height="${H}" fill="white"/>`;
    const svg = open + style + bg + this.parts.join('') + '</svg>\n';
    // Raw pieces are written deterministically by their callers; only Plot output needs fixing
    // (a regex pass over a large figure is not free).
    return this.fromPlot ? deterministic(svg) : svg;
  }
}

/**
 * Makes Plot's counter-based ids (plot-clip-N, plot-marker-N, plot-pattern-N) depend only on
 * the order in which they appear, and shortens long decimals in attribute values.
 */
export function deterministic(svg: string): string {
  const ids = new Map<string, string>();
  let next = 0;
  let out = svg.replace(/plot-(clip|marker|pattern)-\d+/g, (m, kind: string) => {
    let r = ids.get(m);
    if (r === undefined) {
      r = `qk-${kind}-${++next}`;
      ids.set(m, r);
    }
    return r;
  });
  // 49.99999999999999 → 50 ; only inside attribute values.
  out = out.replace(/="([^"]*)"/g, (m, v: string) =>
    /\d\.\d{4,}/.test(v) ? `="${v.replace(/-?\d+\.\d{4,}(e-?\d+)?/g, (x) => num(Number(x)))}"` : m,
  );
  return out;
}

