import { Command, Option } from 'commander';
import { addModelOptions, positiveInt, type ModelFlags } from './model-options.js';
import { UserError } from '../errors.js';
import { preprocessFor } from '../images/preprocess.js';
import { parseDevice } from '../runtime/device.js';
import { runAblation, type AblationTarget } from '../jobs/ablate.js';
import { expandClassFolders, labelsFromCsv, labelsFromFolders } from '../data/labels.js';
import { writeAblationReport } from '../jobs/ablate-report.js';
import { loadSpec } from '../arch/load.js';
import { ImageFiles, NpyPixels, type PixelSource } from '../images/source.js';

interface AblateFlags extends ModelFlags {
  out: string;
  layer?: number;
  head?: number;
  modes?: number[];
  sweep?: boolean;
  labels?: string;
  labelMap?: string;
  batch: number;
  pixels?: string;
  device: string;
  threads?: number;
  figures: boolean;
}

function nonNegInt(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isInteger(n) || n < 0) throw new UserError(`${flag} ${v}: expected a 0-based index (whole number ≥ 0)`);
    return n;
  };
}

export function parseModes(v: string): number[] {
  if (v.trim().toLowerCase() === 'all') return [-1];
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
    .addOption(new Option('--modes <list>', 'comma-separated 0-based modes removed together (e.g. 0,3), or all').argParser(parseModes))
    .option('--sweep', 'remove each mode of --layer/--head in turn; without --head, each head’s top mode (mode 0) across layers (or in --layer); ranked, with a figure')
    .option('--labels <file|folders>', 'ground truth for accuracy: a CSV of file,class_index, or "folders" (class = parent folder name)')
    .option('--label-map <file>', 'with --labels folders: class names, one per line (index = line, 0-based), or JSON array / {name: index}')
    .addOption(new Option('--batch <n>', 'images per forward pass').default(8).argParser(positiveInt('--batch')))
    .option('--pixels <file.npy>', 'float32 [N, 3, S, S] pixels, already normalised: bypasses decoding and preprocessing')
    .addOption(new Option('--device <device>', 'cpu, or cuda').default('cpu'))
    .addOption(new Option('--threads <n>', 'CPU threads per operator').argParser(positiveInt('--threads')))
    .option('--no-figures', 'skip the sweep figure')
    .addHelpText(
      'after',
      '\nEvery image runs once through the original model (the reference) and once per ablation, in one\n' +
        'onnxruntime session that takes the edited query weight as an input (nothing is rebuilt).\n' +
        'Indices are 0-based. Vision transformers only.\n' +
        '\nExample:\n  qkscope ablate google/vit-base-patch16-224 ./val --layer 5 --head 3 --modes 0,3 --labels labels.csv --out runs/abl\n' +
        '  qkscope ablate google/vit-base-patch16-224 ./val --layer 5 --head 3 --sweep --out runs/abl-sweep\n' +
        '  qkscope ablate google/vit-base-patch16-224 ./imagenet-folders --labels folders --label-map wnids.txt --sweep --out runs/abl-heads\n',
    );
  addModelOptions(cmd);
  cmd.action(async (model: string, images: string[], flags: AblateFlags) => {
    const device = parseDevice(flags.device);
    if (flags.pixels && images.length) throw new UserError(`--pixels ${flags.pixels}: give either --pixels or image files, not both`);
    if (!flags.pixels && images.length === 0) throw new UserError('ablate: give at least one image file (or folder), or --pixels X.npy');
    if (!flags.sweep && (flags.layer === undefined || flags.head === undefined || !flags.modes)) {
      throw new UserError('ablate: give --layer L --head H --modes 0,3 (or --sweep)');
    }
    if (flags.sweep && flags.modes) throw new UserError('--sweep chooses the modes itself; drop --modes (or drop --sweep)');
    if (flags.sweep && flags.head !== undefined && flags.layer === undefined) throw new UserError('--sweep --head H needs --layer L too');
    if (flags.labelMap && flags.labels !== 'folders') throw new UserError('--label-map goes with --labels folders');
    if (flags.labels && flags.pixels) throw new UserError(`--labels ${flags.labels} with --pixels: labels name image files; run on the image files instead`);
    const paths = flags.pixels ? [] : expandClassFolders(images);
    let labels: Int32Array | undefined;
    if (flags.labels === 'folders') labels = labelsFromFolders(paths, flags.labelMap);
    else if (flags.labels) labels = labelsFromCsv(flags.labels, paths);

    const { spec, close } = await loadSpec(model, flags);
    let source: PixelSource | undefined;
    try {
      if (spec.modality !== 'vision') {
        throw new UserError(`${model}: ablate runs the model on images, so it needs a vision transformer (this is a ${spec.modality} model: ${spec.family}); use \`qkscope svd\` for its modes`);
      }
      const dh = spec.headDim;
      let targets: AblationTarget[];
      let sweep: 'modes' | 'heads' | null = null;
      if (flags.sweep && flags.head !== undefined) {
        sweep = 'modes';
        targets = Array.from({ length: dh }, (_, n) => ({ layer: flags.layer!, head: flags.head!, modes: [n] }));
      } else if (flags.sweep) {
        sweep = 'heads';
        const layers = flags.layer !== undefined ? [flags.layer] : Array.from({ length: spec.layers }, (_, l) => l);
        targets = layers.flatMap((layer) => Array.from({ length: spec.heads }, (_, head) => ({ layer, head, modes: [0] })));
      } else {
        const modes = flags.modes![0] === -1 ? Array.from({ length: dh }, (_, n) => n) : flags.modes!;
        targets = [{ layer: flags.layer!, head: flags.head!, modes }];
      }
      if (flags.pixels) {
        source = NpyPixels.open(flags.pixels, { channels: spec.channels, patchSize: spec.patchSize, imageSize: spec.imageSize });
      } else {
        const { pp, defaulted, options } = preprocessFor(spec);
        if (defaulted) process.stderr.write(`qkscope: ${spec.modelId} has no preprocessing config; using resize to ${pp.crop.join('x')}, bilinear, mean/std 0.5\n`);
        source = new ImageFiles(paths, pp, options);
      }
      const result = await runAblation(spec, source, { targets, batch: flags.batch, device, threads: flags.threads, labels });
      const files = await writeAblationReport(spec, result, { outDir: flags.out, sweep, figures: flags.figures, manifest: { input: model, argv: process.argv.slice(2) } });
      const best = result.effects.length === 1 ? result.effects[0] : null;
      process.stdout.write(
        `${spec.modelId}: ${targets.length} ablation${targets.length === 1 ? '' : 's'} over ${result.images} image${result.images === 1 ? '' : 's'}` +
          (best ? ` (attention KL ${best.attention.mean_kl.toPrecision(3)}${best.output.top1_agreement !== null ? `, top-1 agreement ${(best.output.top1_agreement * 100).toFixed(1)}%` : ''})` : '') +
          `; wrote ${files.join(', ')} to ${flags.out}\n`,
      );
    } finally {
      source?.close();
      await close();
    }
  });
  return cmd;
}
