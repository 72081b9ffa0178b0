import { existsSync, statSync } from 'node:fs';
import { Command, Option } from 'commander';
import { addModelOptions, type ModelFlags } from './model-options.js';
import { addImageRunOptions, addProgressOption, withJobContext, type ImageRunFlags } from './context.js';
import { UserError } from '../errors.js';
import { loadSpec } from '../arch/load.js';
import { openRun } from '../store/scan-run.js';
import { parseDevice } from '../runtime/device.js';
import { runPairing, writePairing } from '../jobs/pairing.js';

export { PAIRING_DEFINITION } from '../jobs/pairing.js';
export { instanceMaskPath } from '../data/datasets.js';

interface PairingFlags extends ModelFlags, ImageRunFlags {
  out: string;
  model?: string;
  top: number;
  minPatches: number;
  ignoreLabel?: number[] | 'none';
  figures: boolean;
}

/** `--ignore-label 255`, `0,255`, or `none`. */
export function parseIgnoreLabels(v: string): number[] | 'none' {
  if (v.trim().toLowerCase() === 'none') return 'none';
  const out = v.split(',').map((s) => {
    const n = Number(s.trim());
    if (s.trim() === '' || !Number.isInteger(n) || n < 0) throw new UserError(`--ignore-label ${v}: expected mask values like 255 or 0,255 (non-negative integers), or none`);
    return n;
  });
  return out;
}

export function pairingCommand(): Command {
  const cmd = new Command('pairing')
    .description("semantic pairing: how often a mode's top query object and top key object are the same object, per layer, with chance baseline and 95% intervals (paper figure 6)")
    .argument('<run>', 'a `qkscope scan` run directory (holds run.db)')
    .argument('<masks>', 'folder of instance masks: NAME.png (or NAME_seg.png) for image NAME.jpg; grey = instance id, palette = index, or RGB (one colour per instance, ADE20K); 0 = unlabelled')
    .requiredOption('-o, --out <dir>', 'output directory')
    .option('--model <model>', "the scanned model (default: the input recorded in the run's database)")
    .addOption(new Option('--top <k>', "each mode's top-k images").default(5).argParser((v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n <= 0) throw new UserError(`--top ${v}: expected a positive integer`);
      return n;
    }))
    .addOption(new Option('--min-patches <n>', 'ignore instances covering less than this many patches').default(1).argParser((v) => {
      const n = Number(v);
      if (!(n >= 0)) throw new UserError(`--min-patches ${v}: expected a number ≥ 0`);
      return n;
    }))
    .addOption(
      new Option('--ignore-label <values>', 'mask values that are not objects besides 0, e.g. 255 or 0,255; "none" keeps every value (default: 255, the VOC/COCO border/void label, in grey and palette masks; nothing in RGB masks)').argParser(
        parseIgnoreLabels,
      ),
    )
    .option('--no-figures', 'skip pairing.svg/png')
    .addHelpText(
      'after',
      '\nImages where fewer than two objects remain (after --ignore-label and --min-patches) are left out and counted per layer (n_single).\n' +
        'Writes pairing.json (per layer: σ-weighted and plain probability, n, n_single, chance baseline = key object drawn in proportion\n' +
        'to area, 95% bootstrap interval over images; per mode: images, same, baseline), pairing.csv, pairing.svg/.png.\n' +
        '\nExample:\n  qkscope pairing runs/vit-b16 VOC2012/SegmentationObject --out runs/vit-b16/pairing\n' +
        '  qkscope pairing runs/dino ADE20K/annotations/validation --out runs/dino-pairing --top 8 --model facebook/dino-vitb16\n',
    );
  addImageRunOptions(cmd);
  addProgressOption(cmd);
  addModelOptions(cmd);
  cmd.action(async (runDir: string, masks: string, flags: PairingFlags) => {
    const device = parseDevice(flags.device);
    if (!existsSync(masks) || !statSync(masks).isDirectory()) throw new UserError(`${masks}: not a folder; give the folder of instance masks (NAME.png per image NAME.jpg)`);
    const scan = openRun(runDir);
    try {
      const { spec, close } = await loadSpec(flags.model ?? scan.meta.model.input, flags);
      try {
        const r = await withJobContext(
          flags,
          (ctx) =>
            runPairing(
              spec,
              scan,
              masks,
              { top: flags.top, minPatches: flags.minPatches, ignoreLabels: flags.ignoreLabel, batch: flags.batch, device, threads: flags.threads, maxPixels: flags.maxPixels, input: flags.model ?? scan.meta.model.input },
              ctx,
            ),
          { signals: true },
        );
        await writePairing(r, flags.out, { figures: flags.figures });
        const fmt = (v: number | null | undefined) => (v === null || v === undefined ? 'n/a' : v.toFixed(3));
        const iv = (v: [number, number] | null | undefined) => (v ? ` [${v[0].toFixed(3)}, ${v[1].toFixed(3)}]` : '');
        const f = r.layers[0], l = r.layers[r.layers.length - 1];
        process.stdout.write(
          `${spec.modelId}: ${r.images} images (${r.skipped.length} skipped); ${r.images_used} with two or more objects, ${r.images_single} with fewer left out; ` +
            `P(same object) σ-weighted ${fmt(f.weighted_probability)}${iv(f.interval)} (layer ${f.layer}, chance ${fmt(f.baseline)}) → ${fmt(l.weighted_probability)}${iv(l.interval)} ` +
            `(layer ${l.layer}, chance ${fmt(l.baseline)}); wrote ${flags.out}\n`,
        );
        for (const s of r.skipped.slice(0, 20)) process.stdout.write(`  skipped ${s.path}: ${s.reason}\n`);
        if (r.skipped.length > 20) process.stdout.write(`  ... and ${r.skipped.length - 20} more (listed in pairing.json)\n`);
        if (r.interrupted) throw new UserError(`pairing interrupted after ${r.images} images; ${flags.out} holds the statistics over those`, 130);
      } finally {
        await close();
      }
    } finally {
      scan.db.close();
    }
  });
  return cmd;
}
