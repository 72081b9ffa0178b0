/**
 * Observable Plot in Node: renders Plot figures against a jsdom document and turns them into
 * standalone, deterministic SVG (xmlns, white background, DejaVu Sans so that the PNG made by
 * librsvg shows the same text), and composes several panels into one figure (io/png.ts rasterises it).
 *
 * Panels are embedded as `<g transform="translate(x,y)">` groups rather than nested `<svg>`
 * elements: Plot's own stylesheet (`height: auto; max-width: 100%`) would resize nested SVGs in
 * browsers, and groups survive every editor (Inkscape, Illustrator) unchanged.
 *
 * Determinism: Plot numbers clip paths, markers and patterns with global counters
 * (`plot-clip-3`); these ids are renumbered in order of appearance so the same input always
 * gives byte-identical SVG. Plot's class names (`plot-d6a7b5`) are content hashes and its
 * `<style>` element is dropped (its only effect that matters, `white-space: pre`, is set on
 * the outer SVG).
 */
import * as Plot from '@observablehq/plot';
import { parseHTML } from 'linkedom';

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

// linkedom, not jsdom: Plot only needs createElementNS and friends, and jsdom's import alone
// costs ~0.7 s of start-up for every command that draws a figure.
let win: ReturnType<typeof parseHTML> | null = null;
function getWindow(): ReturnType<typeof parseHTML> {
  if (!win) win = parseHTML('<!doctype html><html><head></head><body></body></html>');
  return win;
}

/** Serialises an element as XML without the redundant xmlns on the fragment root. */
function serialize(el: Element): string {
  const s = el.outerHTML;
  return s.replace(/^(<[a-zA-Z]+) xmlns="http:\/\/www\.w3\.org\/2000\/svg"/, '$1');
}

/** Attributes of Plot's root <svg> that its marks inherit. */
const INHERITED = ['fill', 'font-size', 'font-variant', 'font-weight', 'text-anchor', 'style'];

/**
 * Renders Plot options as a panel. The plot must not ask for a title, subtitle, caption or
 * legend (Plot would wrap it in an HTML <figure>); figures draw those themselves.
 */
export function plotPanel(options: Plot.PlotOptions): Panel {
  const w = getWindow();
  const el = Plot.plot({ ...options, document: w.document as unknown as Document });
  return elementToPanel(el as unknown as Element);
}

function elementToPanel(el: Element): Panel {
  if (el.tagName.toLowerCase() !== 'svg') {
    throw new Error(`Plot returned <${el.tagName.toLowerCase()}>, not <svg>: do not use title, subtitle, caption or legend options in panels`);
  }
  const width = Number(el.getAttribute('width'));
  const height = Number(el.getAttribute('height'));
  const doc = el.ownerDocument;
  const g = doc.createElementNS(SVG_NS, 'g');
  for (const name of INHERITED) {
    const v = el.getAttribute(name);
    if (v !== null) g.setAttribute(name, v);
  }
  for (const child of Array.from(el.childNodes)) {
    if ((child as Element).tagName?.toLowerCase() === 'style') continue;
    g.appendChild(child);
  }
  return { width, height, body: serialize(g) };
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

  /** Places a panel with its top-left corner at (x, y). */
  add(panel: Panel, x: number, y: number): this {
    this.parts.push(`<g transform="translate(${num(x)},${num(y)})">${panel.body}</g>`);
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
    return deterministic(open + style + bg + this.parts.join('') + '</svg>\n');
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

/** A standalone SVG of a single Plot (no title), with white background and DejaVu Sans. */
export function plotSvg(options: Plot.PlotOptions): string {
  const p = plotPanel(options);
  return new FigureBuilder().add(p, 0, 0).toSvg(p.width, p.height);
}

export interface GridOptions {
  title?: string;
  subtitle?: string;
  /** Panels in row-major order. */
  panels: Panel[];
  columns: number;
  /** Space between panels (px). */
  gap?: number;
  /** Outer margin (px). */
  margin?: number;
}

/**
 * Composes panels into a grid with a title: each column is as wide as its widest panel and
 * each row as tall as its tallest one.
 */
export function gridSvg(o: GridOptions): string {
  const gap = o.gap ?? 8;
  const margin = o.margin ?? 12;
  const cols = Math.max(1, Math.floor(o.columns));
  const rows = Math.ceil(o.panels.length / cols);
  const colW = new Array<number>(cols).fill(0);
  const rowH = new Array<number>(rows).fill(0);
  o.panels.forEach((p, i) => {
    colW[i % cols] = Math.max(colW[i % cols], p.width);
    rowH[Math.floor(i / cols)] = Math.max(rowH[Math.floor(i / cols)], p.height);
  });
  const head = titleBlock(o.title, o.subtitle, margin);
  const fig = new FigureBuilder().raw(head.body);
  const top = Math.max(margin, head.height);
  o.panels.forEach((p, i) => {
    const c = i % cols;
    const r = Math.floor(i / cols);
    const x = margin + colW.slice(0, c).reduce((a, b) => a + b + gap, 0);
    const y = top + rowH.slice(0, r).reduce((a, b) => a + b + gap, 0);
    fig.add(p, x, y);
  });
  const width = 2 * margin + colW.reduce((a, b) => a + b, 0) + gap * (cols - 1);
  const height = top + margin + rowH.reduce((a, b) => a + b, 0) + gap * Math.max(0, rows - 1);
  return fig.toSvg(Math.max(width, head.body ? textWidth(o.title ?? '', 16, true) + 2 * margin : 0), height);
}
