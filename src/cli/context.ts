/**
 * What every command's action shares around its job: the progress display and Ctrl-C. The first
 * SIGINT/SIGTERM asks the job to stop after the unit in flight (nothing committed is lost); a
 * second one quits at once.
 */
import { Option, type Command } from 'commander';
import type { JobContext } from '../jobs/job.js';
import type { StopSignal } from '../progress.js';
import { DEFAULT_PROGRESS_EVERY, progressDisplay } from './progress.js';
import { positiveInt } from './model-options.js';
import { DEFAULT_BATCH } from '../runtime/batch-loop.js';
import { DEFAULT_MAX_PIXELS } from '../images/decode.js';
import type { VitSpec } from '../arch/spec.js';
import { UserError } from '../errors.js';
import { preprocessFor } from '../images/preprocess.js';
import { ListingSource, NpyPixels, type ImageSource } from '../images/source.js';
import { expandImagePaths, fileListing } from '../images/sources.js';

export interface ProgressFlags {
  progressEvery?: number;
}

export function addProgressOption(cmd: Command, every = DEFAULT_PROGRESS_EVERY): Command {
  return cmd.addOption(
    new Option('--progress-every <n>', 'when stderr is not a terminal, print a progress line every n units (and at least once a minute)').default(every).argParser(positiveInt('--progress-every')),
  );
}

/** Runs `body` with a job context whose progress draws on stderr and whose stop flag follows Ctrl-C. */
export async function withJobContext<T>(flags: ProgressFlags, body: (ctx: JobContext) => Promise<T>, opts: { signals?: boolean } = {}): Promise<T> {
  const stop: StopSignal = { stop: false };
  const progress = progressDisplay({ every: flags.progressEvery });
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals > 1) process.exit(130);
    stop.stop = true;
    progress.note(`${sig}: finishing the work in flight (again to quit at once)`);
  };
  if (opts.signals) {
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
  try {
    return await body({ progress, stop });
  } finally {
    progress.end();
    if (opts.signals) {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  }
}

/** Flags of every command that runs images through the model. */
export interface ImageRunFlags extends ProgressFlags {
  batch: number;
  device: string;
  threads?: number;
  maxPixels?: number;
}

/** `--batch`, `--device`, `--threads`, `--max-pixels`: one meaning and one default everywhere. */
export function addImageRunOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--batch <n>', 'images per forward pass').default(DEFAULT_BATCH).argParser(positiveInt('--batch')))
    .addOption(new Option('--device <device>', 'cpu, or cuda (needs onnxruntime-node with its CUDA provider; see the README)').default('cpu'))
    .addOption(new Option('--threads <n>', 'CPU threads for the forward pass (default: onnxruntime uses one per core)').argParser(positiveInt('--threads')))
    .addOption(
      new Option('--max-pixels <n>', `refuse (skip) images with more pixels than this, checked from the header before decoding (default: ${DEFAULT_MAX_PIXELS / 1e6} MP)`).argParser(positiveInt('--max-pixels')),
    );
}

/**
 * The images a command runs, as every image command takes them: `--pixels X.npy` (already
 * normalised), or image files / folders through the model's own preprocessing (with a note when
 * the checkpoint has no preprocessing config). `paths` were expanded before the model loaded.
 */
export function imageSourceFor(spec: VitSpec, paths: string[], flags: { pixels?: string; maxPixels?: number }, opts: { keepCrops?: boolean } = {}): ImageSource {
  if (flags.pixels) return NpyPixels.open(flags.pixels, { channels: spec.channels, patchSize: spec.patchSize, imageSize: spec.imageSize });
  const { pp, defaulted, options } = preprocessFor(spec);
  if (defaulted) process.stderr.write(`qkscope: ${spec.modelId} has no preprocessing config; using resize to ${pp.crop.join('x')}, bilinear, mean/std 0.5\n`);
  return new ListingSource(fileListing(paths), pp, options, { keepCrops: opts.keepCrops, decode: { maxPixels: flags.maxPixels } });
}

/** `<images>` or `--pixels`, exactly one of them; the image paths (checked before the model loads). */
export function imageArgs(command: string, images: string[], flags: { pixels?: string }, expand: (inputs: string[]) => string[] = expandImagePaths, minimum = 1): string[] {
  if (flags.pixels && images.length) throw new UserError(`--pixels ${flags.pixels}: give either --pixels or image files, not both`);
  if (!flags.pixels && images.length === 0) throw new UserError(`${command}: give at least ${minimum === 1 ? 'one image file' : `${minimum} image files`} (or a folder), or --pixels X.npy`);
  return flags.pixels ? [] : expand(images);
}
