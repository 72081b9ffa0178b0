/** Decoding image files straight into model pixels (tests and small tools; commands use the batch loop). */
import type { PreprocessSpec, VitSpec } from '../arch/spec.js';
import { decodeImage } from './decode.js';
import { preprocessFor, preprocessImage, type PreprocessOptions } from './preprocess.js';

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
