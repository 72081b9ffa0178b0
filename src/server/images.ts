/**
 * The images the explorer can show, by id: uploads (kept as files in a private temporary folder,
 * content-addressed `u…` ids) and images found on disk (the `--images` folders and the scans' top
 * images, `f…` ids derived from their path). Every image is read through the project's image
 * sources (src/images/: the same decoding and preprocessing as the CLI).
 *
 * What the server may read from disk: files whose real path lies inside RUNS_DIR, an `--images`
 * folder or an `--allow-images` folder; with `--allow-scan-images`, any image a scan recorded.
 */
import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { imageLabel } from '../store/explorer.js';
import sharp from 'sharp';
import { UserError } from '../errors.js';
import { DEFAULT_MAX_PIXELS, ImageDecodeError, decodeImageBytes } from '../images/decode.js';
import { sha256, type ImageEntry } from '../images/sources.js';
import type { TopkImageLocator } from '../store/scan-run.js';
import { HttpError, realInside } from './http.js';
import { Lru } from './lru.js';

export interface ServerImage {
  id: string;
  /** A short, path-free name: the file name, or the member / row of its container. */
  label: string;
  /** Where the bytes are (an upload: its file in the private folder). */
  entry: ImageEntry;
  upload: boolean;
  width?: number;
  height?: number;
}

/** Which folders the server may read images from. */
export class ReadableRoots {
  constructor(
    /** Real paths. */
    readonly roots: string[],
    /** --allow-scan-images: every image a scan recorded. */
    readonly anyScanImage = false,
  ) {}

  /** Whether the bytes of `loc` may be read (its container's real path lies inside a root). */
  allows(loc: Pick<TopkImageLocator, 'container'>, fromScan: boolean): boolean {
    if (fromScan && this.anyScanImage) return true;
    return realInside(this.roots, loc.container) !== null;
  }

  static readonly HINT = 'start serve with --images DIR (or --allow-images DIR) naming the folder that holds them, or --allow-scan-images to read every image the scans recorded';
}

// One name for an image everywhere (store/explorer.ts, shared with the static export).
export const labelOf = imageLabel;

/** The gallery key of an image on disk: 16 hex digits of its path's hash. */
export function keyOf(loc: Pick<TopkImageLocator, 'path'>): string {
  return sha256(new TextEncoder().encode(loc.path)).slice(0, 16);
}

/** The image id of an image on disk: 'f' and 20 hex digits of the same hash (so its key is `id.slice(1, 17)`). */
export function diskIdOf(loc: Pick<TopkImageLocator, 'path'>): string {
  return 'f' + sha256(new TextEncoder().encode(loc.path)).slice(0, 20);
}

export class ImageRegistry {
  readonly dir: string;
  private readonly byId = new Lru<string, ServerImage>(200_000);
  private readonly files: Lru<string, string>;

  constructor(
    readonly readable: ReadableRoots,
    /** Upload limits: bytes on disk kept (least recently used dropped), pixels per image. */
    readonly limits: { storeBytes: number; maxPixels: number } = { storeBytes: 256 << 20, maxPixels: DEFAULT_MAX_PIXELS },
  ) {
    this.dir = mkdtempSync(join(tmpdir(), 'qkscope-serve-'));
    this.files = new Lru<string, string>(limits.storeBytes, () => 0, (id, path) => {
      this.byId.delete(id);
      try {
        unlinkSync(path);
      } catch {
        // already gone
      }
    });
  }

  /** An uploaded image: checked (size from the header first, then fully decoded), kept as a file. */
  async upload(bytes: Buffer, name: string): Promise<ServerImage & { width: number; height: number }> {
    if (bytes.length === 0) throw new HttpError(400, 'empty upload: send the image file as the request body');
    const unreadable = 'not an image we can read: give a JPEG, PNG or WebP file';
    let meta: sharp.Metadata;
    try {
      meta = await sharp(bytes, { failOn: 'error', limitInputPixels: false }).metadata();
    } catch {
      throw new HttpError(415, unreadable);
    }
    if (!meta.width || !meta.height) throw new HttpError(415, unreadable);
    const max = this.limits.maxPixels;
    if (meta.width * meta.height > max) {
      throw new HttpError(413, `image too large: ${meta.width}×${meta.height} pixels; the limit is ${+(max / 1e6).toFixed(1)} megapixels (start serve with --max-pixels to change it)`);
    }
    let img;
    try {
      img = await decodeImageBytes(bytes, { maxPixels: max });
    } catch (e) {
      if (e instanceof ImageDecodeError) throw new HttpError(415, `cannot decode the image (${e.message}): give a JPEG, PNG or WebP file`);
      throw e;
    }
    const id = 'u' + sha256(bytes).slice(0, 20);
    const path = join(this.dir, id);
    if (!this.files.has(id)) writeFileSync(path, bytes, { mode: 0o600 });
    this.files.set(id, path, bytes.length);
    const label = name.replace(/[^\w .()\-]/g, '').slice(0, 80) || 'upload';
    const entry: ImageEntry = { locator: path, kind: 'file', container: path, member: null };
    const out = { id, label, entry, upload: true, width: img.width, height: img.height };
    this.byId.set(id, out);
    return out;
  }

  /** An image on disk (an `--images` file or a scan's top image); 403 when the server may not read it. */
  onDisk(loc: TopkImageLocator, fromScan: boolean): ServerImage {
    const id = diskIdOf(loc);
    const hit = this.byId.get(id);
    if (hit) return hit;
    if (!this.readable.allows(loc, fromScan)) {
      throw new HttpError(403, `${labelOf(loc)}: lies outside RUNS_DIR and the folders the server may read; ${ReadableRoots.HINT}`);
    }
    const img: ServerImage = { id, label: labelOf(loc), entry: { locator: loc.kind === 'file' ? loc.path : `${loc.container}#${loc.member}`, kind: loc.kind, container: loc.container, member: loc.member }, upload: false };
    this.byId.set(id, img);
    return img;
  }

  /** A known image, or undefined. */
  find(id: string): ServerImage | undefined {
    const img = this.byId.get(id);
    if (img?.upload) this.files.get(id); // keep a viewed upload
    return img;
  }

  get(id: string): ServerImage {
    const img = this.find(id);
    if (!img) throw new HttpError(404, `no image ${JSON.stringify(id)} on the server (uploads are kept in memory until the server stops or needs the room): upload it again`);
    return img;
  }

  close(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A UserError from the image layers as an HTTP error (422: the request was fine, the data not). */
export function asHttp(e: unknown): unknown {
  return e instanceof UserError ? new HttpError(422, e.message) : e;
}
