import { Command, Option } from 'commander';
import { join } from 'node:path';
import { UserError } from '../errors.js';
import { PAPER_GROUPS, PAPER_MODELS } from '../jobs/paper-models.js';
import { planPaper, releaseCacheDir, runPaper, writePaper, type PaperPlan } from '../jobs/paper.js';
import { runExport, writeExport } from '../jobs/export.js';
import { addProgressOption, withJobContext, type ProgressFlags } from './context.js';
import { positiveInt } from './model-options.js';

interface PaperFlags extends ProgressFlags {
  out?: string;
  models?: string[];
  offline?: boolean;
  list?: boolean;
  site: boolean;
  model: boolean;
  maxModelMb: number;
  threads?: number;
}

const gb = (n: number) => (n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : `${(n / 1e6).toFixed(1)} MB`);
const sizeText = (n: number | null) => (n === null ? 'size unknown' : gb(n));

function printPlan(plan: PaperPlan, verbose: boolean): void {
  const w = Math.max(...plan.entries.map((e) => e.model.id.length));
  for (const g of PAPER_GROUPS) {
    const es = plan.entries.filter((e) => e.model.group === g.id);
    if (!es.length) continue;
    process.stdout.write(`${g.label}:\n`);
    for (const e of es) {
      const size = e.files.length ? e.files.reduce<number | null>((a, f) => (a === null || f.size === null ? null : a + f.size), 0) : null;
      const state = e.unavailable ? `unavailable: ${e.unavailable}` : e.cached ? `cached (${sizeText(size)})` : `to download (${sizeText(size)})`;
      process.stdout.write(`  ${e.model.id.padEnd(w)}  ${state}\n`);
      if (verbose) {
        const src = e.model.source.kind === 'hub' ? `https://huggingface.co/${e.model.source.repo}` : e.model.source.url;
        process.stdout.write(`  ${''.padEnd(w)}  ${e.model.objective}\n  ${''.padEnd(w)}  ${src}${e.model.part ? ` (--part ${e.model.part})` : ''}\n`);
      }
    }
  }
}

export function paperCommand(): Command {
  const cmd = new Command('paper')
    .description("reproduce the paper's comparison: download its models, run svd on each, draw the figure grouped by training objective, export a static site")
    .option('-o, --out <dir>', 'output folder: runs/<model>/ (svd runs), compare.svg/.png, paper.json, site/')
    .addOption(new Option('--models <ids>', "comma-separated ids from the list (default: all; see --list)").argParser((v: string) => v.split(',').map((s) => s.trim()).filter(Boolean)))
    .option('--offline', 'use only what is cached; models that are not are skipped (also HF_HUB_OFFLINE=1)')
    .option('--list', 'print the models (objective, source) and what is cached, then exit')
    .option('--no-site', 'do not export the static site')
    .option('--no-model', 'site: leave the models out (no in-page Image view)')
    .addOption(new Option('--max-model-mb <n>', 'site: leave out models larger than this').default(100).argParser(positiveInt('--max-model-mb')))
    .addOption(new Option('--threads <n>', 'CPU threads for svd (default: as svd)').argParser(positiveInt('--threads')))
    .addHelpText(
      'after',
      `\nHugging Face models go to the HF cache (HF_HUB_CACHE, HF_HOME, HF_ENDPOINT, HF_TOKEN as huggingface_hub);\n` +
        `release checkpoints (SimMIM, the I-JEPA predictor) to ${releaseCacheDir()}.\n` +
        'Sizes are shown before anything is downloaded; an interrupted download resumes on the next run, and\n' +
        'finished svd runs in --out are reused. The list (src/jobs/paper-models.ts) has ' +
        `${PAPER_MODELS.length} models.\n` +
        '\nExample:\n  qkscope paper --list\n  qkscope paper --out paper\n  qkscope paper --models facebook/dino-vits16,google/vit-base-patch16-224 --out paper-small\n  qkscope paper --offline --out paper --no-site\n',
    );
  addProgressOption(cmd, 500);
  cmd.action(async (flags: PaperFlags) => {
    if (flags.list) {
      const plan = await planPaper({ models: flags.models, offline: true });
      printPlan(plan, true);
      const cached = plan.entries.filter((e) => e.cached).length;
      process.stdout.write(`${plan.entries.length} models, ${cached} cached (${gb(plan.cachedBytes)})\n`);
      return;
    }
    if (!flags.out) throw new UserError('paper: give --out DIR (or --list to see the models)');
    const out = flags.out;
    const plan = await planPaper({ models: flags.models, offline: flags.offline });
    printPlan(plan, false);
    const usable = plan.entries.filter((e) => !e.unavailable).length;
    process.stdout.write(`${usable} of ${plan.entries.length} models available; to download: ${plan.toDownload === null ? 'some of unknown size' : gb(plan.toDownload)}; cached: ${gb(plan.cachedBytes)}\n`);
    if (!usable) throw new UserError(`paper: none of the models is available${plan.offline ? ' offline (run without --offline to download them)' : ''}`);
    const written = await withJobContext(flags, (ctx) => writePaper(runPaper(plan, { outDir: out, threads: flags.threads }, ctx), out), { signals: true });
    let siteLine = '';
    if (flags.site) {
      const site = await withJobContext(flags, (ctx) =>
        runExport(
          written.runs.map((r) => r.dir),
          { model: flags.model, maxModelMb: flags.maxModelMb, title: 'Dissecting query-key interaction: the paper’s models', offline: true },
          ctx,
        ),
      );
      const w = await writeExport(site, join(out, 'site'));
      siteLine = `; site ${join(out, 'site')} (${w.files} files, ${gb(w.bytes)})`;
    }
    const failed = written.failed.length ? `; ${written.failed.length} failed (${written.failed.map((f) => f.id).join(', ')}; see paper.json)` : '';
    process.stdout.write(`paper: ${written.runs.length} models analysed; wrote ${written.figure.join(', ')}${siteLine}${failed}\n`);
  });
  return cmd;
}
