/**
 * The models behind the explorer's image views, opened once per server (`loadSpec`, as the CLI
 * opens them) and run on the CLI's runtime (`VitRuntime`) through the one image-batch loop:
 *
 * - the Image view: one forward pass per image giving every block's LayerNorm output, attention
 *   and pre-softmax scores (the graph's Softmax input), cached for a few images;
 * - the Mode view: the top images of a mode in one batched pass through a graph that stops at the
 *   block needed, keeping that block's LayerNorm output per image (cached) and a small JPEG of
 *   the crop the model saw;
 * - the maths through the jobs: `contributionsOf` (mode contributions, the logit decomposition),
 *   `modesOf` (singular modes from the weights), `anisotropyBaseline`.
 *
 * Passes run one at a time (the CPU is the limit); caches are bounded by bytes.
 */
import { existsSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { VitSpec } from '../arch/spec.js';
import { loadSpec } from '../arch/load.js';
import { UserError } from '../errors.js';
import type { RgbImage } from '../images/decode.js';
import { preprocessFor } from '../images/preprocess.js';
import { ListingSource, type ImageSource, type LoadedImage } from '../images/source.js';
import { normalise } from '../images/preprocess.js';
import { rgbToJpeg } from '../io/jpeg.js';
import { rgbToPng } from '../io/png.js';
import type { HeadModes } from '../analysis/types.js';
import { BadImageError, imageBatches } from '../runtime/batch-loop.js';
import type { Device } from '../runtime/device.js';
import { scoresTap } from '../runtime/taps.js';
import { VitRuntime, type VitRuntimeOptions } from '../runtime/vit-runtime.js';
import type { VitOutputs } from '../runtime/vit-graph.js';
import type { TokenLayout } from '../arch/tokens.js';
import { modesOf } from '../jobs/contributions.js';
import { HttpError } from './http.js';
import type { ServerImage } from './images.js';
import { Lru, memo } from './lru.js';

export interface RunSettings {
  device?: Device;
  threads?: number;
  /** Images per forward pass (the Mode view's top images go in one pass up to twice this). */
  batch: number;
  /** Largest image decoded (pixels). */
  maxPixels: number;
}

/** Every block of one image. */
export interface Forward {
  layout: TokenLayout;
  /** [L, T, d] */
  ln: Float32Array;
  /** [L, H, T, T] */
  attention: Float32Array;
  /** [L, H, T, T] the model's own pre-softmax scores (null when the graph has no Softmax to tap). */
  scores: Float32Array | null;
}

/** One image's embeddings at one block (the Mode view). */
export interface BlockEmbedding {
  /** [T, d] LayerNorm output feeding the block. */
  x: Float32Array;
}

const MB = 1 << 20;

/** One model: spec, runtimes (built on first use) and caches. */
export class ModelSession {
  private full: Promise<VitRuntime> | null = null;
  private readonly blockRuntimes = new Lru<number, Promise<VitRuntime>>(3, () => 1, (_l, rt) => void rt.then((r) => r.close()).catch(() => undefined));
  private readonly forwards = new Lru<string, Promise<Forward>>(256 * MB);
  private readonly embeddings = new Lru<string, BlockEmbedding>(192 * MB, (e) => e.x.byteLength);
  private readonly crops = new Lru<string, RgbImage>(128 * MB, (c) => c.data.byteLength);
  private readonly thumbs = new Lru<string, Promise<Buffer>>(32 * MB);
  private readonly modes = new Lru<string, Promise<HeadModes>>(256);
  private queue: Promise<unknown> = Promise.resolve();
  readonly pp: ReturnType<typeof preprocessFor>;

  constructor(
    readonly spec: VitSpec,
    private readonly closeSource: () => Promise<void>,
    readonly settings: RunSettings,
  ) {
    if (spec.modality !== 'vision' || !spec.patchEmbed) {
      throw new HttpError(422, `${spec.modelId}: not a vision model; the image views need a ViT (text runs have the weight views only)`);
    }
    this.pp = preprocessFor(spec);
  }

  /** Runs `fn` after the passes before it (one model pass at a time). */
  serial<T>(fn: () => Promise<T>): Promise<T> {
    const job = this.queue.then(fn);
    this.queue = job.catch(() => undefined);
    return job;
  }

  /** The images as an ImageSource for this model: crops seen before are not decoded again. */
  private source(images: readonly ServerImage[]): ImageSource {
    const inner = new ListingSource({ entries: images.map((i) => i.entry) }, this.pp.pp, this.pp.options, { keepCrops: true, decode: { maxPixels: this.settings.maxPixels } });
    return new CropCacheSource(inner, images, this.crops, this.pp.pp);
  }

  private create(outputs: VitOutputs, extend?: VitRuntimeOptions['extend']): Promise<VitRuntime> {
    return VitRuntime.create(this.spec, { outputs, device: this.settings.device, threads: this.settings.threads, extend });
  }

  private fullRuntime(): Promise<{ rt: VitRuntime; tapped: boolean }> {
    const tap = scoresTap(Array.from({ length: this.spec.layers }, (_, l) => l));
    if (!this.full) {
      this.full = this.create({ ln: 'all', attention: 'all' }, tap.extend);
      this.full.catch(() => (this.full = null));
    }
    return this.full.then((rt) => ({ rt, tapped: rt.extraOutputs.length === this.spec.layers }));
  }

  private blockRuntime(l: number): Promise<VitRuntime> {
    return memo(this.blockRuntimes, l, () => this.create({ ln: [l] }));
  }

  /** Starts building block `l`'s runtime (the Head view warms the Mode view up). */
  warm(l: number): void {
    this.blockRuntime(l).catch(() => undefined);
  }

  /** Keeps what loading found: the crop (thumbnails) and the original size. */
  private keep(img: ServerImage, info: LoadedImage): void {
    if (info.crop) this.crops.set(img.id, info.crop);
    if (info.width && info.height) Object.assign(img, { width: info.width, height: info.height });
  }

  /** Every block of one image (cached per image). */
  forward(img: ServerImage): Promise<Forward> {
    return memo(
      this.forwards,
      img.id,
      () =>
        this.serial(async () => {
          const { rt, tapped } = await this.fullRuntime();
          const source = this.source([img]);
          try {
            for await (const b of imageBatches(source, { batch: 1, onBadImage: 'fail' })) {
              this.keep(img, b.items[0].info);
              const r = await rt.run(b.pixels, 1);
              const L = this.spec.layers;
              const per = this.spec.heads * rt.layout.tokens * rt.layout.tokens;
              let scores: Float32Array | null = null;
              if (tapped) {
                scores = new Float32Array(L * per);
                for (let l = 0; l < L; l++) scores.set(r.extra[`scores.${l}`].data, l * per);
              }
              return { layout: rt.layout, ln: r.ln!, attention: r.attention!, scores };
            }
            throw new Error('serve: the image did not run');
          } catch (e) {
            throw imageError(img, e);
          } finally {
            source.close();
          }
        }),
      (f) => f.ln.byteLength + f.attention.byteLength + (f.scores?.byteLength ?? 0),
    );
  }

  /**
   * Block `l`'s LayerNorm output for each image, in one batched pass over those not cached
   * (a graph that stops at block l). Unreadable images come back as errors, the rest go on.
   */
  async embed(images: readonly ServerImage[], l: number): Promise<{ layout: TokenLayout; out: Map<string, BlockEmbedding | HttpError> }> {
    const out = new Map<string, BlockEmbedding | HttpError>();
    const todo: ServerImage[] = [];
    for (const img of images) {
      const hit = this.embeddings.get(`${l}|${img.id}`);
      if (hit) out.set(img.id, hit);
      else if (!todo.some((t) => t.id === img.id)) todo.push(img);
    }
    const rt = await this.blockRuntime(l);
    if (todo.length === 0) return { layout: rt.layout, out };
    await this.serial(async () => {
      const source = this.source(todo);
      const T = rt.layout.tokens;
      const d = this.spec.width;
      try {
        for await (const b of imageBatches(source, { batch: Math.max(this.settings.batch, Math.min(todo.length, 32)) })) {
          for (const s of b.skipped) out.set(todo[s.id].id, new HttpError(422, `${todo[s.id].label}: cannot use the image (${s.reason})`));
          if (!b.items.length) continue;
          const r = await rt.run(b.pixels, b.items.length);
          b.items.forEach((it, i) => {
            const img = todo[it.id];
            this.keep(img, it.info);
            const e = { x: r.ln!.slice(i * T * d, (i + 1) * T * d) };
            this.embeddings.set(`${l}|${img.id}`, e);
            out.set(img.id, e);
          });
        }
      } finally {
        source.close();
      }
    });
    return { layout: rt.layout, out };
  }

  /** The crop the model sees (decoded again when it left the cache). */
  async crop(img: ServerImage): Promise<RgbImage> {
    const hit = this.crops.get(img.id);
    if (hit) return hit;
    const source = this.source([img]);
    try {
      const px = new Float32Array(source.channels * source.imageSize[0] * source.imageSize[1]);
      const info = await source.load(0, px, 0);
      this.keep(img, info);
      return info.crop!;
    } catch (e) {
      throw imageError(img, e);
    } finally {
      source.close();
    }
  }

  /** A small JPEG of the crop (the Mode view's cards). */
  thumbnail(img: ServerImage, side: number): Promise<Buffer> {
    return memo(
      this.thumbs,
      `${img.id}|${side}`,
      async () => {
        const c = await this.crop(img);
        return rgbToJpeg(c.data, c.width, c.height, side);
      },
      (b) => b.length,
    );
  }

  async png(img: ServerImage): Promise<Buffer> {
    const c = await this.crop(img);
    return rgbToPng(c.data, c.width, c.height);
  }

  /** Head (l, h)'s modes from the weights, as svd computes them (cached). */
  headModes(l: number, h: number): Promise<HeadModes> {
    return memo(this.modes, `${l}|${h}`, () => modesOf(this.spec, l, h));
  }

  async close(): Promise<void> {
    const all = [this.full, ...this.blockRuntimes.values()];
    this.full = null;
    this.blockRuntimes.clear();
    for (const p of all) await (await p?.catch(() => null))?.close();
    await this.closeSource();
  }
}

/**
 * A ListingSource that serves images whose crop is cached without decoding them again (the
 * same normalisation of the same crop, so the same pixels): the Mode view's top images recur
 * across the modes of a head.
 */
class CropCacheSource implements ImageSource {
  readonly count: number;
  readonly imageSize: [number, number];
  readonly channels: number;
  constructor(
    private readonly inner: ListingSource,
    private readonly images: readonly ServerImage[],
    private readonly crops: Lru<string, RgbImage>,
    private readonly pp: ListingSource['pp'],
  ) {
    this.count = inner.count;
    this.imageSize = inner.imageSize;
    this.channels = inner.channels;
  }

  label(i: number): string {
    return this.inner.label(i);
  }

  async load(i: number, out: Float32Array, offset: number): Promise<LoadedImage> {
    const img = this.images[i];
    const crop = this.crops.get(img.id);
    if (!crop) return this.inner.load(i, out, offset);
    normalise(crop, this.pp, out, offset);
    return { width: img.width ?? null, height: img.height ?? null, bytes: null, sha256: null, name: null, crop };
  }

  describe(): Record<string, unknown> {
    return this.inner.describe();
  }

  close(): void {
    this.inner.close();
  }
}

/** An image that cannot be used as a 422 naming it; other errors unchanged. */
function imageError(img: ServerImage, e: unknown): unknown {
  if (e instanceof BadImageError) return new HttpError(422, `${img.label}: cannot use the image (${e.reason})`);
  const code = (e as NodeJS.ErrnoException | null)?.code;
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return new HttpError(422, `${img.label}: cannot read the image (${code})`);
  if (e instanceof UserError) return new HttpError(422, `${img.label}: ${e.message}`);
  return e;
}

/**
 * Where the model of a run is: `summary.model.input` as given to `svd` (a path, possibly
 * relative to where svd ran, or a hub id). Relative paths are tried against the server's
 * working directory, the run directory and RUNS_DIR (and their parents).
 */
export function resolveModelInput(input: string, runDir: string, runsRoot: string): string {
  if (isAbsolute(input)) return input;
  for (const b of [process.cwd(), runDir, dirname(runDir), runsRoot, dirname(runsRoot)]) {
    const p = resolve(b, input);
    if (existsSync(p)) return p;
  }
  return input; // a hub id, or missing (loadSpec says so)
}

/** Opens models once per server, keyed by the resolved input (+ part). */
export class ModelPool {
  private sessions = new Map<string, Promise<ModelSession>>();
  constructor(
    private readonly settings: RunSettings & { offline?: boolean },
  ) {}

  get(input: string, opts: { part?: string; numHeads?: number; runId: string }): Promise<ModelSession> {
    const key = `${input}#${opts.part ?? ''}`;
    let s = this.sessions.get(key);
    if (!s) {
      s = (async () => {
        let loaded;
        try {
          loaded = await loadSpec(input, { offline: this.settings.offline, part: opts.part, numHeads: opts.numHeads });
        } catch (e) {
          if (e instanceof UserError) {
            throw new HttpError(422, `run ${opts.runId}: cannot open its model (${e.message}). The image views run the model named in summary.json's model.input; start serve from the folder where svd ran, or keep the model at that path`);
          }
          throw e;
        }
        try {
          return new ModelSession(loaded.spec, loaded.close, this.settings);
        } catch (e) {
          await loaded.close();
          throw e;
        }
      })();
      s.catch(() => this.sessions.delete(key));
      this.sessions.set(key, s);
    }
    return s;
  }

  async close(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of all) await (await s.catch(() => null))?.close();
  }
}
