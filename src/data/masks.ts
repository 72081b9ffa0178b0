/**
 * Masks for the token-level analyses (paper figures 2 and 6) and their down-scaling to the
 * patch grid.
 *
 * Binary masks (objects): PNG (or any lossless format sharp reads), the size of its image,
 * single channel or RGB with R = G = B (alpha ignored); every pixel 0 (outside) or 255
 * (inside); 0/1 masks are accepted too. Anything else is an error naming the file and value.
 *
 * Down-scaled mask: the mask goes through the image's own geometric preprocessing (same
 * resize filter and crop), then each patch gets the fraction of its pixels inside the mask
 * (area-weighted coverage in [0, 1], no threshold).
 */
import { readFile } from 'node:fs/promises';
import { inflateSync } from 'node:zlib';
import sharp from 'sharp';
import { UserError } from '../errors.js';
import type { PreprocessSpec } from '../arch/spec.js';
import { resizeAndCrop, type PreprocessOptions } from '../images/preprocess.js';
import type { TokenLayout } from '../arch/tokens.js';

export interface RawMask {
  width: number;
  height: number;
  /** One value per pixel (grey), row-major. */
  data: Uint8Array;
}

/** Decodes a mask to one grey channel; errors when R, G and B differ (a colour image given as mask). */
export async function readGreyMask(path: string, what: string): Promise<RawMask> {
  let out: { data: Buffer; info: sharp.OutputInfo };
  try {
    out = await sharp(path, { failOn: 'error' }).raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(`${path}: cannot read the ${what} (${code ?? (e as Error).message.split('\n')[0]}); give a PNG mask`);
  }
  const { width, height, channels } = out.info;
  const data = new Uint8Array(width * height);
  const colour = channels >= 3;
  for (let p = 0; p < width * height; p++) {
    const r = out.data[p * channels];
    if (colour && (out.data[p * channels + 1] !== r || out.data[p * channels + 2] !== r)) {
      throw new UserError(`${path}: the ${what} has colour pixels (e.g. at x=${p % width}, y=${Math.floor(p / width)}); give a grey mask (0 = outside, 255 = inside)`);
    }
    data[p] = r;
  }
  return { width, height, data };
}

/** A binary mask as 0/1; checks its size against the image and its values. */
export async function readBinaryMask(path: string, what: string, image: { width: number; height: number; path: string }): Promise<RawMask> {
  const m = await readGreyMask(path, what);
  if (m.width !== image.width || m.height !== image.height) {
    throw new UserError(`${path}: ${what} is ${m.width}x${m.height} but its image ${image.path} is ${image.width}x${image.height}; masks must have the image's size`);
  }
  let max = 0;
  for (const v of m.data) if (v > max) max = v;
  const on = max === 1 ? 1 : 255;
  let count = 0;
  for (let p = 0; p < m.data.length; p++) {
    const v = m.data[p];
    if (v !== 0 && v !== on) {
      throw new UserError(`${path}: ${what} has value ${v} at x=${p % m.width}, y=${Math.floor(p / m.width)}; expected only 0 (outside) and 255 (inside), or 0 and 1`);
    }
    if (v) count++;
    m.data[p] = v ? 1 : 0;
  }
  if (count === 0) throw new UserError(`${path}: ${what} is empty (all 0); every image needs a non-empty ${what}`);
  return m;
}

/**
 * Per-patch coverage [rows·cols] (raster order): the mask (0/1) scaled to 0/255, resized and
 * cropped like the image, then averaged over each patch / 255.
 */
export function downscaleMask(mask: RawMask, pp: PreprocessSpec, options: PreprocessOptions, layout: TokenLayout): Float64Array {
  const rgb = new Uint8Array(mask.width * mask.height * 3);
  for (let p = 0; p < mask.data.length; p++) {
    const v = mask.data[p] ? 255 : 0;
    rgb[3 * p] = rgb[3 * p + 1] = rgb[3 * p + 2] = v;
  }
  const r = resizeAndCrop({ data: rgb, width: mask.width, height: mask.height }, pp, options);
  const [R, C] = layout.grid;
  const ps = layout.patchSize;
  const cov = new Float64Array(R * C);
  for (let gr = 0; gr < R; gr++)
    for (let gc = 0; gc < C; gc++) {
      let s = 0;
      for (let y = gr * ps; y < (gr + 1) * ps; y++) for (let x = gc * ps; x < (gc + 1) * ps; x++) s += r.data[(y * r.width + x) * 3];
      cov[gr * C + gc] = s / (255 * ps * ps);
    }
  return cov;
}

