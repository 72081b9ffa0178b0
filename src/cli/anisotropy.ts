import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import cliProgress from 'cli-progress';
import { addModelOptions, positiveInt, type ModelFlags } from './model-options.js';
import { parseLayers } from './embed.js';
import { UserError } from '../errors.js';
import { preprocessFor } from '../images/preprocess.js';
import { VitRuntime } from '../runtime/vit-runtime.js';
import { parseDevice, type Device } from '../runtime/device.js';
import { resolveLayers, type LayerSelection } from '../runtime/vit-graph.js';
import { CentreSums, relativeCurves, type AnisotropyLayer, type LayerCosines } from '../analysis/anisotropy.js';
import { runSvd } from '../jobs/svd.js';
import { anisotropyFigure } from '../report/figures/anisotropy.js';
import { writeFigure } from '../report/svd-figures.js';
import { toCsv } from '../io/csv.js';
import { VERSION } from '../version.js';
import type { VitSpec } from '../arch/spec.js';
import { ensureDir } from '../io/fs.js';
import { loadSpec } from '../arch/load.js';
import { centrePatch } from '../arch/tokens.js';
import { readSvdSummary } from '../store/svd-run.js';
import { expandImagePaths } from '../images/sources.js';
import { ImageFiles } from '../images/source.js';

interface AnisotropyFlags extends ModelFlags {
  out?: string;
  run?: string;
  embedding: 'ln' | 'residual';
  layers: LayerSelection;
  batch: number;
  device: string;
  threads?: number;
  figures: boolean;
}

export const ANISOTROPY_DEFINITION =
  'per layer, the mean cosine between the centre-patch embeddings of different images, mean_{i≠j} ê_i·ê_j (centre patch = raster index ⌊rows/2⌋·cols + ⌊cols/2⌋, as scan); ' +
  'relative cosine = σ-weighted cosine − anisotropy (METHOD.md §3)';

export interface AnisotropyResult {
  layers: AnisotropyLayer[];
  images: number;
  centre_patch: number;
  file: string;
}

/** Library entry point: the baseline over `paths`, joined with `cosines` (from an svd run or computed now). */
export async function runAnisotropy(
  spec: VitSpec,
  paths: string[],
  opts: {
    outDir: string;
    embedding?: 'ln' | 'residual';
    layers?: LayerSelection;
    batch?: number;
    device?: Device;
    threads?: number;
    cosines?: LayerCosines[];
    figures?: boolean;
    input?: string;
    run?: string;
    onProgress?: (done: number, total: number) => void;
  },
): Promise<AnisotropyResult> {
  if (paths.length < 2) throw new UserError(`anisotropy: give at least two images (got ${paths.length}); the baseline is a cosine between different images`);
  const embedding = opts.embedding ?? 'ln';
  const layers = resolveLayers(opts.layers ?? 'all', spec.blocks.length, '--layers');
  const { pp, options } = preprocessFor(spec);
  const source = new ImageFiles(paths, pp, options);
  const rt = await VitRuntime.create(spec, { outputs: { [embedding]: layers }, imageSize: source.imageSize, device: opts.device, threads: opts.threads });
  const d = spec.width;
  const sums = new CentreSums(layers.length, d);
  let centre: number;
  try {
    const T = rt.layout.tokens;
    centre = centrePatch(rt.layout);
    const tok = rt.layout.patchStart + centre;
    const batch = opts.batch ?? 8;
    const L = layers.length;
    for (let s = 0; s < paths.length; s += batch) {
      const n = Math.min(batch, paths.length - s);
      const r = await rt.run(await source.read(s, n), n);
      const x = r[embedding]!;
      for (let i = 0; i < n; i++) for (let li = 0; li < L; li++) sums.add(li, x, ((i * L + li) * T + tok) * d);
      opts.onProgress?.(s + n, paths.length);
    }
    sums.flush();
  } finally {
    await rt.close();
  }
  const baseline = new Map(layers.map((l, li) => [l, { value: sums.value(li), n: sums.n[li] }]));
  const cosines = opts.cosines ?? (await runSvd(spec, { threads: opts.threads, input: opts.input })).layers;
  const curves = relativeCurves(cosines, baseline, spec.blocks.length);
  ensureDir(opts.outDir);
  const file = join(opts.outDir, 'anisotropy.json');
  writeFileSync(
    file,
    JSON.stringify(
      {
        tool: 'qkscope',
        version: VERSION,
        command: 'anisotropy',
        created: new Date().toISOString(),
        model: { id: spec.modelId, input: opts.input ?? null, layers: spec.blocks.length, width: d },
        run: opts.run ?? null,
        index_base: 0,
        embedding,
        definition: ANISOTROPY_DEFINITION,
        centre_patch: centre,
        patch_grid: rt.layout.grid,
        images: paths.length,
        image_paths: paths,
        layers: curves,
      },
      null,
      1,
    ) + '\n',
  );
  writeFileSync(
    join(opts.outDir, 'anisotropy.csv'),
    toCsv([
      ['layer', 'depth', 'anisotropy', 'images', 'mean_weighted_cosine', 'relative_mean_weighted_cosine'],
      ...curves.map((c) => [c.layer, c.depth, c.anisotropy, c.images, c.mean_weighted_cosine, c.relative_mean_weighted_cosine]),
    ]),
  );
  if (opts.figures !== false && curves.length) await writeFigure(join(opts.outDir, 'anisotropy'), anisotropyFigure(spec.modelId, curves, embedding, paths.length));
  return { layers: curves, images: paths.length, centre_patch: centre, file };
}

