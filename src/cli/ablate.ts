import { Command, Option } from 'commander';
import { addModelOptions, positiveInt, type ModelFlags } from './model-options.js';
import { addImageRunOptions, addProgressOption, imageArgs, imageSourceFor, withJobContext, type ImageRunFlags } from './context.js';
import { UserError } from '../errors.js';
import { loadSpec } from '../arch/load.js';
import { preprocessFor } from '../images/preprocess.js';
import { ListingSource, NpyPixels, type ImageSource } from '../images/source.js';
import { fileListing } from '../images/sources.js';
import { expandClassFolders, labelsFromCsv, labelsFromFolders } from '../data/labels.js';
import { parseDevice } from '../runtime/device.js';
import { runAblation, sweepTargets, writeAblation, type AblationTarget, type SweepKind } from '../jobs/ablate.js';

interface AblateFlags extends ModelFlags, ImageRunFlags {
  out: string;
  layer?: number;
  head?: number;
  modes?: number[] | 'all';
  topModes?: number;
  sweep?: boolean;
  labels?: string;
  labelMap?: string;
  pixels?: string;
  figures: boolean;
}

function nonNegInt(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isInteger(n) || n < 0) throw new UserError(`${flag} ${v}: expected a 0-based index (whole number ≥ 0)`);
    return n;
  };
}

/** `--modes 0,3` (0-based) or `all`. Range is checked once the model is known. */
export function parseModes(v: string): number[] | 'all' {
  if (v.trim().toLowerCase() === 'all') return 'all';
  const out = v.split(',').map((s) => s.trim()).map((s) => {
    const n = Number(s);
    if (s === '' || !Number.isInteger(n) || n < 0) throw new UserError(`--modes ${v}: expected comma-separated 0-based mode indices like 0,3 (or all)`);
    return n;
  });
  return [...new Set(out)];
}

