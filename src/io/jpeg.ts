/** JPEG encoding with sharp: photo tiles embedded in figures (a tenth of a PNG's size at the same look). */
import sharp from 'sharp';

/** JPEG (quality 90 unless told, no chroma subsampling) of an RGB image, shrunk to `maxSide`. */
export async function rgbToJpeg(rgb: Uint8Array, width: number, height: number, maxSide?: number, quality = 90): Promise<Buffer> {
  let img = sharp(Buffer.from(rgb.buffer, rgb.byteOffset, rgb.length), { raw: { width, height, channels: 3 } });
  if (maxSide && Math.max(width, height) > maxSide) img = img.resize({ width: maxSide, height: maxSide, fit: 'inside' });
  return img.jpeg({ quality, chromaSubsampling: '4:4:4' }).toBuffer();
}

/** The same as a data URI (photo tiles embedded in figures). */
export async function jpegDataUri(rgb: Uint8Array, width: number, height: number, maxSide?: number): Promise<string> {
  return `data:image/jpeg;base64,${(await rgbToJpeg(rgb, width, height, maxSide)).toString('base64')}`;
}
