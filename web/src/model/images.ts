/**
 * Images in the page: the browser decodes a dropped file itself (createImageBitmap), then the
 * project's own preprocessing (src/images/preprocess.ts, Pillow's resampling) makes the crop the
 * model sees, exactly as Node does from the same RGB pixels.
 *
 * Decoder differences from Node (sharp / libvips, as Pillow): the browser's JPEG decoder may round
 * the IDCT and chroma upsampling differently (a few grey levels), so a JPEG can give slightly
 * different pixels than `qkscope serve` gets; PNG and other lossless files give the same. EXIF
 * orientation is applied, ICC colour profiles are not (as Pillow), alpha is dropped.
 */
import { normalise, resizeAndCrop } from '../../../src/images/preprocess.js';
import { pilResizeU8 } from '../../../src/images/resample.js';
import type { PreprocessSpecLike } from '../../../src/site-types.js';

export interface Rgb {
  data: Uint8Array;
  width: number;
  height: number;
}

/** Largest image decoded in the page (as serve's upload limit). */
export const MAX_PIXELS = 40_000_000;

function canvasOf(w: number, h: number): HTMLCanvasElement {
  const c = document.createElement('canvas');
  c.width = w;
  c.height = h;
  return c;
}

/** RGB pixels of an encoded image (a dropped file, a stored JPEG). */
export async function decodeBlob(blob: Blob): Promise<Rgb> {
  let bmp: ImageBitmap;
  try {
    bmp = await createImageBitmap(blob, { imageOrientation: 'from-image', colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  } catch {
    throw new Error('not an image this browser can decode: give a JPEG, PNG or WebP file');
  }
  const { width, height } = bmp;
  if (width * height > MAX_PIXELS) {
    bmp.close();
    throw new Error(`image too large: ${width}×${height} pixels; the limit is ${MAX_PIXELS / 1e6} megapixels`);
  }
  const c = canvasOf(width, height);
  const ctx = c.getContext('2d', { willReadFrequently: true })!;
  ctx.drawImage(bmp, 0, 0);
  bmp.close();
  const rgba = ctx.getImageData(0, 0, width, height).data;
  const data = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    data[j] = rgba[i];
    data[j + 1] = rgba[i + 1];
    data[j + 2] = rgba[i + 2];
  }
  return { data, width, height };
}

export type Preprocess = PreprocessSpecLike & { crop_rounding: 'hf' | 'torchvision' };

/**
 * The crop the model sees. `isCrop`: the image already is the model's crop at another size (a
 * stored top image), resized straight to the crop size.
 */
export function cropFor(img: Rgb, pp: Preprocess, isCrop: boolean): Rgb {
  const [ch, cw] = pp.crop;
  if (isCrop) return img.width === cw && img.height === ch ? img : { data: pilResizeU8(img.data, img.width, img.height, 3, cw, ch, pp.resample), width: cw, height: ch };
  return resizeAndCrop(img, pp, { cropRounding: pp.crop_rounding });
}

export function pixelsOf(crop: Rgb, pp: Preprocess): Float32Array {
  return normalise(crop, pp);
}

/** A PNG of RGB pixels (the Image view's input picture). */
export function pngOf(img: Rgb): Promise<Blob> {
  const c = canvasOf(img.width, img.height);
  const ctx = c.getContext('2d')!;
  const id = ctx.createImageData(img.width, img.height);
  for (let i = 0, j = 0; j < img.data.length; i += 4, j += 3) {
    id.data[i] = img.data[j];
    id.data[i + 1] = img.data[j + 1];
    id.data[i + 2] = img.data[j + 2];
    id.data[i + 3] = 255;
  }
  ctx.putImageData(id, 0, 0);
  return new Promise((resolve, reject) => c.toBlob((b) => (b ? resolve(b) : reject(new Error('cannot encode the image'))), 'image/png'));
}

/** Bytes of a data: URI as a Blob. */
export function dataUriBlob(uri: string): Blob {
  const comma = uri.indexOf(',');
  const mime = /^data:([^;,]+)/.exec(uri)?.[1] ?? 'application/octet-stream';
  const bin = atob(uri.slice(comma + 1));
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new Blob([bytes], { type: mime });
}