export function ablateCommand(): Command {
  const cmd = new Command('ablate')
    .description('remove singular modes of a head by the exact weight edit W_q ← W_q(I − Σ u_n u_nᵀ) and measure the change of attention and output')
    .argument('<model>', 'vision model directory (HF or timm layout), checkpoint file, or Hugging Face id org/name[@rev]')
    .argument('[images...]', 'image files or folders (a folder of class folders with --labels folders); omit with --pixels')
    .requiredOption('-o, --out <dir>', 'output directory (ablate.json, ablate.csv, ablate.svg/.png for --sweep)')
    .addOption(new Option('--layer <l>', '0-based block index of the head').argParser(nonNegInt('--layer')))
    .addOption(new Option('--head <h>', '0-based head index').argParser(nonNegInt('--head')))
    .addOption(new Option('--modes <list>', 'comma-separated 0-based modes (e.g. 0,3) or all: removed together; with --sweep, each removed in turn').argParser(parseModes))
    .addOption(new Option('--top-modes <n>', 'with --sweep: sweep only the n modes with the largest σ (modes 0..n−1) of each head').argParser(positiveInt('--top-modes')))
    .option('--sweep', 'remove modes one at a time: every mode of --layer/--head; without --head, each head’s top mode (mode 0) across layers (or in --layer); ranked, with a figure')
    .option('--labels <file|folders>', 'ground truth for accuracy: a CSV of file,class_index, or "folders" (class = parent folder name)')
    .option('--label-map <file>', 'with --labels folders: class names, one per line (index = line, 0-based), or JSON array / {name: index}')
    .option('--pixels <file.npy>', 'float32 [N, 3, S, S] pixels, already normalised: bypasses decoding and preprocessing')
    .option('--no-figures', 'skip the sweep figure')
    .addHelpText(
      'after',
      '\nEvery image runs once through the original model (the reference, which also keeps the residual\n' +
        'stream entering each ablated layer); each ablation of a layer-l head then reruns only blocks\n' +
        'l..L−1 from that residual with the edited query weight fed as a graph input (nothing is rebuilt),\n' +
        'so it costs about (L − l)/L of a forward pass. Sweeps over many layers of a large model run in\n' +
        'several passes over the images to bound memory. Progress counts forward runs (images × passes\n' +
        'and images × ablations). Unreadable images are skipped and listed. Indices are 0-based.\n' +
        'Vision transformers only.\n' +
        '\nExample:\n  qkscope ablate google/vit-base-patch16-224 ./val --layer 5 --head 3 --modes 0,3 --labels labels.csv --out runs/abl\n' +
        '  qkscope ablate google/vit-base-patch16-224 ./val --layer 5 --head 3 --sweep --top-modes 8 --out runs/abl-sweep\n' +
        '  qkscope ablate google/vit-base-patch16-224 ./imagenet-folders --labels folders --label-map wnids.txt --sweep --out runs/abl-heads\n',
    );
  addImageRunOptions(cmd);
  addProgressOption(cmd);
  addModelOptions(cmd);
  cmd.action(async (model: string, images: string[], flags: AblateFlags) => {
    const device = parseDevice(flags.device);
    if (!flags.sweep && flags.topModes !== undefined) throw new UserError('--top-modes limits a --sweep; to remove the top modes together give --modes 0,1,...');
    if (!flags.sweep && (flags.layer === undefined || flags.head === undefined || !flags.modes)) {
      throw new UserError('ablate: give --layer L --head H --modes 0,3 (or --sweep)');
    }
    if (flags.labelMap && flags.labels !== 'folders') throw new UserError('--label-map goes with --labels folders');
    if (flags.labels && flags.pixels) throw new UserError(`--labels ${flags.labels} with --pixels: labels name image files; run on the image files instead`);
    // Check the inputs before the model loads (a typo should not wait for a download).
    const paths = imageArgs('ablate', images, flags, expandClassFolders);
    let labels: Int32Array | undefined;
    if (flags.labels === 'folders') labels = labelsFromFolders(paths, flags.labelMap);
    else if (flags.labels) labels = labelsFromCsv(flags.labels, paths);

    const { spec, close } = await loadSpec(model, flags);
    let source: ImageSource | undefined;
    try {
      let targets: AblationTarget[];
      let sweep: SweepKind | null = null;
      if (flags.sweep) ({ targets, sweep } = sweepTargets(spec, { layer: flags.layer, head: flags.head, modes: flags.modes, topModes: flags.topModes }));
      else targets = [{ layer: flags.layer!, head: flags.head!, modes: flags.modes === 'all' ? Array.from({ length: spec.headDim }, (_, n) => n) : flags.modes! }];
      source = imageSourceFor(spec, paths, flags);
      const src = source;
      const result = await withJobContext(
        flags,
        (ctx) => runAblation(spec, src, { targets, sweep, batch: flags.batch, device, threads: flags.threads, labels, input: model }, ctx),
        { signals: true },
      );
      if (result.images === 0) {
        throw new UserError(`none of the ${result.skipped.length} image${result.skipped.length === 1 ? '' : 's'} could be used (${result.skipped[0]?.label}: ${result.skipped[0]?.reason})`);
      }
      const { files } = await writeAblation(result, flags.out, { figures: flags.figures, argv: process.argv.slice(2) });
      const best = result.effects.length === 1 ? result.effects[0] : null;
      const sk = result.skipped.length;
      process.stdout.write(
        `${spec.modelId}: ${targets.length} ablation${targets.length === 1 ? '' : 's'} over ${result.images} image${result.images === 1 ? '' : 's'}` +
          (sk ? ` (${sk} skipped)` : '') +
          (best ? ` (attention KL ${best.attention.mean_kl.toPrecision(3)}${best.output.top1_agreement !== null ? `, top-1 agreement ${(best.output.top1_agreement * 100).toFixed(1)}%` : ''})` : '') +
          `; wrote ${files.join(', ')} to ${flags.out}\n`,
      );
      if (sk) {
        process.stdout.write('skipped images (listed in ablate.json):\n');
        for (const s of result.skipped.slice(0, 20)) process.stdout.write(`  ${s.label}: ${s.reason}\n`);
        if (sk > 20) process.stdout.write(`  ... and ${sk - 20} more\n`);
      }
      if (result.interrupted) throw new UserError(`ablate interrupted after ${result.images} images; ${flags.out} holds the effects over those (rerun to do them all)`, 130);
    } finally {
      source?.close();
      await close();
    }
  });
  return cmd;
}
