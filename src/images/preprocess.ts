/**
 * Preprocessing from `spec.preprocess`, as HF image processors (and timm's eval transforms)
 * do it on a Pillow image:
 *
 *   resize   'shortest': short side -> `resize`, long side -> int(resize * long / short)
 *            'exact':    both sides -> `resize` (HF `size: {height, width}`), then crop;
 *                        with a non-square crop, straight to the crop size
 *   crop     centre crop to `crop` [h, w]: HF takes top = (h - ch) // 2; torchvision (timm,
 *            SimMIM, I-JEPA release) rounds: top = round((h - ch) / 2). Smaller images are
 *            zero-padded.
 *   rescale  x * rescale (1/255)
 *   normalise (x - mean) / std, channels first: [3, h, w] float32
 *
 * Resampling is Pillow's (see resample.ts), with the configured filter.
 *
 * Browser-safe (no Node or sharp at run time: the exported site preprocesses dropped images with
 * this code); decoding files into batches is in load-pixels.ts.
 */
import type { PreprocessSpec, VitSpec } from '../arch/spec.js';
import { requireForward } from '../arch/runnable.js';
import type { RgbImage } from './decode.js';
import { pilResizeU8 } from './resample.js';

/** Output size of a 'shortest' resize (HF get_resize_output_image_size, default_to_square=False). */
export function shortestEdgeSize(width: number, height: number, size: number): [number, number] {
  const shortIsW = width <= height;
  const short = shortIsW ? width : height;
  const long = shortIsW ? height : width;
  const newLong = Math.trunc((size * long) / short);
  return shortIsW ? [size, newLong] : [newLong, size]; // [w, h]
}

/** Python's round() (half to even), as torchvision's center_crop uses. */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const diff = x - f;
  if (diff > 0.5) return f + 1;
  if (diff < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

export interface PreprocessOptions {
  /** Centre-crop rounding: 'hf' (floor) or 'torchvision' (round half to even). */
  cropRounding?: 'hf' | 'torchvision';
}

/** The preprocessing to use for a spec (its own, or HF ViT's defaults at the model's size). */
export function preprocessFor(spec: VitSpec): { pp: PreprocessSpec; defaulted: boolean; options: PreprocessOptions } {
  // A text model or a weights-only layout has no image size to default to: refuse, never "resize to 0x0".
  requireForward(spec);
  // HF image processors floor the crop offset; timm and the SimMIM / I-JEPA release code use torchvision's CenterCrop.
  const options: PreprocessOptions = { cropRounding: spec.family.startsWith('hf-') ? 'hf' : 'torchvision' };
  if (spec.preprocess) return { pp: spec.preprocess, defaulted: false, options };
  const [h, w] = spec.imageSize;
  return {
    pp: { resizeMode: 'exact', resize: h, crop: [h, w], resample: 'bilinear', rescale: 1 / 255, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] },
    defaulted: true,
    options,
  };
}

/** Resize + crop of an 8-bit RGB image (the integer part of the pipeline). */
export function resizeAndCrop(img: RgbImage, pp: PreprocessSpec, opts: PreprocessOptions = {}): RgbImage {
  let w: number;
  let h: number;
  if (pp.resizeMode === 'shortest') [w, h] = shortestEdgeSize(img.width, img.height, pp.resize);
  else {
    // 'exact': a square `resize` (then the crop), or straight to a non-square crop.
    [h, w] = pp.crop[0] === pp.crop[1] ? [pp.resize, pp.resize] : pp.crop;
  }
  const [ch, cw] = pp.crop;
  if (ch === h && cw === w) return { data: pilResizeU8(img.data, img.width, img.height, 3, w, h, pp.resample), width: w, height: h };
  const off = (full: number, c: number) => (opts.cropRounding === 'torchvision' ? roundHalfEven((full - c) / 2) : Math.floor((full - c) / 2));
  const top = off(h, ch);
  const left = off(w, cw);
  // Only the part of the resized image the crop keeps is computed (same bytes as resizing
  // everything); a crop larger than the image is zero-padded.
  const x0 = Math.max(0, left);
  const y0 = Math.max(0, top);
  const x1 = Math.min(w, left + cw);
  const y1 = Math.min(h, top + ch);
  const part = pilResizeU8(img.data, img.width, img.height, 3, w, h, pp.resample, { x0, y0, x1, y1 });
  if (x0 === left && y0 === top && x1 - x0 === cw && y1 - y0 === ch) return { data: part, width: cw, height: ch };
  const out = new Uint8Array(ch * cw * 3);
  const pw = x1 - x0;
  for (let y = y0; y < y1; y++) out.set(part.subarray((y - y0) * pw * 3, (y - y0 + 1) * pw * 3), ((y - top) * cw + (x0 - left)) * 3);
  return { data: out, width: cw, height: ch };
}

/** Rescale + normalise to channels-first float32, written into `out` at `offset` (or a new array). */
export function normalise(img: RgbImage, pp: PreprocessSpec, out?: Float32Array, offset = 0): Float32Array {
  const n = img.width * img.height;
  const o = out ?? new Float32Array(3 * n);
  for (let c = 0; c < 3; c++) {
    const m = pp.mean[c];
    const s = pp.std[c];
    for (let i = 0; i < n; i++) o[offset + c * n + i] = (img.data[i * 3 + c] * pp.rescale - m) / s;
  }
  return o;
}

/** Full preprocessing of a decoded image: [3, crop_h, crop_w] float32. */
export function preprocessImage(img: RgbImage, pp: PreprocessSpec, opts: PreprocessOptions = {}, out?: Float32Array, offset = 0): Float32Array {
  return normalise(resizeAndCrop(img, pp, opts), pp, out, offset);
}
