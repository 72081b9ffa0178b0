import { Command, Option } from 'commander';
import { extname } from 'node:path';
import { addModelOptions, positiveInt, type ModelFlags } from './model-options.js';
import { UserError } from '../errors.js';
import { runCompare, writeCompare } from '../jobs/compare.js';
import { withJobContext } from './context.js';

interface CompareFlags extends ModelFlags {
  out: string;
  plain?: boolean;
  relative?: boolean;
  threads?: number;
  title?: string;
}

export function compareCommand(): Command {
  const cmd = new Command('compare')
    .description("the paper's main figure: layer-mean σ-weighted cosine against normalised depth, one line per model")
    .argument('<model-or-run...>', 'finished `qkscope svd` run directories, or models (analysed now, nothing else written)')
    .requiredOption('-o, --out <file>', 'figure path: .svg or .png (both are written; a .json with the curves beside them)')
    .option('--plain', 'use the plain mean of mode cosines instead of the σ-weighted one')
    .option('--relative', "subtract each layer's anisotropy baseline (needs RUN/anisotropy.json from `qkscope anisotropy MODEL IMAGES --run RUN`)")
    .option('--title <text>', 'figure title')
    .addOption(new Option('--threads <n>', 'CPU threads for models analysed now (default: as svd)').argParser(positiveInt('--threads')))
    .addHelpText('after', '\nExample:\n  qkscope compare google/vit-base-patch16-224 facebook/dino-vitb16 openai/clip-vit-base-patch16 --out compare.png\n  qkscope compare runs/vit-b16 runs/dino-b16 --out figs/compare.svg\n  qkscope compare runs/vit-b16 runs/dino-b16 --relative --out figs/relative.png\n');
  addModelOptions(cmd);
  cmd.action(async (inputs: string[], flags: CompareFlags) => {
    const ext = extname(flags.out).toLowerCase();
    if (ext !== '.svg' && ext !== '.png') throw new UserError(`--out ${flags.out}: give a file name ending in .svg or .png`);
    const r = await withJobContext({}, (ctx) => runCompare(inputs, flags, ctx));
    const files = await writeCompare(r, flags.out);
    for (const c of r.curves) process.stdout.write(`${c.label}: ${c.value[0].toFixed(3)} (depth 0) → ${c.value[c.value.length - 1].toFixed(3)} (depth 1)\n`);
    process.stdout.write(`wrote ${files.join(', ')}\n`);
  });
  return cmd;
}
