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
 */
import type { PreprocessSpec, VitSpec } from '../arch/spec.js';
import { decodeImage, type RgbImage } from './decode.js';
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
  const resized = pilResizeU8(img.data, img.width, img.height, 3, w, h, pp.resample);
  const [ch, cw] = pp.crop;
  if (ch === h && cw === w) return { data: resized, width: w, height: h };
  const off = (full: number, c: number) => (opts.cropRounding === 'torchvision' ? roundHalfEven((full - c) / 2) : Math.floor((full - c) / 2));
  const top = off(h, ch);
  const left = off(w, cw);
  const out = new Uint8Array(ch * cw * 3);
  for (let y = 0; y < ch; y++) {
    const sy = y + top;
    if (sy < 0 || sy >= h) continue;
    for (let x = 0; x < cw; x++) {
      const sx = x + left;
      if (sx < 0 || sx >= w) continue;
      for (let c = 0; c < 3; c++) out[(y * cw + x) * 3 + c] = resized[(sy * w + sx) * 3 + c];
    }
  }
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

/** Decodes and preprocesses files into one [n, 3, h, w] batch. */
export async function loadBatch(paths: string[], pp: PreprocessSpec, opts: PreprocessOptions = {}): Promise<Float32Array> {
  const [h, w] = pp.crop;
  const per = 3 * h * w;
  const out = new Float32Array(paths.length * per);
  const decoded = await Promise.all(paths.map((p) => decodeImage(p)));
  decoded.forEach((img, i) => preprocessImage(img, pp, opts, out, i * per));
  return out;
}

/** Decodes and preprocesses image files with the model's own preprocessing: [n, 3, h, w]. */
export async function loadPixels(spec: VitSpec, paths: string[]): Promise<{ pixels: Float32Array; imageSize: [number, number]; defaulted: boolean }> {
  const { pp, defaulted, options } = preprocessFor(spec);
  return { pixels: await loadBatch(paths, pp, options), imageSize: [...pp.crop] as [number, number], defaulted };
}
