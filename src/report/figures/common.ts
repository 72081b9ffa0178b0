/** Pieces shared by the figures: colour scales, the colour bar, tick subsets, number format. */
import * as Plot from '@observablehq/plot';
import { plotPanel, svgText, type Panel } from '../plot.js';

/** Half-width of a symmetric domain that holds every finite |v|, rounded up to 0.05, at most 1 (cosines). */
export function symmetricLimit(values: Iterable<number>, cap = 1): number {
  let m = 0;
  for (const v of values) if (Number.isFinite(v)) m = Math.max(m, Math.abs(v));
  if (m === 0) return Math.min(cap, 0.05);
  return Math.min(cap, Math.ceil(m / 0.05 - 1e-9) * 0.05);
}

/**
 * The diverging colour scale for cosines: ColorBrewer RdBu (colour-blind safe), reversed so
 * that positive (similar tokens) is red and negative (dissimilar) blue, centred at 0.
 */
export function divergingColor(limit: number): Plot.ScaleOptions {
  return { type: 'diverging', scheme: 'RdBu', reverse: true, domain: [-limit, limit], pivot: 0, clamp: true };
}

/** A horizontal colour bar for `color` with its title above (Plot's ramp legend needs a canvas). */
export function colorbarPanel(color: Plot.ScaleOptions, label: string, width: number): Panel {
  const [lo, hi] = color.domain as [number, number];
  const n = 160;
  const strips = Array.from({ length: n }, (_, i) => ({
    x1: lo + ((hi - lo) * i) / n,
    x2: lo + ((hi - lo) * (i + 1)) / n,
    v: lo + ((hi - lo) * (i + 0.5)) / n,
  }));
  const bar = plotPanel({
    width,
    height: 36,
    marginTop: 4,
    marginBottom: 20,
    marginLeft: 14,
    marginRight: 14,
    x: { domain: [lo, hi] },
    y: { axis: null, domain: [0, 1] },
    color,
    marks: [
      Plot.rectY(strips, { x1: 'x1', x2: 'x2', y1: 0, y2: 1, fill: 'v', stroke: 'v', strokeWidth: 0.3 }),
      Plot.frame({ stroke: '#333', strokeWidth: 0.5 }),
      Plot.axisX({ anchor: 'bottom', ticks: 5, tickSize: 4, label: null, tickFormat: minusFormat(2, true) }),
    ],
  });
  const title = svgText(width / 2, 11, label, { size: 11, anchor: 'middle' });
  return { width, height: bar.height + 14, body: `${title}<g transform="translate(0,14)">${bar.body}</g>` };
}

/**
 * Fixed-decimal number format with a true minus sign (U+2212); `trim` drops trailing zeros
 * (0.50 → 0.5, 1.00 → 1).
 */
export function minusFormat(decimals: number, trim = false): (v: number) => string {
  return (v: number) => {
    if (!Number.isFinite(v)) return '';
    let s = Math.abs(v).toFixed(decimals);
    if (trim && s.includes('.')) s = s.replace(/\.?0+$/, '');
    const zero = Number(s) === 0;
    return (v < 0 && !zero ? '\u2212' : '') + s;
  };
}

/** Every index if there are at most `max`, else every k-th (0, k, 2k, …). */
export function tickSubset(n: number, max = 16): number[] {
  const k = Math.max(1, Math.ceil(n / max));
  const out: number[] = [];
  for (let i = 0; i < n; i += k) out.push(i);
  return out;
}

export function clamp(x: number, lo: number, hi: number): number {
  return Math.max(lo, Math.min(hi, x));
}
