/**
 * Where a run's pixels come from, read batch by batch (memory bounded by the batch size):
 * image files through the model's preprocessing, or a `.npy` of already-normalised pixels.
 */
import { closeSync, openSync, readSync, readdirSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import type { PreprocessSpec } from '../arch/spec.js';
import { UserError } from '../errors.js';
import { readNpyHeader } from '../report/npy.js';
import { loadBatch, type PreprocessOptions } from './preprocess.js';

export interface PixelSource {
  /** Number of images. */
  readonly count: number;
  /** [H, W] of every image. */
  readonly imageSize: [number, number];
  readonly channels: number;
  /** Images [start, start + n) as [n, C, H, W] float32. */
  read(start: number, n: number): Promise<Float32Array>;
  /** For images.json. */
  describe(): Record<string, unknown>;
  close(): void;
}

export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.webp', '.tif', '.tiff', '.gif', '.avif', '.bmp'];

/** Expands directories (sorted, image extensions only, not recursive); files are kept as given. */
export function expandImagePaths(inputs: string[]): string[] {
  const out: string[] = [];
  for (const p of inputs) {
    let st;
    try {
      st = statSync(p);
    } catch (e) {
      throw new UserError(`${p}: cannot open (${(e as NodeJS.ErrnoException).code ?? e}); check the path`);
    }
    if (st.isDirectory()) {
      const files = readdirSync(p)
        .filter((f) => IMAGE_EXTENSIONS.includes(extname(f).toLowerCase()))
        .sort()
        .map((f) => join(p, f));
      if (files.length === 0) throw new UserError(`${p}: no images (${IMAGE_EXTENSIONS.join(', ')}) in this folder`);
      out.push(...files);
    } else out.push(p);
  }
  return out;
}

export class ImageFiles implements PixelSource {
  readonly imageSize: [number, number];
  readonly channels = 3;
  constructor(
    readonly paths: string[],
    readonly pp: PreprocessSpec,
    readonly options: PreprocessOptions = {},
  ) {
    this.imageSize = [...pp.crop];
  }
  get count(): number {
    return this.paths.length;
  }
  read(start: number, n: number): Promise<Float32Array> {
    return loadBatch(this.paths.slice(start, start + n), this.pp, this.options);
  }
  describe(): Record<string, unknown> {
    return { source: 'images', count: this.count, images: this.paths.map((path, index) => ({ index, path })), preprocess: this.pp, cropRounding: this.options.cropRounding ?? 'hf' };
  }
  close(): void {}
}

/**
 * A `.npy` of float32 pixels [N, C, H, W], already normalised (bypasses preprocessing).
 * `expect` checks C and that H, W are whole patches.
 */
export class NpyPixels implements PixelSource {
  readonly count: number;
  readonly imageSize: [number, number];
  readonly channels: number;
  private fd: number | null;
  private readonly dataOffset: number;
  private constructor(
    readonly path: string,
    shape: number[],
    dataOffset: number,
    fd: number,
  ) {
    this.count = shape[0];
    this.channels = shape[1];
    this.imageSize = [shape[2], shape[3]];
    this.dataOffset = dataOffset;
    this.fd = fd;
  }

  static open(path: string, expect: { channels: number; patchSize: number; imageSize: [number, number] }): NpyPixels {
    let h;
    try {
      h = readNpyHeader(path);
    } catch (e) {
      if (e instanceof UserError) throw new UserError(`--pixels ${e.message}`);
      throw e;
    }
    const want = `[N, ${expect.channels}, ${expect.imageSize[0]}, ${expect.imageSize[1]}]`;
    if (h.dtype !== '<f4') throw new UserError(`--pixels ${path}: dtype ${h.dtype}, expected float32 ('<f4') ${want}; convert with x.astype(np.float32)`);
    const s = h.shape;
    if (s.length !== 4 || s[1] !== expect.channels || s[0] < 1) {
      throw new UserError(`--pixels ${path}: shape [${s.join(', ')}], expected ${want} (already normalised, channels first)`);
    }
    if (s[2] % expect.patchSize !== 0 || s[3] % expect.patchSize !== 0) {
      throw new UserError(`--pixels ${path}: image size ${s[2]}x${s[3]} is not a multiple of the ${expect.patchSize}-pixel patch; expected ${want}`);
    }
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (e) {
      throw new UserError(`--pixels ${path}: cannot open (${(e as NodeJS.ErrnoException).code ?? e})`);
    }
    return new NpyPixels(path, s, h.dataOffset, fd);
  }

  async read(start: number, n: number): Promise<Float32Array> {
    if (this.fd === null) throw new Error(`${this.path}: closed`);
    const per = this.channels * this.imageSize[0] * this.imageSize[1];
    const out = new Float32Array(n * per);
    const bytes = new Uint8Array(out.buffer);
    let done = 0;
    const pos = this.dataOffset + start * per * 4;
    while (done < bytes.length) {
      const r = readSync(this.fd, bytes, done, bytes.length - done, pos + done);
      if (r === 0) throw new UserError(`--pixels ${this.path}: file is truncated`);
      done += r;
    }
    return out;
  }

  describe(): Record<string, unknown> {
    return { source: 'pixels', path: this.path, count: this.count, imageSize: this.imageSize, images: Array.from({ length: this.count }, (_, index) => ({ index, path: `${this.path}[${index}]` })) };
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}
