/** PNG encoding with sharp: SVG figures rasterised, RGB images encoded. */
import sharp from 'sharp';

/** Rasterises SVG with librsvg: `scale` 2 gives 144 dpi, crisp on screens and in print drafts. */
export async function svgToPng(svg: string, scale = 2): Promise<Buffer> {
  if (!(scale > 0)) throw new Error(`svgToPng: scale must be positive, got ${scale}`);
  return sharp(Buffer.from(svg, 'utf8'), { density: 72 * scale, limitInputPixels: false })
    .png({ compressionLevel: 9 })
    .toBuffer();
}

/** PNG of an RGB image; `maxSide` shrinks larger images (Lanczos), never enlarges. */
export async function rgbToPng(rgb: Uint8Array, width: number, height: number, maxSide?: number): Promise<Buffer> {
  let img = sharp(Buffer.from(rgb.buffer, rgb.byteOffset, rgb.length), { raw: { width, height, channels: 3 } });
  if (maxSide && Math.max(width, height) > maxSide) img = img.resize({ width: maxSide, height: maxSide, fit: 'inside' });
  return img.png({ compressionLevel: 9 }).toBuffer();
}

export function pngDataUri(png: Buffer): string {
  return `data:image/png;base64,${png.toString('base64')}`;
}
