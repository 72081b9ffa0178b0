import { Command, Option } from 'commander';
import { extname } from 'node:path';
import { addModelOptions, positiveInt, type ModelFlags } from './model-options.js';
import { UserError } from '../errors.js';
import { parseDevice } from '../runtime/device.js';
import { runModesFigure, writeModesFigure } from '../jobs/figure-modes.js';
import { MAP_NORMALIZATIONS, type MapNormalization } from '../report/overlay.js';
import { addImageRunOptions, addProgressOption, withJobContext, type ImageRunFlags } from './context.js';
import { openRun, parseSign } from '../store/scan-run.js';
import { loadSpec } from '../arch/load.js';

interface ModesFlags extends ModelFlags, ImageRunFlags {
  layer: number;
  head: number;
  modes: string;
  sign: string;
  style: 'overlay' | 'separate';
  normalize: MapNormalization;
  images?: number;
  model?: string;
  out: string;
}

function index(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isInteger(n) || n < 0) throw new UserError(`${flag} ${v}: expected a 0-based index`);
    return n;
  };
}

/** `0-9`, `0,3,5`, `2` (0-based, inclusive ranges). */
export function parseModes(v: string, max: number): number[] {
  const out: number[] = [];
  for (const part of v.split(',').map((s) => s.trim())) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) throw new UserError(`--modes ${v}: expected 0-based modes like 0-9 or 0,3,5`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) throw new UserError(`--modes ${v}: range ${part} is backwards`);
    if (a >= max) throw new UserError(`--modes ${v}: heads have modes 0..${max - 1}`);
    for (let i = a; i <= Math.min(b, max - 1); i++) if (!out.includes(i)) out.push(i);
  }
  return out;
}

function modesCommand(): Command {
  const cmd = new Command('modes')
    .description("the paper's figure: a head's modes, each with its top images, query map in red, key map in cyan")
    .argument('<run>', 'scan run directory')
    .addOption(new Option('--layer <l>', '0-based layer').argParser(index('--layer')).makeOptionMandatory())
    .addOption(new Option('--head <h>', '0-based head').argParser(index('--head')).makeOptionMandatory())
    .option('--modes <list>', '0-based modes: 0-9, 0,3,5 (modes past the last are dropped)', '0-9')
    .option('--sign <s>', '+ (u, v), - (−u, −v) or both (two rows per mode)', '+')
    .addOption(new Option('--style <style>', 'overlay: both maps on one image; separate: side by side (official code)').choices(['overlay', 'separate']).default('overlay'))
    .addOption(
      new Option('--normalize <how>', 'map scaling: percentile (per image, median → 99th percentile: grouping modes stay readable), image (positive part ÷ image max), row (÷ max over the row)')
        .choices([...MAP_NORMALIZATIONS])
        .default('percentile'),
    )
    .addOption(new Option('--images <n>', 'images per row (default: all the scan kept)').argParser(positiveInt('--images')))
    .option('--model <model>', 'the scanned model, if it moved since the scan (default: as recorded in run.db)')
    .requiredOption('-o, --out <file>', 'FILE.png or FILE.svg (both are written, with FILE.json listing the images)')
    .addHelpText('after', '\nExample:\n  qkscope figure modes runs/vit-b16-scan --layer 3 --head 5 --modes 0-9 --sign both --out l3h5.png\n');
  addImageRunOptions(cmd);
  addProgressOption(cmd);
  addModelOptions(cmd);
  cmd.action(async (runDir: string, flags: ModesFlags) => {
    const ext = extname(flags.out).toLowerCase();
    if (ext !== '.png' && ext !== '.svg') throw new UserError(`--out ${flags.out}: give a .png or .svg file name`);
    const device = parseDevice(flags.device);
    const run = openRun(runDir);
    try {
      const modes = parseModes(flags.modes, run.meta.model.head_dim);
      const sign = parseSign(flags.sign);
      const m = run.meta.model;
      const input = flags.model ?? m.input;
      const { spec, close } = await loadSpec(input, {
        offline: flags.offline,
        revision: flags.revision ?? m.options?.revision,
        part: flags.part ?? m.options?.part,
        numHeads: flags.numHeads ?? m.options?.numHeads,
      });
      try {
        const r = await withJobContext(flags, (ctx) =>
          runModesFigure(run, spec, { layer: flags.layer, head: flags.head, modes, sign, style: flags.style, images: flags.images, normalize: flags.normalize, batch: flags.batch, device, threads: flags.threads }, ctx),
        );
        const files = await writeModesFigure(r, flags.out);
        process.stdout.write(`L${flags.layer} H${flags.head}: ${modes.length} mode${modes.length === 1 ? '' : 's'}, ${r.tiles} images; wrote ${files.join(', ')}\n`);
      } finally {
        await close();
      }
    } finally {
      run.db.close();
    }
  });
  return cmd;
}

export function figureCommand(): Command {
  return new Command('figure').description('figures from runs').addCommand(modesCommand());
}
