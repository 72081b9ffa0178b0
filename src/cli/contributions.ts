import { Command, Option } from 'commander';
import { addModelOptions, positiveInt, type ModelFlags } from './model-options.js';
import { addImageRunOptions, addProgressOption, imageArgs, imageSourceFor, withJobContext, type ImageRunFlags } from './context.js';
import { UserError } from '../errors.js';
import { loadSpec } from '../arch/load.js';
import { preprocessFor } from '../images/preprocess.js';
import { ListingSource } from '../images/source.js';
import { expandImagePaths, fileListing } from '../images/sources.js';
import { parseDevice } from '../runtime/device.js';
import { runContributions, writeContributions } from '../jobs/contributions.js';

export { CONTRIBUTION_DEFINITION } from '../jobs/contributions.js';

interface ContributionsFlags extends ModelFlags, ImageRunFlags {
  out: string;
  layer: number;
  head: number;
  queryPatch?: [number, number];
  top: number;
  figures: boolean;
}

function nonNegInt(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isInteger(n) || n < 0) throw new UserError(`${flag} ${v}: expected a 0-based index (0, 1, 2, ...)`);
    return n;
  };
}

function parsePatch(v: string): [number, number] {
  const m = /^\s*(\d+)\s*,\s*(\d+)\s*$/.exec(v);
  if (!m) throw new UserError(`--query-patch ${v}: expected row,col of a patch (0-based), e.g. 7,7`);
  return [Number(m[1]), Number(m[2])];
}

export function contributionsCommand(): Command {
  const cmd = new Command('contributions')
    .description("rank one head's singular modes by their contribution to the attention scores on one image (paper figure 5)")
    .argument('<model>', 'model directory (HF or timm layout), checkpoint file, or Hugging Face id org/name[@rev]')
    .argument('<image>', 'image file (JPEG, PNG, WebP)')
    .requiredOption('-o, --out <dir>', 'output directory')
    .addOption(new Option('--layer <l>', 'block index (0-based)').argParser(nonNegInt('--layer')).makeOptionMandatory())
    .addOption(new Option('--head <h>', 'head index (0-based)').argParser(nonNegInt('--head')).makeOptionMandatory())
    .addOption(new Option('--query-patch <r,c>', 'only this query patch (row,col of the patch grid, 0-based); default: every query token').argParser(parsePatch))
    .addOption(new Option('--top <n>', 'modes drawn over the photo in the figure').default(8).argParser(positiveInt('--top')))
    .option('--no-figures', 'skip contributions.svg/png')
    .addHelpText(
      'after',
      '\nDefinition: C_n = Σ_i Σ_j A_ij σ_n (x_i·u_n)(v_n·x_j)/√d_h (x = LayerNorm output, A = attention),\n' +
        'plus bias terms; together they reproduce the model’s logits (the residual is reported).\n' +
        'Writes contributions.json/.csv, query_maps.npy, key_maps.npy, logits.npy, contributions.svg/.png\n' +
        '(the top modes’ query maps in red and key maps in cyan over the model’s crop of the photo).\n' +
        '\nExample:\n  qkscope contributions google/vit-base-patch16-224 cat.jpg --layer 5 --head 3 --out runs/contrib\n' +
        '  qkscope contributions ./my-vit dog.png --layer 0 --head 0 --query-patch 7,7 --out runs/c77\n',
    );
  addImageRunOptions(cmd);
  addProgressOption(cmd);
  addModelOptions(cmd);
  cmd.action(async (model: string, image: string, flags: ContributionsFlags) => {
    const device = parseDevice(flags.device);
    const paths = expandImagePaths([image]);
    if (paths.length !== 1 || paths[0] !== image) throw new UserError(`${image}: give one image file, not a folder`);
    const { spec, close } = await loadSpec(model, flags);
    try {
      const source = imageSourceFor(spec, paths, flags, { keepCrops: true });
      try {
        const r = await withJobContext(flags, (ctx) =>
          runContributions(spec, { source }, { layer: flags.layer, head: flags.head, queryPatch: flags.queryPatch, device, threads: flags.threads, input: model }, ctx),
        );
        await writeContributions(r, flags.out, { figures: flags.figures, top: flags.top });
        const top = r.result.modes.slice(0, 3).map((m) => `M${m.mode} ${m.contribution.toFixed(3)}`).join(', ');
        const res = r.result.check.model_relative ?? r.result.check.direct_relative;
        process.stdout.write(`${spec.modelId} L${flags.layer} H${flags.head}: top modes ${top}; residual vs model logits ${res.toExponential(2)} (relative); wrote ${flags.out}\n`);
      } finally {
        source.close();
      }
    } finally {
      await close();
    }
  });
  return cmd;
}
