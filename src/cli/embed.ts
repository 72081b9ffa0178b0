import { Command, Option } from 'commander';
import cliProgress from 'cli-progress';
import { addModelOptions, loadSpec, positiveInt, type ModelFlags } from './model-options.js';
import { UserError } from '../errors.js';
import { ImageFiles, NpyPixels, expandImagePaths, type PixelSource } from '../images/pixels.js';
import { preprocessFor } from '../images/preprocess.js';
import { parseDevice } from '../runtime/device.js';
import { runEmbedJob } from '../runtime/embed-job.js';
import type { LayerSelection } from '../runtime/vit-graph.js';

interface EmbedFlags extends ModelFlags {
  out: string;
  layers?: LayerSelection;
  attention?: boolean;
  batch: number;
  pixels?: string;
  device: string;
  threads?: number;
}

/** `--layers 0,5,11` (0-based block indices) or `all`. Range is checked once the model is known. */
export function parseLayers(v: string): LayerSelection {
  if (v.trim().toLowerCase() === 'all') return 'all';
  const parts = v.split(',').map((s) => s.trim());
  const out: number[] = [];
  for (const p of parts) {
    const n = Number(p);
    if (p === '' || !Number.isInteger(n) || n < 0) throw new UserError(`--layers ${v}: expected comma-separated 0-based layer indices like 0,5,11 (or all)`);
    out.push(n);
  }
  return out;
}

export function embedCommand(): Command {
  const cmd = new Command('embed')
    .description('run images through the model and save what attention sees: LayerNorm outputs, residual stream, attention, logits')
    .argument('<model>', 'model directory (HF or timm layout), checkpoint file, or Hugging Face id org/name[@rev]')
    .argument('[images...]', 'image files (JPEG, PNG, WebP) or folders of them; omit with --pixels')
    .requiredOption('-o, --out <dir>', 'output directory (ln.npy, residual.npy, attention.npy, logits.npy, tokens.json, images.json)')
    .addOption(new Option('--layers <list>', 'comma-separated 0-based layers to save, or all').default('all').argParser(parseLayers))
    .option('--attention', 'also save attention probabilities [N, L, H, T, T] (large)')
    .addOption(new Option('--batch <n>', 'images per forward pass').default(8).argParser(positiveInt('--batch')))
    .option('--pixels <file.npy>', 'float32 [N, 3, S, S] pixels, already normalised: bypasses decoding and preprocessing')
    .addOption(new Option('--device <device>', 'cpu, or cuda (needs onnxruntime-node with its CUDA provider)').default('cpu'))
    .addOption(new Option('--threads <n>', 'CPU threads per operator (default: onnxruntime chooses)').argParser(positiveInt('--threads')))
    .addHelpText(
      'after',
      '\nOutputs are float32 .npy, token order as in tokens.json (special tokens, then patches in raster order).\n' +
        '\nExample:\n  qkscope embed google/vit-base-patch16-224 cat.jpg dog.png --out runs/emb --layers 0,5,11 --attention\n' +
        '  qkscope embed facebook/dinov2-small ./images --out runs/dino --batch 16\n' +
        '  qkscope embed ./my-vit --pixels batch.npy --out runs/px\n',
    );
  addModelOptions(cmd);
  cmd.action(async (model: string, images: string[], flags: EmbedFlags) => {
    const device = parseDevice(flags.device);
    if (flags.pixels && images.length) throw new UserError(`--pixels ${flags.pixels}: give either --pixels or image files, not both`);
    if (!flags.pixels && images.length === 0) throw new UserError('embed: give at least one image file (or folder), or --pixels X.npy');
    // Check the inputs before the model loads (a typo should not wait for a download).
    const paths = flags.pixels ? [] : expandImagePaths(images);
    const { spec, close } = await loadSpec(model, flags);
    let source: PixelSource | undefined;
    try {
      if (flags.pixels) {
        source = NpyPixels.open(flags.pixels, { channels: spec.channels, patchSize: spec.patchSize, imageSize: spec.imageSize });
      } else {
        const { pp, defaulted, options } = preprocessFor(spec);
        if (defaulted) {
          process.stderr.write(`qkscope: ${spec.modelId} has no preprocessing config; using resize to ${pp.crop.join('x')}, bilinear, mean/std 0.5\n`);
        }
        source = new ImageFiles(paths, pp, options);
      }
      const tty = process.stderr.isTTY === true;
      const bar = tty
        ? new cliProgress.SingleBar({ format: 'embed |{bar}| {value}/{total} images | {eta_formatted} left', stream: process.stderr, hideCursor: true }, cliProgress.Presets.shades_classic)
        : undefined;
      bar?.start(source.count, 0);
      let result;
      try {
        result = await runEmbedJob(spec, source, {
          outDir: flags.out,
          layers: flags.layers ?? 'all',
          attention: !!flags.attention,
          batch: flags.batch,
          device,
          threads: flags.threads,
          onProgress: bar ? (done) => bar.update(done) : undefined,
          manifest: { input: model, argv: process.argv.slice(2) },
        });
      } finally {
        bar?.stop();
      }
      source = undefined; // closed by the job
      process.stdout.write(
        `${spec.modelId}: ${result.count} image${result.count === 1 ? '' : 's'}, ${result.tokens} tokens, layers ${result.layers.join(',')}` +
          `${result.classes !== null ? `, ${result.classes} classes` : ''} (${result.imagesPerSec.toFixed(2)} images/s); wrote ${result.files.join(', ')} to ${flags.out}\n`,
      );
    } finally {
      source?.close();
      await close();
    }
  });
  return cmd;
}
