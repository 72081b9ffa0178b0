/**
 * Where a job's pixels come from, one image at a time (the batch loop in runtime/ asks for them
 * ahead of the forward pass): listed images (files, tar members, Parquet cells) through the
 * model's preprocessing, or a `.npy` of already-normalised pixels.
 *
 * An image that cannot be used throws an `ImageDecodeError` whose message is the reason (the
 * loop records it and goes on); `skipReason` words file-system errors the same way.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import type { PreprocessSpec } from '../arch/spec.js';
import { UserError } from '../errors.js';
import { readNpyHeader } from '../io/npy.js';
import { ImageDecodeError, decodeImageBytes, type DecodeOptions, type RgbImage } from './decode.js';
import { normalise, resizeAndCrop, type PreprocessOptions } from './preprocess.js';
import { ImageReader, sha256, type ImageEntry, type ImageListing } from './sources.js';

/** What loading one image found out about it. */
export interface LoadedImage {
  /** Original size (before preprocessing); null for pixel arrays. */
  width: number | null;
  height: number | null;
  /** Size and sha256 of the encoded bytes; null for pixel arrays. */
  bytes: number | null;
  sha256: string | null;
  /** The original file name where a container keeps one (Parquet `path`), else null. */
  name: string | null;
  /** The resized and cropped RGB image the model sees (only when the source keeps crops). */
  crop?: RgbImage;
}

export interface ImageSource {
  /** Number of images. */
  readonly count: number;
  /** [H, W] of every image's pixels. */
  readonly imageSize: [number, number];
  readonly channels: number;
  /** How messages and manifests name image `i` (a path, `shard.tar#member`, ...). */
  label(i: number): string;
  /** Writes image `i` as [C, H, W] float32 into `out` at `offset`. Throws ImageDecodeError (or a file-system error) for an unusable image. */
  load(i: number, out: Float32Array, offset: number): Promise<LoadedImage>;
  /** For the manifest. */
  describe(): Record<string, unknown>;
  close(): void;
}

const ERRNO_REASONS: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  ENOENT: 'file not found',
  EISDIR: 'is a directory, not an image',
  ELOOP: 'too many symbolic links',
  EIO: 'input/output error',
  EMFILE: 'too many open files',
};

/** The skip reason for an error met while loading one image; null for errors that are bugs (rethrown). */
export function skipReason(e: unknown): string | null {
  if (e instanceof ImageDecodeError) return e.message;
  const code = (e as NodeJS.ErrnoException | null)?.code;
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return `cannot read: ${ERRNO_REASONS[code] ?? 'file-system error'} (${code})`;
  return null;
}

export interface ListingSourceOptions {
  /** Parquet image column (default: detected). */
  imageColumn?: string;
  /** Keep each image's resized and cropped RGB (figures, the explorer). */
  keepCrops?: boolean;
  /** Decoding limits (pixel count). */
  decode?: DecodeOptions;
}

/** Images of a listing (files, tar members, Parquet cells), decoded and preprocessed for one model. */
export class ListingSource implements ImageSource {
  readonly imageSize: [number, number];
  readonly channels = 3;
  private readonly reader: ImageReader;
  constructor(
    readonly listing: Pick<ImageListing, 'entries'>,
    readonly pp: PreprocessSpec,
    readonly options: PreprocessOptions = {},
    private readonly opts: ListingSourceOptions = {},
  ) {
    this.imageSize = [...pp.crop];
    this.reader = new ImageReader({ imageColumn: opts.imageColumn });
  }

  get count(): number {
    return this.listing.entries.length;
  }

  label(i: number): string {
    return this.listing.entries[i].locator;
  }

  entry(i: number): ImageEntry {
    return this.listing.entries[i];
  }

  async load(i: number, out: Float32Array, offset: number): Promise<LoadedImage> {
    const { bytes, name } = await this.reader.read(this.listing.entries[i]);
    const img = await decodeImageBytes(bytes, this.opts.decode);
    let crop: RgbImage;
    try {
      crop = resizeAndCrop(img, this.pp, this.options);
    } catch (e) {
      throw new ImageDecodeError(`cannot preprocess (${(e as Error).message.split('\n')[0]})`);
    }
    normalise(crop, this.pp, out, offset);
    return { width: img.width, height: img.height, bytes: bytes.length, sha256: sha256(bytes), name, ...(this.opts.keepCrops ? { crop } : {}) };
  }

  describe(): Record<string, unknown> {
    return {
      source: 'images',
      count: this.count,
      images: this.listing.entries.map((e, index) => ({ index, path: e.locator })),
      preprocess: this.pp,
      cropRounding: this.options.cropRounding ?? 'hf',
    };
  }

  close(): void {
    this.reader.close();
  }
}

/**
 * A `.npy` of float32 pixels [N, C, H, W], already normalised (bypasses preprocessing).
 * `expect` checks C and that H, W are whole patches.
 */
export class NpyPixels implements ImageSource {
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

  label(i: number): string {
    return `${this.path}[${i}]`;
  }

  async load(i: number, out: Float32Array, offset: number): Promise<LoadedImage> {
    if (this.fd === null) throw new Error(`${this.path}: closed`);
    const per = this.channels * this.imageSize[0] * this.imageSize[1];
    const bytes = new Uint8Array(out.buffer, out.byteOffset + offset * 4, per * 4);
    let done = 0;
    const pos = this.dataOffset + i * per * 4;
    while (done < bytes.length) {
      const r = readSync(this.fd, bytes, done, bytes.length - done, pos + done);
      if (r === 0) throw new UserError(`--pixels ${this.path}: file is truncated`);
      done += r;
    }
    return { width: null, height: null, bytes: null, sha256: null, name: null };
  }

  describe(): Record<string, unknown> {
    return { source: 'pixels', path: this.path, count: this.count, imageSize: this.imageSize, images: Array.from({ length: this.count }, (_, index) => ({ index, path: `${this.path}[${index}]` })) };
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}
