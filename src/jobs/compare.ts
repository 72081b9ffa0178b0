/**
 * `compare`: the paper's main figure, the layer-mean score against normalised depth, one line
 * per model with its chance band (docs/method.md §4), from finished svd runs or models analysed
 * on the spot.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { layerCurve, type LayerCurve } from '../analysis/compare.js';
import { loadSpec, type ModelFlags } from '../arch/load.js';
import { UserError } from '../errors.js';
import { compareFigure } from '../report/figures/compare.js';
import { RunDir } from '../store/run-dir.js';
import { readSvdSummary } from '../store/svd-run.js';
import { jobContext, type JobContext } from './job.js';
import { runSvd } from './svd.js';

export interface CompareOptions extends ModelFlags {
  /** Plain mean of mode cosines instead of the σ-weighted one. */
  plain?: boolean;
  /** Subtract each layer's anisotropy baseline (needs RUN/anisotropy.json). */
  relative?: boolean;
  title?: string;
  /** Threads for models analysed now. */
  threads?: number;
}

export interface CompareResult {
  statistic: 'weighted' | 'plain';
  relative: boolean;
  title: string;
  subtitle: string;
  inputs: string[];
  curves: LayerCurve[];
}

/** A run directory holds summary.json; anything else is a model to analyse now. */
export function isRunDir(p: string): boolean {
  return existsSync(p) && statSync(p).isDirectory() && existsSync(join(p, 'summary.json'));
}

/** Per-layer anisotropy baselines from RUN/anisotropy.json (written by `qkscope anisotropy`). */
export function readAnisotropyBaseline(run: string, L: number): number[] {
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

/** Legend labels: the model id, told apart by the input's name where two inputs share one. */
export function distinctLabels(ids: string[], inputs: string[]): string[] {
  const count = new Map<string, number>();
  for (const id of ids) count.set(id, (count.get(id) ?? 0) + 1);
  const labels = ids.map((id, k) => ((count.get(id) ?? 0) > 1 ? `${id} (${basename(resolve(inputs[k]))})` : id));
  // Still equal (same folder name under different parents): number them.
  const seen = new Map<string, number>();
  return labels.map((l) => {
    const n = (seen.get(l) ?? 0) + 1;
    seen.set(l, n);
    return labels.filter((x) => x === l).length > 1 ? `${l} #${n}` : l;
  });
}

export async function runCompare(inputs: string[], opts: CompareOptions = {}, context?: Partial<JobContext>): Promise<CompareResult> {
  const ctx = jobContext(context);
  if (opts.relative && opts.plain) throw new UserError('--relative applies to the σ-weighted cosine; drop --plain');
  const statistic = opts.plain ? 'plain' : 'weighted';
  const curves: LayerCurve[] = [];
  for (const input of inputs) {
    if (isRunDir(input)) {
      const s = readSvdSummary(input);
      curves.push(layerCurve({ ...s, model: { id: s.model.id } }, statistic, opts.relative ? readAnisotropyBaseline(input, s.dims.layers) : undefined));
      continue;
    }
    if (opts.relative) throw new UserError(`${input}: --relative needs a run directory with anisotropy.json; run \`qkscope svd ${input} --out RUN\` then \`qkscope anisotropy ${input} IMAGES --run RUN\``);
    const { spec, close } = await loadSpec(input, opts);
    try {
      const r = await runSvd(spec, { threads: opts.threads, input, vectors: false }, ctx);
      curves.push(layerCurve({ model: r.model, ...r.stats }, statistic));
    } finally {
      await close();
    }
  }
  const labels = distinctLabels(
    curves.map((c) => c.label),
    inputs,
  );
  curves.forEach((c, k) => (c.label = labels[k]));
  return {
    statistic,
    relative: !!opts.relative,
    title: opts.title ?? 'Similarity preference across depth',
    subtitle: `${opts.plain ? 'plain' : 'σ-weighted'} mean of mode cosines per layer${opts.relative ? ' minus the anisotropy baseline' : ''}; shaded: 95% chance band per model`,
    inputs,
    curves,
  };
}

export function compareSvg(r: CompareResult): string {
  return compareFigure({
    title: r.title,
    subtitle: r.subtitle,
    relative: r.relative,
    curves: r.curves.map((c) => ({ label: c.label, depth: c.depth, value: c.value, band: c.band95 })),
    yLabel: r.statistic === 'plain' ? 'mean cosine (layer mean)' : undefined,
  });
}

/** Writes FILE.svg, FILE.png and FILE.json (the curves and bands) for `--out FILE.svg|.png`. */
export async function writeCompare(r: CompareResult, outFile: string): Promise<string[]> {
  const ext = extname(outFile).toLowerCase();
  if (ext !== '.svg' && ext !== '.png') throw new UserError(`--out ${outFile}: give a file name ending in .svg or .png`);
  const base = basename(outFile).slice(0, -ext.length);
  const out = new RunDir(dirname(outFile) || '.', 'compare', { manifest: `${base}.json` });
  try {
    await out.figure(base, compareSvg(r), 'layer-mean score against depth, one line per model, 95% chance bands');
    out.commit(out.header(null, { statistic: r.statistic, relative: r.relative, title: r.title }, r.inputs), { statistic: r.statistic, relative: r.relative, curves: r.curves });
  } catch (e) {
    out.abort();
    throw e;
  }
  const stem = outFile.slice(0, -ext.length);
  return [`${stem}.svg`, `${stem}.png`, `${stem}.json`];
}
