/**
 * `paper`: the paper's comparison in one command. For each model of the documented list
 * (paper-models.ts): where it is and how big (HEAD requests, or the cache), then the download
 * (Hugging Face ids into the HF cache through checkpoint/hub.ts; release files by URL into
 * $HF_HOME/qkscope/releases/, both resumable), `svd` on it, and the compare figure grouped by
 * training objective. The CLI then exports the static site of the runs (jobs/export.ts).
 *
 *   const plan = await planPaper({ models: ['google/vit-base-patch16-224'] });  // sizes, cached?
 *   const r = runPaper(plan, {}, ctx);        // lazy: one model at a time (bounded memory)
 *   const w = await writePaper(r, 'paper');   // runs/<slug>/ svd runs, compare.svg/.png, paper.json
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { layerCurve, type LayerCurve } from '../analysis/compare.js';
import { loadSpec } from '../arch/load.js';
import { downloadResumable, remoteSize } from '../checkpoint/download.js';
import { hfHome, hubFiles, hubOfflineFromEnv, resolveHubModel, type HubFile } from '../checkpoint/hub.js';
import { UserError } from '../errors.js';
import { compareFigure } from '../report/figures/compare.js';
import { RunDir } from '../store/run-dir.js';
import { readSvdSummary, type SvdSummary } from '../store/svd-run.js';
import { VERSION } from '../version.js';
import { jobContext, type JobContext } from './job.js';
import { PAPER_GROUPS, PAPER_MODELS, selectPaperModels, type PaperModel } from './paper-models.js';
import { runSvd, writeSvd, type SvdResult } from './svd.js';

export interface PaperOptions {
  /** Model ids from the list (default: all). */
  models?: string[];
  /** Only what is cached; models that are not are skipped with a note. */
  offline?: boolean;
  /** The model list (default PAPER_MODELS; tests give their own URLs). */
  list?: PaperModel[];
  /** svd threads. */
  threads?: number;
}

export interface PlannedFile {
  file: string;
  size: number | null;
  cached: boolean;
}

export interface PaperPlanEntry {
  model: PaperModel;
  files: PlannedFile[];
  /** Every file is in the cache. */
  cached: boolean;
  /** Why it cannot be had (offline and not cached, or the server's answer). */
  unavailable: string | null;
}

export interface PaperPlan {
  entries: PaperPlanEntry[];
  offline: boolean;
  /** Bytes still to download (null when a server did not tell a size). */
  toDownload: number | null;
  cachedBytes: number;
}

/** Where release files named by URL are kept: $HF_HOME/qkscope/releases/<file>. */
export function releaseCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(hfHome(env), 'qkscope', 'releases');
}

