/**
 * Attention-map overlays for the modes figure (docs/method.md §5): a mode's query map Q(t) = x_t·u_n
 * in the red channel and its key map K(t) = x_t·v_n in green + blue (cyan) over a dimmed copy of
 * the image, so where both are high the pixel turns white. Maps live on the patch grid and are
 * upsampled bilinearly (patch centres, edges clamped) to the image.
 */

/** Positive part of a map scaled to [0, 1] by its maximum (all zero when the maximum is ≤ 0). */
export function normaliseMap(map: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < map.length; i++) if (map[i] > max) max = map[i];
  const out = new Float64Array(map.length);
  if (!(max > 0)) return out;
  for (let i = 0; i < map.length; i++) out[i] = Math.min(1, Math.max(0, map[i] / max));
  return out;
}

/** Bilinear upsampling of a rows×cols grid (values at patch centres) to h×w pixels. */
export function upsampleGrid(grid: ArrayLike<number>, rows: number, cols: number, h: number, w: number): Float64Array {
  const out = new Float64Array(h * w);
  for (let y = 0; y < h; y++) {
    const gy = Math.min(rows - 1, Math.max(0, ((y + 0.5) * rows) / h - 0.5));
    const y0 = Math.floor(gy);
    const y1 = Math.min(rows - 1, y0 + 1);
    const fy = gy - y0;
    for (let x = 0; x < w; x++) {
      const gx = Math.min(cols - 1, Math.max(0, ((x + 0.5) * cols) / w - 0.5));
      const x0 = Math.floor(gx);
      const x1 = Math.min(cols - 1, x0 + 1);
      const fx = gx - x0;
      const a = grid[y0 * cols + x0] * (1 - fx) + grid[y0 * cols + x1] * fx;
      const b = grid[y1 * cols + x0] * (1 - fx) + grid[y1 * cols + x1] * fx;
      out[y * w + x] = a * (1 - fy) + b * fy;
    }
  }
  return out;
}

export interface OverlayOptions {
  /** Brightness of the image under the maps (default 0.35). */
  dim?: number;
}

/**
 * RGB overlay: out_c = base_c + (255 − base_c)·m_c with base = dim·image and m = (q, k, k):
 * red where the query map is high, cyan where the key map is, white where both are.
 * `q`, `k`: per-pixel values in [0, 1] (null: that map is left out).
 */
export function overlayRgb(rgb: Uint8Array, width: number, height: number, q: Float64Array | null, k: Float64Array | null, opts: OverlayOptions = {}): Uint8Array {
  const dim = opts.dim ?? 0.35;
  const out = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    const m = [q ? q[i] : 0, k ? k[i] : 0, k ? k[i] : 0];
    for (let c = 0; c < 3; c++) {
      const base = dim * rgb[i * 3 + c];
      out[i * 3 + c] = Math.round(base + (255 - base) * m[c]);
    }
  }
  return out;
}

/**
 * How a map is scaled to [0, 1] for drawing (one convention for the CLI figures, the explorer
 * and the exported site; docs/method.md §6):
 * - `percentile` (default): per image, from max(0, median) to the 99th percentile, clipped, so
 *   modes that are positive almost everywhere (grouping modes) still show where they peak;
 * - `image`: per image, the positive part divided by the maximum;
 * - `row`: the positive part divided by the maximum over all the maps given (one mode's row).
 */
export type MapNormalization = 'percentile' | 'image' | 'row';
export const MAP_NORMALIZATIONS: readonly MapNormalization[] = ['percentile', 'image', 'row'];

export interface MapScale {
  lo: number;
  hi: number;
}

/** The p-quantile (0..1) of values, linear interpolation between order statistics (numpy's default). */
export function quantile(values: ArrayLike<number>, p: number): number {
  const a = Float64Array.from(values).sort();
  if (a.length === 0) return NaN;
  const pos = p * (a.length - 1);
  const i = Math.floor(pos);
  return i + 1 < a.length ? a[i] + (a[i + 1] - a[i]) * (pos - i) : a[i];
}

/** The scale of each map under a normalisation. */
export function mapScales(maps: ArrayLike<number>[], how: MapNormalization = 'percentile'): MapScale[] {
  const max = (m: ArrayLike<number>) => {
    let x = -Infinity;
    for (let i = 0; i < m.length; i++) if (m[i] > x) x = m[i];
    return x;
  };
  if (how === 'row') {
    const hi = Math.max(0, ...maps.map(max));
    return maps.map(() => ({ lo: 0, hi }));
  }
  if (how === 'image') return maps.map((m) => ({ lo: 0, hi: Math.max(0, max(m)) }));
  return maps.map((m) => ({ lo: Math.max(0, quantile(m, 0.5)), hi: quantile(m, 0.99) }));
}

/** (v − lo) / (hi − lo) clipped to [0, 1]; all zero when hi ≤ lo. */
export function scaleMap(map: ArrayLike<number>, s: MapScale): Float64Array {
  const out = new Float64Array(map.length);
  const span = s.hi - s.lo;
  if (!(span > 0)) return out;
  for (let i = 0; i < map.length; i++) out[i] = Math.min(1, Math.max(0, (map[i] - s.lo) / span));
  return out;
}
