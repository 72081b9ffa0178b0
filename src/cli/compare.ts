import { Command, Option } from 'commander';
import { existsSync, statSync, writeFileSync, readFileSync } from 'node:fs';
import { dirname, extname, join } from 'node:path';
import { addModelOptions, loadSpec, positiveInt, type ModelFlags } from './model-options.js';
import { readSvdSummary, runSvd, type SvdSummary } from '../store/svd-run.js';
import { layerCurve } from '../store/compare-data.js';
import { compareFigure } from '../report/figures/compare.js';
import { svgToPng } from '../report/plot.js';
import { UserError } from '../errors.js';
import { ensureDir } from '../store/ensure-dir.js';

interface CompareFlags extends ModelFlags {
  out: string;
  plain?: boolean;
  relative?: boolean;
  threads?: number;
  title?: string;
}

/** A run directory holds summary.json; anything else is a model to analyse now. */
function isRunDir(p: string): boolean {
  return existsSync(p) && statSync(p).isDirectory() && existsSync(join(p, 'summary.json'));
}

export function compareCommand(): Command {
  const cmd = new Command('compare')
    .description("the paper's main figure: layer-mean σ-weighted cosine against normalised depth, one line per model")
    .argument('<model-or-run...>', 'finished `qkscope svd` run directories, or models (analysed now, nothing else written)')
    .requiredOption('-o, --out <file>', 'figure path: .svg or .png (both are written; a .json with the curves beside them)')
    .option('--plain', 'use the plain mean of mode cosines instead of the σ-weighted one')
    .option('--relative', 'subtract each layer\'s anisotropy baseline (needs RUN/anisotropy.json from `qkscope anisotropy MODEL IMAGES --run RUN`)')
    .option('--title <text>', 'figure title')
    .addOption(new Option('--threads <n>', 'worker threads for models analysed now').argParser(positiveInt('--threads')))
    .addHelpText('after', '\nExample:\n  qkscope compare google/vit-base-patch16-224 facebook/dino-vitb16 openai/clip-vit-base-patch16 --out compare.png\n  qkscope compare runs/vit-b16 runs/dino-b16 --out figs/compare.svg\n  qkscope compare runs/vit-b16 runs/dino-b16 --relative --out figs/relative.png\n');
  addModelOptions(cmd);
  cmd.action(async (inputs: string[], flags: CompareFlags) => {
    const ext = extname(flags.out).toLowerCase();
    if (ext !== '.svg' && ext !== '.png') throw new UserError(`--out ${flags.out}: give a file name ending in .svg or .png`);
    if (flags.relative && flags.plain) throw new UserError('--relative applies to the σ-weighted cosine; drop --plain');
    const summaries: SvdSummary[] = [];
    const baselines: number[][] = [];
    for (const input of inputs) {
      if (isRunDir(input)) {
        summaries.push(readSvdSummary(input));
        if (flags.relative) baselines.push(readAnisotropy(input, summaries[summaries.length - 1].dims.layers));
        continue;
      }
      if (flags.relative) throw new UserError(`${input}: --relative needs a run directory with anisotropy.json; run \`qkscope svd ${input} --out RUN\` then \`qkscope anisotropy ${input} IMAGES --run RUN\``);
      const { spec, close } = await loadSpec(input, flags);
      try {
        summaries.push(await runSvd(spec, { threads: flags.threads, input }));
      } finally {
        await close();
      }
    }
    const curves = summaries.map((s, k) => layerCurve(s, flags.plain ? 'plain' : 'weighted', flags.relative ? baselines[k] : undefined));
    const svg = compareFigure({
      title: flags.title ?? 'Similarity preference across depth',
      subtitle: `${flags.plain ? 'plain' : 'σ-weighted'} mean of mode cosines per layer${flags.relative ? ' minus the anisotropy baseline' : ''}; shaded: 95% chance band per model`,
      relative: flags.relative,
      curves: curves.map((c) => ({ label: c.label, depth: c.depth, value: c.value, band: c.band95 })),
      yLabel: flags.plain ? 'mean cosine (layer mean)' : undefined,
    });
    ensureDir(dirname(flags.out) || '.');
    const base = flags.out.slice(0, -ext.length);
    writeFileSync(`${base}.svg`, svg);
    writeFileSync(`${base}.png`, await svgToPng(svg));
    writeFileSync(`${base}.json`, JSON.stringify({ statistic: flags.plain ? 'plain' : 'weighted', relative: !!flags.relative, curves }, null, 1) + '\n');
    for (const c of curves)
      process.stdout.write(`${c.label}: ${c.value[0].toFixed(3)} (depth 0) → ${c.value[c.value.length - 1].toFixed(3)} (depth 1)\n`);
    process.stdout.write(`wrote ${base}.svg, ${base}.png, ${base}.json\n`);
  });
  return cmd;
}

/** Per-layer anisotropy baselines from RUN/anisotropy.json (written by `qkscope anisotropy`). */
function readAnisotropy(run: string, L: number): number[] {
  const p = join(run, 'anisotropy.json');
  if (!existsSync(p)) throw new UserError(`${run}: no anisotropy.json for --relative; run \`qkscope anisotropy MODEL IMAGES --run ${run}\` first`);
  let j: { layers?: { layer: number; anisotropy: number | null }[] };
  try {
    j = JSON.parse(readFileSync(p, 'utf8'));
  } catch {
    throw new UserError(`${p}: not valid JSON; re-run qkscope anisotropy`);
  }
  const out = new Array<number>(L).fill(NaN);
  for (const l of j.layers ?? []) if (l.layer < L && typeof l.anisotropy === 'number') out[l.layer] = l.anisotropy;
  if (out.some((x) => Number.isNaN(x))) throw new UserError(`${p}: does not cover all ${L} layers; re-run qkscope anisotropy without --layers`);
  return out;
}