/** The run directory name of a model: its id with '/' as '--' (as the HF cache does). */
export function paperSlug(id: string): string {
  return id.replace(/\//g, '--');
}

/** What each model needs and what the cache already has (HEAD requests unless offline). */
export async function planPaper(opts: PaperOptions = {}): Promise<PaperPlan> {
  const env = process.env;
  const offline = !!opts.offline || hubOfflineFromEnv(env);
  const entries: PaperPlanEntry[] = [];
  for (const model of selectPaperModels(opts.models, opts.list ?? PAPER_MODELS)) {
    let files: PlannedFile[] = [];
    let unavailable: string | null = null;
    try {
      if (model.source.kind === 'hub') {
        files = (await hubFiles(model.source.repo, { offline })).files.map((f: HubFile) => ({ ...f }));
        if (!files.length) unavailable = offline ? 'not in the Hugging Face cache (`qkscope paper` downloads it, unless --offline)' : 'the repository has no weights file';
      } else {
        const path = join(releaseCacheDir(env), model.source.file);
        if (existsSync(path)) files = [{ file: model.source.file, size: statSync(path).size, cached: true }];
        else if (offline) unavailable = `not in ${releaseCacheDir(env)} (\`qkscope paper\` downloads it, unless --offline)`;
        else files = [{ file: model.source.file, size: (await remoteSize(model.source.url)).size, cached: false }];
      }
    } catch (e) {
      if (!(e instanceof UserError)) throw e;
      unavailable = e.message;
    }
    entries.push({ model, files, cached: files.length > 0 && files.every((f) => f.cached), unavailable });
  }
  let toDownload: number | null = 0;
  let cachedBytes = 0;
  for (const e of entries) {
    if (e.unavailable) continue;
    for (const f of e.files) {
      if (f.cached) cachedBytes += f.size ?? 0;
      else toDownload = toDownload === null || f.size === null ? null : toDownload + f.size;
    }
  }
  return { entries, offline, toDownload, cachedBytes };
}

export interface PaperModelResult {
  model: PaperModel;
  /** What svd recorded as the model's input (the hub id, or the cached release file). */
  input: string;
  /** null when this run's svd was reused (`reuse`) or the model failed. */
  svd: SvdResult | null;
  /** A finished run of the same input found in the output folder. */
  reuse: string | null;
  error: string | null;
}

export interface PaperRun {
  plan: PaperPlan;
  /** One model at a time: download, svd. Consumed by writePaper. */
  models: AsyncIterable<PaperModelResult>;
}

/** Downloads what is missing and runs svd, one model at a time (lazy; `writePaper` drives it). */
export function runPaper(plan: PaperPlan, opts: PaperOptions & { outDir?: string } = {}, context?: Partial<JobContext>): PaperRun {
  const ctx = jobContext(context);
  const env = process.env;
  async function* models(): AsyncGenerator<PaperModelResult> {
    for (const e of plan.entries) {
      if (ctx.stop?.stop) return;
      const m = e.model;
      if (e.unavailable) {
        yield { model: m, input: '', svd: null, reuse: null, error: e.unavailable };
        continue;
      }
      try {
        let input: string;
        if (m.source.kind === 'hub') {
          await resolveHubModel(m.source.repo, { offline: plan.offline, reporter: ctx.progress, progress: false });
          input = m.source.repo;
        } else {
          input = join(releaseCacheDir(env), m.source.file);
          if (!existsSync(input)) await downloadResumable(m.source.url, input, { size: e.files[0]?.size ?? null, progress: ctx.progress, label: m.id, owner: m.id, file: m.source.file });
        }
        const prev = opts.outDir ? reusableRun(join(opts.outDir, 'runs', paperSlug(m.id)), input, m.part) : null;
        if (prev) {
          ctx.progress.note(`${m.id}: svd run found in ${prev}, reused`);
          yield { model: m, input, svd: null, reuse: prev, error: null };
          continue;
        }
        // The cache now holds it: open it offline (no second round of HEAD requests).
        const { spec, close } = await loadSpec(input, { offline: m.source.kind === 'hub', part: m.part });
        try {
          const svd = await runSvd(spec, { threads: opts.threads, input }, ctx);
          yield { model: m, input, svd, reuse: null, error: null };
        } finally {
          await close();
        }
      } catch (err) {
        if (!(err instanceof UserError)) throw err;
        ctx.progress.note(`${m.id}: ${err.message}`);
        yield { model: m, input: '', svd: null, reuse: null, error: err.message };
      }
    }
  }
  return { plan, models: models() };
}

/** A finished svd run of the same input (and part) by this version: reused instead of recomputed. */
function reusableRun(dir: string, input: string, part?: string): string | null {
  if (!existsSync(join(dir, 'summary.json'))) return null;
  try {
    const s = readSvdSummary(dir);
    const id = s.model.id;
    const samePart = part ? id.endsWith(`#${part}`) : !id.includes('#');
    return s.model.input === input && s.tool?.version === VERSION && samePart && existsSync(join(dir, 'U.npy')) ? dir : null;
  } catch {
    return null;
  }
}

export interface PaperWritten {
  dir: string;
  /** Run directories written or reused, by model id. */
  runs: { id: string; dir: string; group: string; reused: boolean }[];
  failed: { id: string; error: string }[];
  figure: string[];
  manifest: string;
}

/** The paper's figure: one line per model, grouped by training objective (line style), 95 % chance bands. */
export function paperFigure(curves: { curve: LayerCurve; group: string }[]): string {
  const order = PAPER_GROUPS.map((g) => g.id as string);
  const sorted = [...curves].sort((a, b) => order.indexOf(a.group) - order.indexOf(b.group));
  const label = new Map(PAPER_GROUPS.map((g) => [g.id as string, g.label]));
  return compareFigure({
    title: 'Similarity preference across depth, by training objective',
    subtitle: 'σ-weighted mean of mode cosines per layer (Pan et al. 2024); shaded: 95% chance band per model',
    curves: sorted.map(({ curve, group }) => ({ label: curve.label, depth: curve.depth, value: curve.value, band: curve.band95, group: label.get(group) ?? group })),
  });
}

/** Writes each model's svd run (runs/<slug>/), the grouped compare figure and paper.json. */
export async function writePaper(r: PaperRun, dir: string): Promise<PaperWritten> {
  const runs: PaperWritten['runs'] = [];
  const failed: PaperWritten['failed'] = [];
  const curves: { curve: LayerCurve; group: string }[] = [];
  const models: Record<string, unknown>[] = [];
  for await (const m of r.models) {
    const info = { id: m.model.id, group: m.model.group, objective: m.model.objective, source: m.model.source, page: m.model.page, part: m.model.part ?? null };
    if (m.error || (!m.svd && !m.reuse)) {
      failed.push({ id: m.model.id, error: m.error ?? 'no result' });
      models.push({ ...info, status: 'failed', error: m.error });
      continue;
    }
    const runDir = m.reuse ?? join(dir, 'runs', paperSlug(m.model.id));
    if (m.svd) await writeSvd(m.svd, runDir);
    const s: SvdSummary = readSvdSummary(runDir);
    const curve = layerCurve(s, 'weighted');
    curve.label = m.model.id;
    curves.push({ curve, group: m.model.group });
    runs.push({ id: m.model.id, dir: runDir, group: m.model.group, reused: !!m.reuse });
    models.push({ ...info, status: m.reuse ? 'reused' : 'computed', run: join('runs', paperSlug(m.model.id)), input: m.input, layers: s.dims.layers, width: s.dims.width, curve: { depth: curve.depth, value: curve.value, band95: curve.band95 } });
  }
  if (!curves.length) {
    throw new UserError(`paper: none of the ${r.plan.entries.length} models could be analysed (${failed.map((f) => `${f.id}: ${f.error}`).join('; ')})`);
  }
  const out = new RunDir(dir, 'paper');
  try {
    await out.figure('compare', paperFigure(curves), 'layer-mean σ-weighted cosine against depth, one line per model, line style by training objective, 95% chance bands');
    const manifest = out.commit(out.header(null, { offline: r.plan.offline }, { models: r.plan.entries.map((e) => e.model.id) }), {
      groups: PAPER_GROUPS,
      models,
      failed,
    });
    return { dir, runs, failed, figure: [join(dir, 'compare.svg'), join(dir, 'compare.png')], manifest };
  } catch (e) {
    out.abort();
    throw e;
  }
}
