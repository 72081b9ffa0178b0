/**
 * Query/key overlays (METHOD.md §5): the photo in grey, the query map added in red and the key
 * map in cyan (green + blue), so a patch high in both turns white. Each map's positive part is
 * scaled by its own maximum over the image; the patch grid is upsampled smoothly.
 */

export function loadImage(url: string): Promise<HTMLImageElement> {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`cannot load ${url}`));
    img.src = url;
  });
}

export interface OverlayOptions {
  /** Show the maps (true) or only the photo. */
  maps?: boolean;
  /** Grey photo brightness under the maps (0..1). */
  dim?: number;
  /** Outline these patches: [patch index, colour]. */
  marks?: [number, string][];
  /** Draw the patch grid lines. */
  gridLines?: boolean;
}

/** Draws photo + overlay into `canvas` (its current pixel size). */
export function drawOverlay(canvas: HTMLCanvasElement, img: HTMLImageElement, grid: [number, number], q: number[] | null, k: number[] | null, o: OverlayOptions = {}): void {
  const ctx = canvas.getContext('2d')!;
  const W = canvas.width;
  const H = canvas.height;
  ctx.save();
  ctx.clearRect(0, 0, W, H);
  ctx.imageSmoothingEnabled = true;
  const showMaps = o.maps !== false && q && k;
  if (showMaps) ctx.filter = `grayscale(1) brightness(${o.dim ?? 0.55})`;
  ctx.drawImage(img, 0, 0, W, H);
  ctx.filter = 'none';
  const [gh, gw] = grid;
  if (showMaps) {
    const small = document.createElement('canvas');
    small.width = gw;
    small.height = gh;
    const sctx = small.getContext('2d')!;
    const data = sctx.createImageData(gw, gh);
    const qm = Math.max(1e-12, ...q!);
    const km = Math.max(1e-12, ...k!);
    for (let i = 0; i < gw * gh; i++) {
      const qv = Math.max(0, q![i]) / qm;
      const kv = Math.max(0, k![i]) / km;
      data.data[i * 4] = Math.round(255 * qv);
      data.data[i * 4 + 1] = Math.round(255 * kv);
      data.data[i * 4 + 2] = Math.round(255 * kv);
      data.data[i * 4 + 3] = 255;
    }
    sctx.putImageData(data, 0, 0);
    ctx.globalCompositeOperation = 'lighter';
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = 'high';
    ctx.drawImage(small, 0, 0, W, H);
    ctx.globalCompositeOperation = 'source-over';
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
export function overlayLegend(): HTMLElement {
  const el = document.createElement('div');
  el.className = 'overlay-legend';
  el.innerHTML =
    '<span><i style="background:#e3342f"></i>query map Q(t) = x·u</span>' +
    '<span><i style="background:#17becf"></i>key map K(t) = x·v</span>' +
    '<span><i style="background:#fff;border:1px solid #999"></i>both high</span>';
  return el;
}
