/** Pieces shared by the figures: colour scales, the colour bar, ticks, number format (plain SVG, no Plot). */
import { num, svgText, type Panel } from '../svg.js';

/** Half-width of a symmetric domain that holds every finite |v|, rounded up to 0.05, at most 1 (cosines). */
export function symmetricLimit(values: Iterable<number>, cap = 1): number {
  let m = 0;
  for (const v of values) if (Number.isFinite(v)) m = Math.max(m, Math.abs(v));
  if (m === 0) return Math.min(cap, 0.05);
  return Math.min(cap, Math.ceil(m / 0.05 - 1e-9) * 0.05);
}

/** ColorBrewer RdBu (11 classes), red → blue: d3-scale-chromatic's `schemeRdBu[11]`. */
const RDBU = ['67001f', 'b2182b', 'd6604d', 'f4a582', 'fddbc7', 'f7f7f7', 'd1e5f0', '92c5de', '4393c3', '2166ac', '053061'];
const RDBU_RGB = [0, 8, 16].map((shift) => RDBU.map((h) => (parseInt(h, 16) >> (16 - shift)) & 255));

/** Uniform cubic B-spline through the control values at t ∈ [0, 1] (d3-interpolate's `basis`). */
function basisSpline(values: number[], t: number): number {
  const n = values.length - 1;
  let i: number;
  if (t <= 0) i = t = 0;
  else if (t >= 1) {
    t = 1;
    i = n - 1;
  } else i = Math.floor(t * n);
  const v1 = values[i];
  const v2 = values[i + 1];
  const v0 = i > 0 ? values[i - 1] : 2 * v1 - v2;
  const v3 = i < n - 1 ? values[i + 2] : 2 * v2 - v1;
  const t1 = (t - i / n) * n;
  const t2 = t1 * t1;
  const t3 = t2 * t1;
  return ((1 - 3 * t1 + 3 * t2 - t3) * v0 + (4 - 6 * t2 + 3 * t3) * v1 + (1 + 3 * t1 + 3 * t2 - 3 * t3) * v2 + t3 * v3) / 6;
}

/** d3's `interpolateRdBu(t)` as `rgb(r, g, b)` (the B-spline through the 11 classes, each channel rounded and clamped). */
export function interpolateRdBu(t: number): string {
  const ch = (k: number) => Math.max(0, Math.min(255, Math.round(basisSpline(RDBU_RGB[k], t)) || 0));
  return `rgb(${ch(0)}, ${ch(1)}, ${ch(2)})`;
}

/**
 * The diverging colour scale for cosines: ColorBrewer RdBu (colour-blind safe), reversed so
 * that positive (similar tokens) is red and negative (dissimilar) blue, centred at 0, clamped
 * to [−limit, limit]. The same colours as Observable Plot's `{type: 'diverging', scheme:
 * 'RdBu', reverse: true, domain: [−limit, limit], pivot: 0, clamp: true}` (tested), without
 * loading Plot.
 */
export function divergingColor(limit: number): (v: number) => string {
  const k = 0.5 / limit;
  return (v: number) => {
    const t = Math.max(0, Math.min(1, 0.5 + v * k));
    return interpolateRdBu(1 - t);
  };
}

/** d3-array's `ticks(start, stop, count)`: round values (1, 2 or 5 × 10^k apart) within [start, stop]. */
export function niceTicks(start: number, stop: number, count: number): number[] {
  if (!(count > 0)) return [];
  if (start === stop) return [start];
  const spec = (lo: number, hi: number, c: number): [number, number, number] => {
    const step = (hi - lo) / Math.max(0, c);
    const power = Math.floor(Math.log10(step));
    const error = step / Math.pow(10, power);
    const factor = error >= Math.sqrt(50) ? 10 : error >= Math.sqrt(10) ? 5 : error >= Math.sqrt(2) ? 2 : 1;
    let i1: number, i2: number, inc: number;
    if (power < 0) {
      inc = Math.pow(10, -power) / factor;
      i1 = Math.round(lo * inc);
      i2 = Math.round(hi * inc);
      if (i1 / inc < lo) ++i1;
      if (i2 / inc > hi) --i2;
      inc = -inc;
    } else {
      inc = Math.pow(10, power) * factor;
      i1 = Math.round(lo / inc);
      i2 = Math.round(hi / inc);
      if (i1 * inc < lo) ++i1;
      if (i2 * inc > hi) --i2;
    }
    if (i2 < i1 && 0.5 <= c && c < 2) return spec(lo, hi, c * 2);
    return [i1, i2, inc];
  };
  const [lo, hi] = start < stop ? [start, stop] : [stop, start];
  const [i1, i2, inc] = spec(lo, hi, count);
  if (!(i2 >= i1)) return [];
  const out: number[] = [];
  for (let i = i1; i <= i2; i++) out.push(inc < 0 ? i / -inc : i * inc);
  return start < stop ? out : out.reverse();
}

/**
 * A horizontal colour bar for the colours of `color` over [lo, hi], with its title above and
 * about five round ticks below: 160 strips, each stroked in its own colour so that no hairline
 * gaps show between them.
 */
export function colorbarPanel(color: (v: number) => string, domain: [number, number], label: string, width: number): Panel {
  const [lo, hi] = domain;
  const n = 160;
  const x0 = 14;
  const w = width - 28;
  const top = 18; // 14 px of title, then the bar's own 4 px margin
  const h = 12;
  const at = (v: number) => x0 + ((v - lo) / (hi - lo)) * w;
  const strips: string[] = [];
  for (let i = 0; i < n; i++) {
    const c = color(lo + ((hi - lo) * (i + 0.5)) / n);
    strips.push(`<rect x="${num(x0 + (w * i) / n)}" y="${top}" width="${num(w / n)}" height="${h}" fill="${c}" stroke="${c}"/>`);
  }
  const fmt = minusFormat(2, true);
  const ticks = niceTicks(lo, hi, 5);
  const tickPath = ticks.map((t) => `M${num(at(t))},${top + h}v4`).join('');
  const labels = ticks.map((t) => `<text x="${num(at(t))}" y="${top + h + 9}" dy="0.71em">${fmt(t)}</text>`).join('');
  const body =
    svgText(width / 2, 11, label, { size: 11, anchor: 'middle' }) +
    `<g stroke-width="0.3">${strips.join('')}</g>` +
    `<rect x="${x0}" y="${top}" width="${num(w)}" height="${h}" fill="none" stroke="#333" stroke-width="0.5"/>` +
    `<path d="${tickPath}" stroke="black" fill="none"/>` +
    `<g font-size="10" font-variant="tabular-nums" text-anchor="middle">${labels}</g>`;
  return { width, height: 50, body };
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
