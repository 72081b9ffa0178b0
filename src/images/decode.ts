/**
 * Image decoding with sharp to 8-bit RGB (interleaved, row-major). JPEG, PNG, WebP (and
 * whatever else libvips reads). Like HF's `load_image` + `convert_rgb`: EXIF orientation is
 * applied, alpha is dropped (not composited, as Pillow's convert('RGB') does), grayscale is
 * replicated to three channels, CMYK is converted to sRGB (libvips uses ICC profiles where
 * Pillow uses a naive formula, so CMYK files may differ slightly from HF), 16-bit images are
 * scaled to 8 bits.
 */
import { statSync } from 'node:fs';
import sharp from 'sharp';
import { UserError } from '../errors.js';

export interface RgbImage {
  /** Interleaved RGB, row-major, height x width x 3. */
  data: Uint8Array;
  width: number;
  height: number;
}

export async function decodeImage(path: string): Promise<RgbImage> {
  try {
    if (!statSync(path).isFile()) throw new UserError(`${path}: not a file; give an image file (JPEG, PNG or WebP)`);
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`${path}: cannot open (${(e as NodeJS.ErrnoException).code ?? e}); check the path`);
  }
  let out: { data: Buffer; info: sharp.OutputInfo };
  try {
    out = await sharp(path, { failOn: 'error', limitInputPixels: 1 << 30 })
      .rotate() // EXIF orientation
      .toColourspace('srgb')
      .removeAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new UserError(`${path}: cannot read the image (${(e as Error).message.split('\n')[0]}); give a JPEG, PNG or WebP file`);
  }
  const { width, height, channels } = out.info;
  const src = new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.length);
  if (channels === 3) return { data: src, width, height };
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    if (channels === 1 || channels === 2) {
      const v = src[i * channels];
      data[i * 3] = v;
      data[i * 3 + 1] = v;
      data[i * 3 + 2] = v;
    } else {
      for (let c = 0; c < 3; c++) data[i * 3 + c] = src[i * channels + c];
    }
  }
  return { data, width, height };
}