/** Index of the maximum (first in raster order on ties). */
export function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}

export type InstanceMaskKind = 'grey' | 'palette' | 'rgb';

export interface InstanceMask {
  width: number;
  height: number;
  /** Instance id per pixel; 0 = unlabelled. */
  ids: Uint32Array;
  /** How the ids were read: grey value, palette index, or RGB colour. */
  kind: InstanceMaskKind;
}

/** The value of VOC/COCO-style "border / void / don't care" pixels in palette and grey masks. */
export const VOID_LABEL = 255;

/**
 * The ids treated as unlabelled besides 0: `undefined` gives the default (255 for grey and
 * palette masks, nothing for RGB masks), 'none' keeps every value, a list is used as given.
 */
export function ignoredIds(kind: InstanceMaskKind, ignore: readonly number[] | 'none' | undefined): Set<number> {
  if (ignore === 'none') return new Set();
  if (ignore === undefined) return new Set(kind === 'rgb' ? [] : [VOID_LABEL]);
  return new Set(ignore);
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/**
 * The palette indices of an indexed-colour PNG (colour type 3), or null for any other file.
 * sharp (libvips) expands palettes to RGB, which would turn VOC's index 255 "void" into a
 * colour; the index is the label, so indexed PNGs are decoded here (inflate + unfilter).
 */
export function readPaletteIndices(buf: Uint8Array, path: string): { width: number; height: number; index: Uint8Array } | null {
  if (buf.length < 33 || PNG_SIGNATURE.some((b, i) => buf[i] !== b)) return null;
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const bad = (why: string) => new UserError(`${path}: cannot read the instance mask (${why}); give a PNG of instance ids`);
  let width = 0, height = 0, depth = 0, interlace = 0;
  const idat: Uint8Array[] = [];
  for (let o = 8; o + 8 <= buf.length; ) {
    const len = dv.getUint32(o);
    const type = String.fromCharCode(buf[o + 4], buf[o + 5], buf[o + 6], buf[o + 7]);
    if (o + 12 + len > buf.length) throw bad('truncated PNG');
    const data = buf.subarray(o + 8, o + 8 + len);
    if (type === 'IHDR') {
      if (data[9] !== 3) return null;
      width = dv.getUint32(o + 8);
      height = dv.getUint32(o + 12);
      depth = data[8];
      interlace = data[12];
    } else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') break;
    o += 12 + len;
  }
  if (!width || !height || ![1, 2, 4, 8].includes(depth)) throw bad(`palette PNG with bit depth ${depth}`);
  if (interlace) throw new UserError(`${path}: interlaced (Adam7) palette PNG; save the mask without interlacing (PIL: Image.save does by default)`);
  let raw: Buffer;
  try {
    raw = inflateSync(Buffer.concat(idat));
  } catch (e) {
    throw bad(`corrupt PNG data: ${(e as Error).message}`);
  }
  const rowBytes = Math.ceil((width * depth) / 8);
  if (raw.length < height * (rowBytes + 1)) throw bad('truncated PNG data');
  const rows = new Uint8Array(height * rowBytes);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (rowBytes + 1)];
    const src = raw.subarray(y * (rowBytes + 1) + 1, (y + 1) * (rowBytes + 1));
    const o = y * rowBytes, up = o - rowBytes;
    for (let x = 0; x < rowBytes; x++) {
      const a = x > 0 ? rows[o + x - 1] : 0;
      const b = y > 0 ? rows[up + x] : 0;
      const c = x > 0 && y > 0 ? rows[up + x - 1] : 0;
      let pred = 0;
      if (f === 1) pred = a;
      else if (f === 2) pred = b;
      else if (f === 3) pred = (a + b) >> 1;
      else if (f === 4) {
        const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
        pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      } else if (f !== 0) throw bad(`unknown PNG filter ${f}`);
      rows[o + x] = (src[x] + pred) & 0xff;
    }
  }
  const index = new Uint8Array(width * height);
  const perByte = 8 / depth, mask = (1 << depth) - 1;
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const byte = rows[y * rowBytes + Math.floor(x / perByte)];
      index[y * width + x] = depth === 8 ? byte : (byte >> (8 - depth * ((x % perByte) + 1))) & mask;
    }
  return { width, height, index };
}

