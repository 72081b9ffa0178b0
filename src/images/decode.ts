/**
 * Image decoding with sharp to 8-bit RGB (interleaved, row-major). JPEG, PNG, WebP (and
 * whatever else libvips reads). Like HF's `load_image` + `convert_rgb`: EXIF orientation is
 * applied, alpha is dropped (not composited, as Pillow's convert('RGB') does), grayscale is
 * replicated to three channels, 16-bit images are scaled to 8 bits. Embedded ICC profiles are
 * ignored and CMYK is converted with Pillow's own formula, because Pillow (hence HF and timm)
 * does no colour management: the pixel values match what the checkpoints were trained on.
 */
import { statSync } from 'node:fs';
import { UserError } from '../errors.js';
import { loadSharp } from '../io/sharp.js';

export interface RgbImage {
  /** Interleaved RGB, row-major, height x width x 3. */
  data: Uint8Array;
  width: number;
  height: number;
}

/** Thrown for an image that cannot be used; the message is the reason (a skip reason in batch jobs). */
export class ImageDecodeError extends Error {}

/** Limits on what is decoded (a photo, not a decompression bomb). */
export interface DecodeOptions {
  /** Most pixels (width × height) an image may have; checked from the header before decoding. Default 64 MP. */
  maxPixels?: number;
}

export const DEFAULT_MAX_PIXELS = 64_000_000;

/** Formats that are not photos: vector and document formats libvips would render at any size. */
const NOT_PHOTOS = new Set(['svg', 'pdf', 'magick', 'openslide', 'fits', 'vips', 'matrix', 'csv']);

export async function decodeImage(path: string, opts: DecodeOptions = {}): Promise<RgbImage> {
  try {
    if (!statSync(path).isFile()) throw new UserError(`${path}: not a file; give an image file (JPEG, PNG or WebP)`);
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`${path}: cannot open (${(e as NodeJS.ErrnoException).code ?? e}); check the path`);
  }
  try {
    return await decodeWithSharp(path, opts);
  } catch (e) {
    if (e instanceof ImageDecodeError) throw new UserError(`${path}: ${e.message}`);
    throw new UserError(`${path}: cannot read the image (${(e as Error).message.split('\n')[0]}); give a JPEG, PNG or WebP file`);
  }
}

/**
 * The one decoding path for files and in-memory bytes (tar members, Parquet cells), so `embed`
 * and `scan` see the same pixels. Throws sharp's error for unreadable input; callers word it.
 */
export async function decodeWithSharp(input: string | Uint8Array, opts: DecodeOptions = {}): Promise<RgbImage> {
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  const sharp = await loadSharp();
  // ignoreIcc: Pillow does not colour-manage either, so pixel values match HF's. limitInputPixels
  // is libvips' own guard; the header check below gives the clearer message first.
  // The header first (format and size, nothing decoded), without libvips' own pixel limit, so a
  // bomb or a vector file is refused with a clear reason.
  const meta = await sharp(input, { failOn: 'error', limitInputPixels: false }).metadata();
  if (meta.format && NOT_PHOTOS.has(meta.format)) throw new ImageDecodeError(`a ${meta.format.toUpperCase()} file is not a photo (vector and document formats are refused); give a JPEG, PNG or WebP`);
  const px = (meta.width ?? 0) * (meta.height ?? 0);
  if (px > maxPixels) {
    throw new ImageDecodeError(`${meta.width}×${meta.height} pixels exceeds the limit of ${fmtMp(maxPixels)} (raise it with --max-pixels if this is a real photo)`);
  }
  const img = sharp(input, { failOn: 'error', ignoreIcc: true, limitInputPixels: Math.max(1, Math.floor(maxPixels)) });
  const cmyk = meta.space === 'cmyk';
  const oriented = img.rotate(); // EXIF orientation
  const out = cmyk
    ? await oriented.pipelineColourspace('cmyk').toColourspace('cmyk').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true })
    : await oriented.toColourspace('srgb').removeAlpha().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
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

/** Pillow's CMYK -> RGB (Convert.c cmyk2rgb): R = (255 - K) - C (255 - K) / 255, in its integer arithmetic. */
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


/**
 * Decodes in-memory image bytes (tar members, Parquet cells, files read for hashing) through the
 * same path as files, wording failures as skip reasons.
 */
export async function decodeImageBytes(bytes: Uint8Array, opts: DecodeOptions = {}): Promise<RgbImage> {
  if (bytes.length === 0) throw new ImageDecodeError('empty file');
  try {
    return await decodeWithSharp(bytes, opts);
  } catch (e) {
    if (e instanceof ImageDecodeError) throw e;
    throw new ImageDecodeError(`cannot decode (${(e as Error).message.split('\n')[0]})`);
  }
}

function fmtMp(px: number): string {
  return px >= 1e6 ? `${+(px / 1e6).toFixed(1)} MP` : `${px} pixels`;
}
