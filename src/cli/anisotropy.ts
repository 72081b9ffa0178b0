import { Command, Option } from 'commander';
import { addModelOptions, type ModelFlags } from './model-options.js';
import { addImageRunOptions, addProgressOption, imageArgs, imageSourceFor, withJobContext, type ImageRunFlags } from './context.js';
import { parseLayers } from './embed.js';
import { UserError } from '../errors.js';
import { loadSpec } from '../arch/load.js';
import { preprocessFor } from '../images/preprocess.js';
import { ListingSource } from '../images/source.js';
import { expandImagePaths, fileListing } from '../images/sources.js';
import { parseDevice } from '../runtime/device.js';
import type { LayerSelection } from '../runtime/vit-graph.js';
import { readSvdSummary } from '../store/svd-run.js';
import { runAnisotropy, writeAnisotropy } from '../jobs/anisotropy.js';

export { ANISOTROPY_DEFINITION } from '../jobs/anisotropy.js';

interface AnisotropyFlags extends ModelFlags, ImageRunFlags {
  out?: string;
  run?: string;
  embedding: 'ln' | 'residual';
  layers: LayerSelection;
  figures: boolean;
}

export function anisotropyCommand(): Command {
  const cmd = new Command('anisotropy')
    .description('anisotropy control: per-layer mean cosine between centre-patch embeddings of different images (with n and a 95% interval), and relative cosine curves')
    .argument('<model>', 'model directory (HF or timm layout), checkpoint file, or Hugging Face id org/name[@rev]')
    .argument('<images...>', 'image files or folders of them (at least two images)')
    .option('-o, --out <dir>', 'output directory (default: the --run directory)')
    .option('--run <dir>', 'a finished `qkscope svd` run: its cosines are used (not recomputed) and anisotropy.json is written into it unless --out says otherwise')
    .addOption(new Option('--embedding <space>', 'ln: LayerNorm output (default, what attention sees); residual: the stream before LayerNorm (official code)').choices(['ln', 'residual']).default('ln'))
    .addOption(new Option('--layers <list>', 'comma-separated 0-based layers, or all').default('all').argParser(parseLayers))
    .option('--no-figures', 'skip anisotropy.svg/png')
    .addHelpText(
      'after',
      '\nWrites anisotropy.json (per layer: anisotropy with n and a 95% jackknife interval over images, mean σ-weighted cosine,\n' +
        'relative cosines per head), anisotropy.csv, anisotropy.svg/.png. Unreadable images are skipped and listed.\n' +
        '\nExample:\n  qkscope anisotropy google/vit-base-patch16-224 ./imagenet-val-500 --run runs/vit-b16\n' +
        '  qkscope anisotropy facebook/dino-vits16 a.jpg b.jpg c.jpg --out runs/dino-aniso --embedding residual\n',
    );
  addImageRunOptions(cmd);
  addProgressOption(cmd);
  addModelOptions(cmd);
  cmd.action(async (model: string, images: string[], flags: AnisotropyFlags) => {
    const device = parseDevice(flags.device);
    const outDir = flags.out ?? flags.run;
    if (!outDir) throw new UserError('anisotropy: give --out DIR (or --run RUN to write RUN/anisotropy.json)');
    const paths = expandImagePaths(images);
    if (paths.length < 2) throw new UserError(`anisotropy: give at least two images (got ${paths.length}); the baseline is a cosine between different images`);
    const svd = flags.run ? readSvdSummary(flags.run) : undefined;
    const { spec, close } = await loadSpec(model, flags);
    try {
      if (svd && (svd.dims.layers !== spec.blocks.length || svd.dims.width !== spec.width)) {
        throw new UserError(`--run ${flags.run}: that run is of a model with ${svd.dims.layers} layers, width ${svd.dims.width}; ${model} has ${spec.blocks.length}, ${spec.width}`);
      }
      const source = imageSourceFor(spec, paths, flags);
      try {
        const r = await withJobContext(
          flags,
          (ctx) =>
            runAnisotropy(
              spec,
              source,
              { embedding: flags.embedding, layers: flags.layers, batch: flags.batch, device, threads: flags.threads, cosines: svd?.layers, input: model, run: flags.run },
              ctx,
            ),
          { signals: true },
        );
        const file = await writeAnisotropy(r, outDir, { figures: flags.figures });
        const f = r.layers[0], l = r.layers[r.layers.length - 1];
        const fmt = (v: number | null) => (v === null ? 'n/a' : v.toFixed(3));
        const iv = (v: [number, number] | null) => (v ? ` [${v[0].toFixed(3)}, ${v[1].toFixed(3)}]` : '');
        const sk = r.baseline.skipped;
        process.stdout.write(
          `${spec.modelId}: ${r.baseline.images} images${sk.length ? ` (${sk.length} skipped)` : ''}; anisotropy ${fmt(f.anisotropy)}${iv(f.anisotropy_interval)} (layer ${f.layer}) → ` +
            `${fmt(l.anisotropy)}${iv(l.anisotropy_interval)} (layer ${l.layer}); relative cosine ${fmt(f.relative_mean_weighted_cosine)} → ${fmt(l.relative_mean_weighted_cosine)}; wrote ${file}\n`,
        );
        for (const s of sk.slice(0, 20)) process.stdout.write(`  skipped ${s.label}: ${s.reason}\n`);
        if (sk.length > 20) process.stdout.write(`  ... and ${sk.length - 20} more (listed in anisotropy.json)\n`);
        if (r.baseline.interrupted) throw new UserError(`anisotropy interrupted after ${r.baseline.images} images; ${file} holds the baseline over those`, 130);
      } finally {
        source.close();
      }
    } finally {
      await close();
    }
  });
  return cmd;
}