/**
 * Instance masks (pairing): a PNG the size of its image. Grey (8 or 16 bit, or RGB with R = G = B
 * everywhere): the value is the instance id. Palette (VOC, COCO-style): the palette index is the id. RGB: each distinct colour
 * is one instance, id = R·65536 + G·256 + B (ADE20K's full-format `*_seg.png`: R, G encode the
 * class and B the instance, so colour = object). 0 (black) is unlabelled and never an object.
 */
export async function readInstanceMask(path: string, image: { width: number; height: number; path: string }): Promise<InstanceMask> {
  const unreadable = (e: unknown) =>
    new UserError(`${path}: cannot read the instance mask (${(e as NodeJS.ErrnoException).code ?? (e as Error).message.split('\n')[0]}); give a PNG of instance ids`);
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw unreadable(e);
  }
  const sizeCheck = (width: number, height: number) => {
    if (width !== image.width || height !== image.height) {
      throw new UserError(`${path}: instance mask is ${width}x${height} but its image ${image.path} is ${image.width}x${image.height}; masks must have the image's size`);
    }
  };
  const pal = readPaletteIndices(bytes, path);
  if (pal) {
    sizeCheck(pal.width, pal.height);
    return { width: pal.width, height: pal.height, ids: Uint32Array.from(pal.index), kind: 'palette' };
  }
  let out: { data: Buffer; info: sharp.OutputInfo };
  try {
    const img = sharp(bytes, { failOn: 'error' });
    const meta = await img.metadata();
    const depth = meta.depth === 'ushort' ? 'ushort' : 'uchar';
    out = await img.raw({ depth }).toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw unreadable(e);
  }
  const { width, height, channels } = out.info;
  sizeCheck(width, height);
  const wide = out.data.length === width * height * channels * 2;
  const px = wide ? new Uint16Array(out.data.buffer, out.data.byteOffset, width * height * channels) : out.data;
  const ids = new Uint32Array(width * height);
  // A grey mask saved as RGB (R = G = B everywhere, as many tools write it) is read as grey.
  let colour = false;
  if (channels >= 3) for (let p = 0; p < width * height && !colour; p++) colour = px[p * channels + 1] !== px[p * channels] || px[p * channels + 2] !== px[p * channels];
  if (colour && wide) throw new UserError(`${path}: 16-bit colour instance masks are not supported; give 8-bit RGB or a grey PNG of ids`);
  for (let p = 0; p < width * height; p++) {
    ids[p] = colour ? px[p * channels] * 65536 + px[p * channels + 1] * 256 + px[p * channels + 2] : px[p * channels];
  }
  return { width, height, ids, kind: colour ? 'rgb' : 'grey' };
}

/**
 * Per-instance patch coverage (down-scaled like binary masks). Ids in `ignore` are unlabelled
 * like 0; instances with less than `minPatches` patches of area are dropped.
 */
export function instanceCoverage(
  mask: InstanceMask,
  pp: PreprocessSpec,
  options: PreprocessOptions,
  layout: TokenLayout,
  minPatches = 1,
  ignore: ReadonlySet<number> = ignoredIds(mask.kind, undefined),
): { id: number; cov: Float64Array; area: number }[] {
  const ids = [...new Set(mask.ids)].filter((v) => v !== 0 && !ignore.has(v)).sort((a, b) => a - b);
  const out: { id: number; cov: Float64Array; area: number }[] = [];
  const bin = new Uint8Array(mask.ids.length);
  for (const id of ids) {
    for (let p = 0; p < bin.length; p++) bin[p] = mask.ids[p] === id ? 1 : 0;
    const cov = downscaleMask({ width: mask.width, height: mask.height, data: bin }, pp, options, layout);
    let area = 0;
    for (const c of cov) area += c;
    if (area >= minPatches) out.push({ id, cov, area });
  }
  return out;
}
