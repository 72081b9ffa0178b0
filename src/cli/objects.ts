import { Command } from 'commander';
import { addModelOptions, type ModelFlags } from './model-options.js';
import { addImageRunOptions, addProgressOption, withJobContext, type ImageRunFlags } from './context.js';
import { UserError } from '../errors.js';
import { loadSpec } from '../arch/load.js';
import { objectsDataset } from '../data/datasets.js';
import { parseDevice } from '../runtime/device.js';
import { runObjects, writeObjects } from '../jobs/objects.js';

export { OBJECTS_DEFINITION } from '../jobs/objects.js';

interface ObjectsFlags extends ModelFlags, ImageRunFlags {
  out: string;
  figures: boolean;
}

export function objectsCommand(): Command {
  const cmd = new Command('objects')
    .description('same-object / other-object / background attention of object tokens, per layer, with 95% intervals over images (paper figure 2)')
    .argument('<model>', 'model directory (HF or timm layout), checkpoint file, or Hugging Face id org/name[@rev]')
    .argument('<dataset>', 'folder of NAME.jpg + NAME.target.png + NAME.distractor.png, or a JSON manifest')
    .requiredOption('-o, --out <dir>', 'output directory')
    .option('--no-figures', 'skip objects.svg/png')
    .addHelpText(
      'after',
      '\nDataset: a folder with NAME.jpg, NAME.target.png, NAME.distractor.png (masks: grey PNG of the image size, 0 = outside, 255 = inside),\n' +
        'or a manifest {"images": [{"image": "a.jpg", "target": "a_t.png", "distractor": "a_d.png"}]} (paths relative to it).\n' +
        'Writes objects.json (per layer: means over heads and images, n, 95% bootstrap intervals over images), objects.csv (per layer\n' +
        'and head), objects_per_image.csv, objects.svg/.png. Images that cannot be decoded are skipped and listed; a wrong mask is an error.\n' +
        '\nExample:\n  qkscope objects google/vit-base-patch16-224 ./odd-one-out --out runs/objects\n' +
        '  qkscope objects facebook/dino-vits16 dataset.json --out runs/dino-objects --batch 16\n',
    );
  addImageRunOptions(cmd);
  addProgressOption(cmd);
  addModelOptions(cmd);
  cmd.action(async (model: string, dataset: string, flags: ObjectsFlags) => {
    const device = parseDevice(flags.device);
    const items = objectsDataset(dataset);
    const { spec, close } = await loadSpec(model, flags);
    try {
      const r = await withJobContext(flags, (ctx) => runObjects(spec, items, { batch: flags.batch, device, threads: flags.threads, maxPixels: flags.maxPixels, input: model }, ctx), { signals: true });
      await writeObjects(r, flags.out, { figures: flags.figures });
      const f = r.layers[0], l = r.layers[r.layers.length - 1];
      const iv = (v: [number, number] | null) => (v ? ` [${v[0].toFixed(3)}, ${v[1].toFixed(3)}]` : '');
      process.stdout.write(
        `${spec.modelId}: ${r.images} images${r.skipped.length ? ` (${r.skipped.length} skipped)` : ''}; same-object share ${f.same_object.toFixed(3)}${iv(f.same_object_interval)} (layer 0) → ` +
          `${l.same_object.toFixed(3)}${iv(l.same_object_interval)} (layer ${l.layer}); background ${f.background.toFixed(3)} → ${l.background.toFixed(3)}; wrote ${flags.out}\n`,
      );
      for (const s of r.skipped.slice(0, 20)) process.stdout.write(`  skipped ${s.path}: ${s.reason}\n`);
      if (r.skipped.length > 20) process.stdout.write(`  ... and ${r.skipped.length - 20} more (listed in objects.json)\n`);
      if (r.interrupted) throw new UserError(`objects interrupted after ${r.images} images; ${flags.out} holds the statistics over those`, 130);
    } finally {
      await close();
    }
  });
  return cmd;
}
