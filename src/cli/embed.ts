import { Command, Option } from 'commander';
import { addModelOptions, positiveInt, type ModelFlags } from './model-options.js';
import { loadSpec } from '../arch/load.js';
import { requireForward } from '../arch/runnable.js';
import { UserError } from '../errors.js';
import { ListingSource, NpyPixels, type ImageSource } from '../images/source.js';
import { expandImagePaths, fileListing } from '../images/sources.js';
import { preprocessFor } from '../images/preprocess.js';
import { parseDevice } from '../runtime/device.js';
import type { LayerSelection } from '../runtime/vit-graph.js';
import { runEmbed, writeEmbed } from '../jobs/embed.js';
import { addImageRunOptions, addProgressOption, imageArgs, imageSourceFor, withJobContext, type ImageRunFlags } from './context.js';

interface EmbedFlags extends ModelFlags, ImageRunFlags {
  out: string;
  layers?: LayerSelection;
  attention?: boolean;
  pixels?: string;
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
    .option('--pixels <file.npy>', 'float32 [N, 3, S, S] pixels, already normalised: bypasses decoding and preprocessing')
    .addHelpText(
      'after',
      '\nOutputs are float32 .npy, token order as in tokens.json (special tokens, then patches in raster order).\n' +
        'Unreadable images are skipped and listed (images.json gives each input its row, or null).\n' +
        '\nExample:\n  qkscope embed google/vit-base-patch16-224 cat.jpg dog.png --out runs/emb --layers 0,5,11 --attention\n' +
        '  qkscope embed facebook/dinov2-small ./images --out runs/dino --batch 16\n' +
        '  qkscope embed ./my-vit --pixels batch.npy --out runs/px\n',
    );
  addImageRunOptions(cmd);
  addProgressOption(cmd);
  addModelOptions(cmd);
  cmd.action(async (model: string, images: string[], flags: EmbedFlags) => {
    const device = parseDevice(flags.device);
    // Check the inputs before the model loads (a typo should not wait for a download).
    const paths = imageArgs('embed', images, flags);
    const { spec, close } = await loadSpec(model, flags);
    try {
      requireForward(spec, 'embed');
      const source = imageSourceFor(spec, paths, flags);
      const result = await withJobContext(
        flags,
        async (ctx) => {
          const run = await runEmbed(spec, source, { layers: flags.layers ?? 'all', attention: !!flags.attention, batch: flags.batch, device, threads: flags.threads, input: model }, ctx);
          return writeEmbed(run, flags.out, { argv: process.argv.slice(2), stop: ctx.stop });
        },
        { signals: true },
      );
      const n = result.rows;
      process.stdout.write(
        `${spec.modelId}: ${n} image${n === 1 ? '' : 's'}${result.skipped.length ? ` (${result.skipped.length} skipped)` : ''}, ${result.tokens} tokens, layers ${result.layers.join(',')}` +
          `${result.classes !== null ? `, ${result.classes} classes` : ''} (${result.imagesPerSec.toFixed(2)} images/s); wrote ${result.files.join(', ')} to ${flags.out}\n`,
      );
      if (result.skipped.length) {
        process.stdout.write('skipped images (listed in images.json):\n');
        for (const s of result.skipped.slice(0, 20)) process.stdout.write(`  ${s.label}: ${s.reason}\n`);
        if (result.skipped.length > 20) process.stdout.write(`  ... and ${result.skipped.length - 20} more\n`);
      }
      if (n === 0 && result.skipped.length) throw new UserError(`none of the ${result.skipped.length} image${result.skipped.length === 1 ? '' : 's'} could be used (reasons above and in ${flags.out}/images.json)`);
      if (result.interrupted) throw new UserError(`embed interrupted after ${n} images; ${flags.out} holds those (rerun to do them all)`, 130);
    } finally {
      await close();
    }
  });
  return cmd;
}
