/**
 * Decoding of in-memory image bytes (tar members, Parquet cells, files read for hashing) to
 * 8-bit RGB, with exactly the conventions of `images/decode.ts` (which takes a path): EXIF
 * orientation applied, alpha dropped, grayscale replicated, ICC profiles ignored, CMYK
 * converted with Pillow's formula, truncated files refused. Kept in step with that module so
 * `scan` and `embed` see the same pixels.
 */
import sharp from 'sharp';
import type { RgbImage } from '../images/decode.js';

/** Thrown for bytes that are not a readable image; the message is the skip reason. */
export class ImageDecodeError extends Error {}

export async function decodeImageBytes(bytes: Uint8Array): Promise<RgbImage> {
  if (bytes.length === 0) throw new ImageDecodeError('empty file');
  let out: { data: Buffer; info: sharp.OutputInfo };
  let cmyk = false;
  try {
    const img = sharp(bytes, { failOn: 'error', ignoreIcc: true, limitInputPixels: 1 << 30 });
    cmyk = (await img.metadata()).space === 'cmyk';
    const oriented = img.rotate();
    out = cmyk
      ? await oriented.pipelineColourspace('cmyk').toColourspace('cmyk').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true })
      : await oriented.toColourspace('srgb').removeAlpha().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new ImageDecodeError(`cannot decode (${(e as Error).message.split('\n')[0]})`);
  }
  const { width, height, channels } = out.info;
  const src = new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.length);
  if (cmyk && channels >= 4) return { data: cmykToRgb(src, width * height, channels), width, height };
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

/** Pillow's CMYK -> RGB (Convert.c cmyk2rgb), as images/decode.ts. */
function cmykToRgb(src: Uint8Array, pixels: number, channels: number): Uint8Array {
  const out = new Uint8Array(pixels * 3);
  const muldiv255 = (a: number, b: number) => {
    const t = a * b + 128;
    return ((t >> 8) + t) >> 8;
  };
  for (let i = 0; i < pixels; i++) {
    const nk = 255 - src[i * channels + 3];
    for (let c = 0; c < 3; c++) {
      const v = nk - muldiv255(src[i * channels + c], nk);
      out[i * 3 + c] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
  }
  return out;
}
