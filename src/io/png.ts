/** PNG encoding with sharp: SVG figures rasterised, RGB images encoded (sharp loaded on first use). */
import { loadSharp } from './sharp.js';

/**
 * zlib level for every PNG we write. Level 9 took twice the time of 6 on the figures (a
 * 3000 × 2400 heads figure: ~1 s more) for 5–10 % smaller files; levels below 6 save little
 * time and grow the files. Adaptive filtering (sharp's default: off) made files larger and
 * slower here (mostly flat white with anti-aliased lines), so it stays off.
 */
export const PNG_COMPRESSION = 6;

/** Pixel budget of a rasterised figure: above it the scale shrinks (but not below MIN_FIGURE_SCALE). */
export const MAX_FIGURE_PIXELS = 8e6;
/** 90 dpi: the smallest scale at which the 8.5 px panel titles of the heads figure stay legible. */
export const MIN_FIGURE_SCALE = 1.25;

/** The root <svg>'s width and height in CSS px (null when absent or not plain numbers). */
function svgSize(svg: string): { width: number; height: number } | null {
  const root = /<svg\b[^>]*>/.exec(svg.slice(0, 4096))?.[0];
  const w = root && /\swidth="([\d.]+)"/.exec(root);
  const h = root && /\sheight="([\d.]+)"/.exec(root);
  return w && h ? { width: Number(w[1]), height: Number(h[1]) } : null;
}

/**
 * The scale `svgToPng` uses: `scale`, reduced for very large figures so that the PNG has at
 * most MAX_FIGURE_PIXELS pixels, but never below MIN_FIGURE_SCALE (nor above `scale`). A 12 × 12
 * heads figure (ViT-B, 1508 × 1188 px) keeps 2×; a 32 × 16 one (ViT-H, 1972 × 2948 px) gets
 * 1.25×: at 2× it would be 23 Mpx, seconds to rasterise and encode, with no detail gained.
 */
export function figureScale(svg: string, scale = 2): number {
  const size = svgSize(svg);
  if (!size || !(size.width > 0 && size.height > 0)) return scale;
  const fit = Math.sqrt(MAX_FIGURE_PIXELS / (size.width * size.height));
  return Math.min(scale, Math.max(MIN_FIGURE_SCALE, fit));
}

/**
 * Rasterises SVG with librsvg: `scale` 2 gives 144 dpi, crisp on screens and in print drafts.
 * With `fit` (the default) large figures get a smaller scale, see `figureScale`.
 */
export async function svgToPng(svg: string, scale = 2, opts: { fit?: boolean; photos?: boolean } = {}): Promise<Buffer> {
  if (!(scale > 0)) throw new Error(`svgToPng: scale must be positive, got ${scale}`);
  const s = opts.fit === false ? scale : figureScale(svg, scale);
  const sharp = await loadSharp();
  // Figures made of photos (the modes figure) compress badly losslessly (10 MB for 96 tiles):
  // a 256-colour palette with dithering (libimagequant, quality ≥ 95) looks the same at a
  // quarter of the size.
  const png = opts.photos ? { palette: true, quality: 95, effort: 1, compressionLevel: PNG_COMPRESSION } : { compressionLevel: PNG_COMPRESSION };
  return sharp(Buffer.from(svg, 'utf8'), { density: 72 * s, limitInputPixels: false })
    .png(png)
    .toBuffer();
}

/** PNG of an RGB image; `maxSide` shrinks larger images (Lanczos), never enlarges. */
export async function rgbToPng(rgb: Uint8Array, width: number, height: number, maxSide?: number): Promise<Buffer> {
  const sharp = await loadSharp();
  let img = sharp(Buffer.from(rgb.buffer, rgb.byteOffset, rgb.length), { raw: { width, height, channels: 3 } });
  if (maxSide && Math.max(width, height) > maxSide) img = img.resize({ width: maxSide, height: maxSide, fit: 'inside' });
  return img.png({ compressionLevel: PNG_COMPRESSION }).toBuffer();
}

export function pngDataUri(png: Buffer): string {
  return `data:image/png;base64,${png.toString('base64')}`;
}
