import { Command, Option } from 'commander';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { addModelOptions, positiveInt, type ModelFlags } from './model-options.js';
import { parseLayers } from './embed.js';
import { UserError } from '../errors.js';
import { parseDevice } from '../runtime/device.js';
import { resolveLayers, type LayerSelection } from '../runtime/vit-graph.js';
import { scanIntoDir } from '../jobs/scan.js';
import { parseShard, shardPath } from '../images/shard.js';
import { listImages } from '../images/sources.js';
import { loadSpec } from '../arch/load.js';
import { addImageRunOptions, addProgressOption, withJobContext, type ImageRunFlags } from './context.js';

interface ScanFlags extends ModelFlags, ImageRunFlags {
  out: string;
  top: number;
  layers?: LayerSelection;
  resume?: boolean;
  shard?: string;
  embedding: 'ln' | 'residual';
  imageColumn?: string;
  figures: boolean;
}

export function scanCommand(): Command {
  const cmd = new Command('scan')
    .description('find, for every (layer, head, mode, sign), the images that excite the mode most (score = max Q × max K), into RUN/run.db')
    .argument('<model>', 'model directory (HF or timm layout), checkpoint file, or Hugging Face id org/name[@rev]')
    .argument('<images...>', 'folders (recursive), image files, webdataset .tar shards ({000..099} ranges work), .parquet files (Hugging Face datasets), or text files listing paths')
    .requiredOption('-o, --out <dir>', 'run directory (svd results + run.db); {shard} is replaced by the shard index')
    .addOption(new Option('--top <k>', 'images kept per (layer, head, mode, sign)').default(8).argParser(positiveInt('--top')))
    .addOption(new Option('--layers <list>', 'comma-separated 0-based layers to scan, or all').default('all').argParser(parseLayers))
    .option('--resume', 'continue an interrupted scan in --out (same arguments)')
    .option('--shard <i/N>', 'scan shard i of N (0-based); auto/N or N takes i from SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX')
    .addOption(new Option('--embedding <x>', 'project the LayerNorm output (ln, the space of the modes) or the residual stream before it (residual, as the official code)').choices(['ln', 'residual']).default('ln'))
    .option('--image-column <name>', 'Parquet column holding the images (default: detected)')
    .option('--no-figures', "skip the svd figures of the run directory (heatmap, heads)")
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  qkscope scan google/vit-base-patch16-224 ~/data/imagenet/val --out runs/vit-b16-scan\n' +
        '  qkscope scan facebook/dino-vitb16 imagenet-val/validation-{00000..00013}.parquet --out runs/dino --top 16\n' +
        '  qkscope scan ./my-vit shards/val-{000..063}.tar --out runs/s/shard-{shard} --shard auto/64   # in a job array\n' +
        '  qkscope merge runs/s/shard-* --out runs/merged\n' +
        '\nKilled or interrupted scans continue with the same command plus --resume. One process at a time writes a run directory.\n',
    );
  addImageRunOptions(cmd);
  addProgressOption(cmd, 1000);
  addModelOptions(cmd);
  cmd.action(async (model: string, images: string[], flags: ScanFlags) => {
    const device = parseDevice(flags.device);
    const shard = parseShard(flags.shard);
    const out = resolve(shardPath(flags.out, shard));
    // Check the inputs before the model loads.
    const listing = await listImages(images, { imageColumn: flags.imageColumn });
    for (const w of listing.warnings) process.stderr.write(`qkscope: warning: ${w}\n`);
    if (listing.ignored) process.stderr.write(`qkscope: ${listing.ignored} file${listing.ignored === 1 ? '' : 's'} in the folders ignored (not images, .tar or .parquet)\n`);
    const { spec, close } = await loadSpec(model, flags);
    try {
      const layers = resolveLayers(flags.layers ?? 'all', spec.layers, 'layers');
      const setup = {
        listing,
        inputs: images,
        modelInput: existsSync(model) ? resolve(model) : model, // figures reload the model from here
        modelOptions: { revision: flags.revision, part: flags.part, numHeads: flags.numHeads },
        shard,
        figures: flags.figures,
      };
      const opts = {
        topK: flags.top,
        layers,
        batch: flags.batch,
        embedding: flags.embedding,
        device,
        threads: flags.threads,
        imageColumn: flags.imageColumn,
        maxPixels: flags.maxPixels,
        batchDelayMs: process.env.QKSCOPE_SCAN_BATCH_DELAY_MS ? Number(process.env.QKSCOPE_SCAN_BATCH_DELAY_MS) : undefined,
      };
      const r = await withJobContext(flags, (ctx) => scanIntoDir(spec, out, setup, { ...opts, resume: flags.resume }, ctx), { signals: true });
      const shardText = shard.count > 1 ? ` (shard ${shard.index}/${shard.count})` : '';
      if (r.interrupted) {
        throw new UserError(`scan interrupted after ${r.done + r.skipped} of ${r.total} images${shardText}; continue with the same command plus --resume`, 130);
      }
      process.stdout.write(
        `${spec.modelId}: scanned ${r.done} image${r.done === 1 ? '' : 's'}${shardText}, ${r.skipped} skipped, layers ${layers.length === spec.layers ? 'all' : layers.join(',')}, top ${flags.top} per mode and sign` +
          ` (${r.imagesPerSec.toFixed(2)} images/s); wrote ${r.dbPath}\n`,
      );
      if (r.skipped) {
        process.stdout.write(`skipped images (all in run.db, view 'skipped'):\n`);
        for (const s of r.firstSkipped) process.stdout.write(`  ${s.path}: ${s.reason}\n`);
        if (r.skipped > r.firstSkipped.length) process.stdout.write(`  ... and ${r.skipped - r.firstSkipped.length} more\n`);
      }
    } finally {
      await close();
    }
  });
  return cmd;
}