export function anisotropyCommand(): Command {
  const cmd = new Command('anisotropy')
    .description('anisotropy control: per-layer mean cosine between centre-patch embeddings of different images, and relative cosine curves')
    .argument('<model>', 'model directory (HF or timm layout), checkpoint file, or Hugging Face id org/name[@rev]')
    .argument('<images...>', 'image files or folders of them (at least two images)')
    .option('-o, --out <dir>', 'output directory (default: the --run directory)')
    .option('--run <dir>', 'a finished `qkscope svd` run: its cosines are used (not recomputed) and anisotropy.json is written into it unless --out says otherwise')
    .addOption(new Option('--embedding <space>', 'ln: LayerNorm output (default, what attention sees); residual: the stream before LayerNorm (official code)').choices(['ln', 'residual']).default('ln'))
    .addOption(new Option('--layers <list>', 'comma-separated 0-based layers, or all').default('all').argParser(parseLayers))
    .addOption(new Option('--batch <n>', 'images per forward pass').default(8).argParser(positiveInt('--batch')))
    .addOption(new Option('--device <device>', 'cpu, or cuda').default('cpu'))
    .addOption(new Option('--threads <n>', 'CPU threads').argParser(positiveInt('--threads')))
    .option('--no-figures', 'skip anisotropy.svg/png')
    .addHelpText(
      'after',
      '\nWrites anisotropy.json (per layer: anisotropy, mean σ-weighted cosine, relative cosines per head), anisotropy.csv, anisotropy.svg/.png.\n' +
        '\nExample:\n  qkscope anisotropy google/vit-base-patch16-224 ./imagenet-val-500 --run runs/vit-b16\n' +
        '  qkscope anisotropy facebook/dino-vits16 a.jpg b.jpg c.jpg --out runs/dino-aniso --embedding residual\n',
    );
  addModelOptions(cmd);
  cmd.action(async (model: string, images: string[], flags: AnisotropyFlags) => {
    const device = parseDevice(flags.device);
    const outDir = flags.out ?? flags.run;
    if (!outDir) throw new UserError('anisotropy: give --out DIR (or --run RUN to write RUN/anisotropy.json)');
    const paths = expandImagePaths(images);
    const cosines = flags.run ? readSvdSummary(flags.run).layers : undefined;
    const { spec, close } = await loadSpec(model, flags);
    try {
      if (flags.run) {
        const s = readSvdSummary(flags.run);
        if (s.dims.layers !== spec.blocks.length || s.dims.width !== spec.width) {
          throw new UserError(`--run ${flags.run}: that run is of a model with ${s.dims.layers} layers, width ${s.dims.width}; ${model} has ${spec.blocks.length}, ${spec.width}`);
        }
      }
      const tty = process.stderr.isTTY === true;
      const bar = tty
        ? new cliProgress.SingleBar({ format: 'anisotropy |{bar}| {value}/{total} images', stream: process.stderr, hideCursor: true }, cliProgress.Presets.shades_classic)
        : undefined;
      bar?.start(paths.length, 0);
      let res;
      try {
        res = await runAnisotropy(spec, paths, {
          outDir,
          embedding: flags.embedding,
          layers: flags.layers,
          batch: flags.batch,
          device,
          threads: flags.threads,
          cosines,
          figures: flags.figures,
          input: model,
          run: flags.run,
          onProgress: bar ? (done) => bar.update(done) : undefined,
        });
      } finally {
        bar?.stop();
      }
      const f = res.layers[0], l = res.layers[res.layers.length - 1];
      const fmt = (v: number | null) => (v === null ? 'n/a' : v.toFixed(3));
      process.stdout.write(
        `${spec.modelId}: ${res.images} images; anisotropy ${fmt(f.anisotropy)} (layer ${f.layer}) → ${fmt(l.anisotropy)} (layer ${l.layer}); ` +
          `relative cosine ${fmt(f.relative_mean_weighted_cosine)} → ${fmt(l.relative_mean_weighted_cosine)}; wrote ${res.file}\n`,
      );
    } finally {
      await close();
    }
  });
  return cmd;
}
