import { Command, Option } from 'commander';
import { UserError } from '../errors.js';
import { parseDevice } from '../runtime/device.js';
import { EXPORT_DEFAULTS, runExport, writeExport } from '../jobs/export.js';
import { addImageRunOptions, addProgressOption, withJobContext, type ImageRunFlags } from './context.js';
import { positiveInt } from './model-options.js';

interface ExportFlags extends ImageRunFlags {
  out: string;
  modesPerHead: number;
  imageSize: number;
  quality: number;
  model: boolean;
  maxModelMb: number;
  title?: string;
  offline?: boolean;
}

function wholeNumber(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new UserError(`${flag} ${v}: expected a whole number (0 or more)`);
    return n;
  };
}

const size = (n: number) => (n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : `${(n / 1e6).toFixed(1)} MB`);

export function exportCommand(): Command {
  const cmd = new Command('export')
    .description('a static, shareable copy of the explorer (Models, Head, Mode views; the Image view with the model running in the page) for svd / scan runs')
    .argument('<run...>', 'svd run directories (with run.db when scanned), or folders holding runs (found as `serve` finds them)')
    .requiredOption('-o, --out <dir>', 'the site folder (new, empty, or an earlier export, which is replaced)')
    .addOption(new Option('--modes-per-head <n>', 'modes per head (largest σ first) whose top images and maps are stored').default(EXPORT_DEFAULTS.modesPerHead).argParser(wholeNumber('--modes-per-head')))
    .addOption(new Option('--image-size <px>', 'longest side of each stored top image').default(EXPORT_DEFAULTS.imageSize).argParser(positiveInt('--image-size')))
    .addOption(new Option('--quality <q>', 'JPEG quality of the stored images (1-100)').default(EXPORT_DEFAULTS.quality).argParser(positiveInt('--quality')))
    .option('--no-model', 'leave the models out (the Image view then says so)')
    .addOption(new Option('--max-model-mb <n>', 'leave out models whose weights are larger than this').default(EXPORT_DEFAULTS.maxModelMb).argParser(positiveInt('--max-model-mb')))
    .option('--title <text>', 'page title')
    .option('--offline', 'open hub models from the local cache only')
    .addHelpText(
      'after',
      '\nOpen SITE/index.html in a browser (file:// works), or put the folder on any static host\n' +
        '(GitHub Pages). Links are the same as serve\'s (#/run/RUN/mode/L/H/N …). The top images\' maps are\n' +
        'recomputed with the run\'s model (it must be where svd found it). The Image view runs the model in the\n' +
        'page with onnxruntime-web (WebAssembly, WebGPU where the browser has it).\n' +
        '\nExample:\n  qkscope export runs/vit-b16 --out site\n  qkscope export runs/ --out site --modes-per-head 8 --image-size 128 --no-model\n',
    );
  addImageRunOptions(cmd);
  addProgressOption(cmd);
  cmd.action(async (runs: string[], flags: ExportFlags) => {
    if (flags.quality > 100) throw new UserError(`--quality ${flags.quality}: give 1 to 100`);
    const device = parseDevice(flags.device);
    const w = await withJobContext(
      flags,
      async (ctx) => {
        const r = await runExport(
          runs,
          {
            modesPerHead: flags.modesPerHead,
            imageSize: flags.imageSize,
            quality: flags.quality,
            model: flags.model,
            maxModelMb: flags.maxModelMb,
            title: flags.title,
            batch: flags.batch,
            device,
            threads: flags.threads,
            maxPixels: flags.maxPixels,
            offline: flags.offline,
          },
          ctx,
        );
        const notes = Object.entries(r.index.meta)
          .filter(([, m]) => !m.model && m.model_note)
          .map(([id, m]) => `${id}: ${m.model_note}`);
        return { ...(await writeExport(r, flags.out)), notes };
      },
      { signals: true },
    );
    const left = w.notes.length ? ` (no in-page model for ${w.notes.join('; ')})` : '';
    process.stdout.write(`wrote ${flags.out}: ${w.files} files, ${size(w.bytes)}; open ${flags.out}/index.html${left}\n`);
  });
  return cmd;
}
