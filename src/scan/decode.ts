/**
 * Decoding of in-memory image bytes (tar members, Parquet cells, files read for hashing) to
 * 8-bit RGB, through the same code as `images/decode.ts` (`decodeWithSharp`): EXIF
 * orientation applied, alpha dropped, grayscale replicated, ICC profiles ignored, CMYK
 * converted with Pillow's formula, truncated files refused, so `scan` and `embed` see the same
 * pixels.
 */
import { decodeWithSharp, type RgbImage } from '../images/decode.js';

/** Thrown for bytes that are not a readable image; the message is the skip reason. */
export class ImageDecodeError extends Error {}

export async function decodeImageBytes(bytes: Uint8Array): Promise<RgbImage> {
  if (bytes.length === 0) throw new ImageDecodeError('empty file');
  try {
    return await decodeWithSharp(bytes);
  } catch (e) {
    throw new ImageDecodeError(`cannot decode (${(e as Error).message.split('\n')[0]})`);
  }
}
