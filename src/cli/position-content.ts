import { Command, Option } from 'commander';
import { addModelOptions, type ModelFlags } from './model-options.js';
import { addImageRunOptions, addProgressOption, imageArgs, imageSourceFor, withJobContext, type ImageRunFlags } from './context.js';
import { UserError } from '../errors.js';
import { preprocessFor } from '../images/preprocess.js';
import { parseDevice } from '../runtime/device.js';
import { runPositionContent, writePositionContent } from '../jobs/position-content.js';
import { parseLayers } from './embed.js';
import type { LayerSelection } from '../runtime/vit-graph.js';
import { loadSpec } from '../arch/load.js';
import { expandImagePaths, fileListing } from '../images/sources.js';
import { ListingSource, NpyPixels, type ImageSource } from '../images/source.js';

interface PcFlags extends ModelFlags, ImageRunFlags {
  out: string;
  embedding: string;
  tokens: string;
  layers?: LayerSelection;
  pixels?: string;
  figures: boolean;
}

export function positionContentCommand(): Command {
  const cmd = new Command('position-content')
    .description('split each layer’s token embeddings into a per-position mean and content, and measure each mode’s content–content, content–position, position–content and position–position logit energy')
    .argument('<model>', 'vision model directory (HF or timm layout), checkpoint file, or Hugging Face id org/name[@rev]')
    .argument('[images...]', 'at least 2 image files or folders (one input size); omit with --pixels')
    .requiredOption('-o, --out <dir>', 'output directory (position_content.json, shares.npy, heads.csv, position_content.svg/.png)')
    .addOption(new Option('--embedding <kind>', 'ln: LayerNorm output feeding the attention (the modes’ own space); residual: the stream before it').choices(['ln', 'residual']).default('ln'))
    .addOption(new Option('--tokens <which>', 'tokens in the sums: all (as the attention sees them) or patches').choices(['all', 'patches']).default('all'))
    .addOption(new Option('--layers <list>', 'comma-separated 0-based layers, or all').default('all').argParser(parseLayers))
    .option('--pixels <file.npy>', 'float32 [N, 3, S, S] pixels, already normalised: bypasses decoding and preprocessing')
    .option('--no-figures', 'skip the figure')
    .addHelpText(
      'after',
      '\nDefinition: P_t = mean over images of token t’s embedding, C = x − P. Mode n’s logit\n' +
        'σ_n (x_i·u_n)(v_n·x_j) splits into CC + CP + PC + PP (query side first); the share of XY is\n' +
        'Σ XY² / Σ of all four (sums over images and token pairs). Heads and layers sum the energies.\n' +
        'Runs the images twice (means, then content), both passes with progress; an unreadable image is\n' +
        'skipped in both and listed. Vision transformers only; indices 0-based.\n' +
        '\nExample:\n  qkscope position-content google/vit-base-patch16-224 ./val --out runs/pos\n' +
        '  qkscope position-content facebook/dino-vits16 ./val --embedding residual --tokens patches --out runs/pos-res\n',
    );
  addImageRunOptions(cmd);
  addProgressOption(cmd);
  addModelOptions(cmd);
  cmd.action(async (model: string, images: string[], flags: PcFlags) => {
    const device = parseDevice(flags.device);
    // Check the inputs before the model loads (a typo should not wait for a download).
    const paths = imageArgs('position-content', images, flags, expandImagePaths, 2);
    const { spec, close } = await loadSpec(model, flags);
    let source: ImageSource | undefined;
    try {
      const sel = flags.layers ?? 'all';
      const layers = sel === 'all' ? undefined : sel;
      source = imageSourceFor(spec, paths, flags);
      const src = source;
      const r = await withJobContext(
        flags,
        (ctx) =>
          runPositionContent(
            spec,
            src,
            { embedding: flags.embedding as 'ln' | 'residual', tokens: flags.tokens as 'all' | 'patches', layers, batch: flags.batch, device, threads: flags.threads, input: model },
            ctx,
          ),
        { signals: true },
      );
      const { files } = await writePositionContent(r, flags.out, { figures: flags.figures, argv: process.argv.slice(2) });
      const sk = r.skipped.length;
      process.stdout.write(
        `${spec.modelId}: position/content shares of ${r.layers.length} layer${r.layers.length === 1 ? '' : 's'} over ${r.images} images${sk ? ` (${sk} skipped)` : ''}; wrote ${files.join(', ')} to ${flags.out}\n`,
      );
      if (sk) {
        process.stdout.write('skipped images (listed in position_content.json):\n');
        for (const s of r.skipped.slice(0, 20)) process.stdout.write(`  ${s.label}: ${s.reason}\n`);
        if (sk > 20) process.stdout.write(`  ... and ${sk - 20} more\n`);
      }
    } finally {
      source?.close();
      await close();
    }
  });
  return cmd;
}
