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
import { FigureBuilder, SVG_NS, textWidth, titleBlock, type Panel } from './svg.js';

export * from './svg.js';

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
