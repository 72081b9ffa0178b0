/**
 * The one image-batch loop every image-running command uses (embed, scan, ablate,
 * position-content, anisotropy, objects, pairing, contributions, figure modes, serve):
 *
 * - images are decoded and preprocessed (sharp works on libuv's threads) for the next batch
 *   while the caller runs the current one through the model;
 * - one batch size default (DEFAULT_BATCH);
 * - one skip-and-report policy: an image that cannot be used (corrupt, truncated, too large,
 *   not a photo, unreadable) is left out of its batch and reported with its own reason; the run
 *   goes on. Errors that are not about the image (bugs) stop the run;
 * - progress: `progress.advance` after each batch the caller finished (images and skips).
 *
 *   for await (const b of imageBatches(source, { batch: 8, progress })) {
 *     const r = await rt.run(b.pixels, b.items.length);   // b.items[i] is row i
 *     ...                                                   // b.skipped: [{ id, label, reason }]
 *   }
 */
import { skipReason, type ImageSource, type LoadedImage } from '../images/source.js';
import type { Progress, StopSignal } from '../progress.js';

/** Images per forward pass unless a command is told otherwise (`--batch`). */
export const DEFAULT_BATCH = 8;

export interface BatchItem<M> {
  /** Index in the source. */
  id: number;
  info: LoadedImage;
  /** What `prepare` returned for this image. */
  extra: M;
}

export interface SkippedImage {
  id: number;
  label: string;
  reason: string;
  /** What was learnt before the image failed (bytes, sha256), when anything was. */
  info?: Partial<LoadedImage>;
}

/** How a manifest lists skipped images, in every command: source index (0-based), path, reason. */
export function skippedEntries(skipped: readonly SkippedImage[]): { index: number; path: string; reason: string }[] {
  return skipped.map((s) => ({ index: s.id, path: s.label, reason: s.reason }));
}

export interface ImageBatch<M> {
  /** [items.length, C, H, W] float32, row i = items[i]. */
  pixels: Float32Array;
  items: BatchItem<M>[];
  skipped: SkippedImage[];
}

export interface BatchLoopOptions<M> {
  /** Which images, in order (default: all of the source). */
  ids?: readonly number[];
  batch?: number;
  progress?: Progress;
  /** Checked between batches: `stop: true` ends the loop after the batch in flight. */
  stop?: StopSignal;
  /**
   * Per-image work done ahead with the decoding (e.g. reading the image's mask), given what
   * loading found. Throwing an image error (ImageDecodeError, a file-system error) skips it.
   */
  prepare?: (id: number, info: LoadedImage) => Promise<M> | M;
  /** 'report' (default): skip unusable images and go on; 'fail': the first one ends the run. */
  onBadImage?: 'report' | 'fail';
}

/** Thrown by the loop under `onBadImage: 'fail'`. */
export class BadImageError extends Error {
  constructor(
    readonly label: string,
    readonly reason: string,
  ) {
    super(`${label}: ${reason}`);
  }
}

async function loadBatch<M>(source: ImageSource, ids: readonly number[], opts: BatchLoopOptions<M>): Promise<ImageBatch<M>> {
  const [h, w] = source.imageSize;
  const per = source.channels * h * w;
  const pixels = new Float32Array(ids.length * per);
  const results = await Promise.all(
    ids.map(async (id, slot): Promise<BatchItem<M> | SkippedImage> => {
      let info: LoadedImage | undefined;
      try {
        info = await source.load(id, pixels, slot * per);
        const extra = opts.prepare ? await opts.prepare(id, info) : (undefined as M);
        return { id, info, extra };
      } catch (e) {
        const reason = skipReason(e);
        if (reason === null) throw e;
        return { id, label: source.label(id), reason, ...(info ? { info } : {}) };
      }
    }),
  );
  const items: BatchItem<M>[] = [];
  const skipped: SkippedImage[] = [];
  results.forEach((r, slot) => {
    if ('reason' in r) {
      skipped.push(r);
      return;
    }
    // Squeeze out the slots of skipped images so row i is items[i].
    const row = items.length;
    if (row !== slot) pixels.copyWithin(row * per, slot * per, (slot + 1) * per);
    items.push(r);
  });
  if (opts.onBadImage === 'fail' && skipped.length) throw new BadImageError(skipped[0].label, skipped[0].reason);
  return { pixels: items.length === ids.length ? pixels : pixels.subarray(0, items.length * per), items, skipped };
}

/**
 * Yields the source's images in batches, loading the next batch while the caller works on the
 * current one. Memory: two batches of pixels.
 */
export async function* imageBatches<M = undefined>(source: ImageSource, opts: BatchLoopOptions<M> = {}): AsyncGenerator<ImageBatch<M>, void, undefined> {
  const ids = opts.ids ?? Array.from({ length: source.count }, (_, i) => i);
  const size = opts.batch ?? DEFAULT_BATCH;
  if (!Number.isInteger(size) || size < 1) throw new Error(`imageBatches: batch ${size} is not a positive integer`);
  const chunks: (readonly number[])[] = [];
  for (let i = 0; i < ids.length; i += size) chunks.push(ids.slice(i, i + size));
  let next: Promise<ImageBatch<M>> | null = chunks.length ? loadBatch(source, chunks[0], opts) : null;
  // The prefetch may fail while the caller is busy; it is awaited (and rethrown) below.
  next?.catch(() => undefined);
  for (let k = 0; k < chunks.length; k++) {
    const cur = await next!;
    next = k + 1 < chunks.length ? loadBatch(source, chunks[k + 1], opts) : null;
    next?.catch(() => undefined);
    yield cur;
    opts.progress?.advance(cur.items.length + cur.skipped.length, cur.skipped.length);
    if (opts.stop?.stop) break;
  }
}

/** Every image of a small set loaded in one batch (single-image commands); unusable images fail. */
export async function loadAll(source: ImageSource): Promise<ImageBatch<undefined>> {
  return loadBatch<undefined>(source, Array.from({ length: source.count }, (_, i) => i), { onBadImage: 'fail' });
}
