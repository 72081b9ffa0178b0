/**
 * Query/key overlays drawn exactly as the CLI's figures draw them (docs/method.md §5), with the same
 * code (src/report/overlay.ts, browser-safe): each map scaled to [0, 1] by `mapScales` (default
 * `percentile`: from max(0, median) to the 99th percentile), upsampled bilinearly from the patch
 * grid, then out = base + (255 − base)·m with base = 0.35 × the photo and m = (Q, K, K): red
 * where the query map is high, cyan where the key map is, white where both are.
 */
import { mapScales, overlayRgb, scaleMap, upsampleGrid, type MapNormalization } from '../../src/report/overlay.js';

export const NORMALIZATION_TEXT: Record<MapNormalization, string> = {
  percentile: 'each map scaled from its median (or 0) to its 99th percentile, as the CLI’s default',
  image: 'each map’s positive part divided by its maximum',
  row: 'maps divided by the largest value among them',
};

/** An image from a Blob (the data source's bytes). */
export function loadImage(blob: Blob): Promise<HTMLImageElement> {
  const url = URL.createObjectURL(blob);
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => {
      URL.revokeObjectURL(url);
      resolve(img);
    };
    img.onerror = () => {
      URL.revokeObjectURL(url);
      reject(new Error('the image could not be decoded by the browser'));
    };
    img.src = url;
  });
}

export interface OverlayOptions {
  /** Show the maps (true) or only the photo. */
  maps?: boolean;
  normalization?: MapNormalization;
  /** Outline these patches: [patch index, colour]. */
  marks?: [number, string][];
  /** Draw the patch grid lines. */
  gridLines?: boolean;
}

/** Draws photo + overlay into `canvas` (its current pixel size). */
export function drawOverlay(canvas: HTMLCanvasElement, img: CanvasImageSource, grid: [number, number], q: ArrayLike<number> | null, k: ArrayLike<number> | null, o: OverlayOptions = {}): void {
  const ctx = canvas.getContext('2d', { willReadFrequently: true })!;
  const W = canvas.width;
  const H = canvas.height;
  const [gh, gw] = grid;
  ctx.save();
  ctx.clearRect(0, 0, W, H);
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(img, 0, 0, W, H);
  if (o.maps !== false && q && k) {
    const how = o.normalization ?? 'percentile';
    const [qs] = mapScales([q], how);
    const [ks] = mapScales([k], how);
    const qUp = upsampleGrid(scaleMap(q, qs), gh, gw, H, W);
    const kUp = upsampleGrid(scaleMap(k, ks), gh, gw, H, W);
    const data = ctx.getImageData(0, 0, W, H);
    const px = data.data;
    const rgb = new Uint8Array(W * H * 3);
    for (let i = 0; i < W * H; i++) {
      rgb[i * 3] = px[i * 4];
      rgb[i * 3 + 1] = px[i * 4 + 1];
      rgb[i * 3 + 2] = px[i * 4 + 2];
    }
    const out = overlayRgb(rgb, W, H, qUp, kUp);
    for (let i = 0; i < W * H; i++) {
      px[i * 4] = out[i * 3];
      px[i * 4 + 1] = out[i * 3 + 1];
      px[i * 4 + 2] = out[i * 3 + 2];
      px[i * 4 + 3] = 255;
    }
    ctx.putImageData(data, 0, 0);
  }
  const pw = W / gw;
  const ph = H / gh;
  if (o.gridLines) {
    ctx.strokeStyle = 'rgba(255,255,255,0.18)';
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let c = 1; c < gw; c++) {
      ctx.moveTo(Math.round(c * pw) + 0.5, 0);
      ctx.lineTo(Math.round(c * pw) + 0.5, H);
    }
    for (let r = 1; r < gh; r++) {
      ctx.moveTo(0, Math.round(r * ph) + 0.5);
      ctx.lineTo(W, Math.round(r * ph) + 0.5);
    }
    ctx.stroke();
  }
  for (const [p, colour] of o.marks ?? []) {
    const r = Math.floor(p / gw);
    const c = p % gw;
    ctx.lineWidth = 3;
    ctx.strokeStyle = 'rgba(0,0,0,0.7)';
    ctx.strokeRect(c * pw + 1.5, r * ph + 1.5, pw - 3, ph - 3);
    ctx.lineWidth = 2;
    ctx.strokeStyle = colour;
    ctx.strokeRect(c * pw + 1.5, r * ph + 1.5, pw - 3, ph - 3);
  }
  ctx.restore();
}

/** Patch index under a mouse event on a canvas showing the grid. */
export function patchAt(canvas: HTMLCanvasElement, ev: MouseEvent, grid: [number, number]): number {
  const rect = canvas.getBoundingClientRect();
  const x = (ev.clientX - rect.left) / rect.width;
  const y = (ev.clientY - rect.top) / rect.height;
  const c = Math.min(grid[1] - 1, Math.max(0, Math.floor(x * grid[1])));
  const r = Math.min(grid[0] - 1, Math.max(0, Math.floor(y * grid[0])));
  return r * grid[1] + c;
}

/** A canvas sized for the device pixel ratio, displayed at `size` CSS pixels. */
export function hiDpiCanvas(size: number, height = size): HTMLCanvasElement {
  const c = document.createElement('canvas');
  const dpr = Math.min(2, window.devicePixelRatio || 1);
  c.width = Math.round(size * dpr);
  c.height = Math.round(height * dpr);
  c.style.width = `${size}px`;
  c.style.height = `${height}px`;
  return c;
}

/** Colour legend swatches for the overlay. */
export function overlayLegend(how: MapNormalization = 'percentile'): HTMLElement {
  const el = document.createElement('div');
  el.className = 'overlay-legend';
  el.innerHTML =
    '<span><i style="background:#e3342f"></i>query map Q(t) = x·u</span>' +
    '<span><i style="background:#17becf"></i>key map K(t) = x·v</span>' +
    '<span><i style="background:#fff;border:1px solid #999"></i>both high</span>';
  el.title = NORMALIZATION_TEXT[how];
  return el;
}
