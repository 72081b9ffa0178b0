/**
 * `figure modes` (the paper's figure 4): the top images of some modes of one head, re-read
 * from wherever the scan found them, run through the model again (each unique image once, only
 * the layer needed) to recompute the query and key maps, drawn by report/figures/modes.ts.
 *
 * Map normalisation (docs/method.md §6): `percentile` (default) maps each image's map from its
 * median (or 0, whichever is larger) to its 99th percentile onto [0, 1], so modes that are
 * positive almost everywhere (grouping modes) still show where they peak; `image` is the
 * positive part divided by the image's maximum; `row` divides by the maximum over the row's
 * images, so tiles of one mode are comparable.
 */
import { basename, dirname, extname } from 'node:path';
import type { VitSpec } from '../arch/spec.js';
import { UserError } from '../errors.js';
import { preprocessFor } from '../images/preprocess.js';
import { ListingSource } from '../images/source.js';
import type { ImageEntry } from '../images/sources.js';
import { imageBatches } from '../runtime/batch-loop.js';
import type { Device } from '../runtime/device.js';
import { VitRuntime } from '../runtime/vit-runtime.js';
import { modesFigure, type ModesRow } from '../report/figures/modes.js';
import { mapScales, overlayRgb, scaleMap, upsampleGrid, type MapNormalization } from '../report/overlay.js';
import { jpegDataUri } from '../io/jpeg.js';
import { RunDir, modelInfo } from '../store/run-dir.js';
import { checkMode, headVectorPair, modeInfo, scanProgress, topList, type RankedImage, type ScanRun } from '../store/scan-run.js';
import { patchMaps } from '../analysis/mode-maps.js';
import { jobContext, type JobContext } from './job.js';
import { weightsFingerprint } from './scan.js';

export interface ModesFigureOptions {
  layer: number;
  head: number;
  modes: number[];
  sign: 1 | -1 | 'both';
  style: 'overlay' | 'separate';
  /** Images per row (default: all the scan kept). */
  images?: number;
  normalize?: MapNormalization;
  batch?: number;
  device?: Device;
  threads?: number;
}

export interface ModesFigureResult {
  svg: string;
  tiles: number;
  warnings: string[];
  model: ReturnType<typeof modelInfo>;
  options: Record<string, unknown>;
  run: string;
  rows: { mode: number; sign: 1 | -1; images: { rank: number; id: number; path: string; name: string; score: number; drawn: boolean }[] }[];
}

const fmt = (x: number) => (Number.isFinite(x) ? x.toFixed(3).replace('-', '−') : 'n/a');

/**
 * The name printed under an image: the class of ImageNet-style names (`n01440764_tench` →
 * `tench`), else the file stem (the original name for Parquet rows).
 */
export function imageName(e: { path: string; name?: string | null }): string {
  const file = e.name ?? e.path.split('#').pop()!;
  const stem = basename(file, extname(file));
  const m = /^n\d{8}_(.+)$/.exec(stem);
  return (m ? m[1] : stem).replace(/_/g, ' ');
}

export async function runModesFigure(run: ScanRun, spec: VitSpec, o: ModesFigureOptions, context?: Partial<JobContext>): Promise<ModesFigureResult> {
  const ctx = jobContext(context);
  const warnings: string[] = [];
  const warn = (m: string) => {
    warnings.push(m);
    ctx.progress.note(`warning: ${m}`);
  };
  const { meta } = run;
  for (const m of o.modes) checkMode(run, o.layer, o.head, m);
  if (spec.width !== meta.model.width || spec.heads !== meta.model.heads || spec.headDim !== meta.model.head_dim) {
    throw new UserError(`${spec.modelId}: not the model of this scan (dimensions differ)`);
  }
  if ((await weightsFingerprint(spec, meta.layers)) !== meta.weights_sha256) {
    throw new UserError(`${spec.modelId}: its q/k weights differ from those the scan used; give the scanned model with --model`);
  }
  const { u: U, v: V } = headVectorPair(run, o.layer, o.head);
  const d = spec.width;
  const signs: (1 | -1)[] = o.sign === 'both' ? [1, -1] : [o.sign];
  const nImages = Math.min(o.images ?? meta.top_k, meta.top_k);
  const rowsSpec: { mode: number; sign: 1 | -1; entries: RankedImage[] }[] = [];
  for (const mode of o.modes) for (const sign of signs) rowsSpec.push({ mode, sign, entries: topList(run, o.layer, o.head, mode, sign).slice(0, nImages) });

  // Every image once, through the one batch loop (crops kept for the overlays).
  const byId = new Map<number, RankedImage>();
  for (const r of rowsSpec) for (const e of r.entries) byId.set(e.id, e);
  const ids = [...byId.keys()];
  const entries: ImageEntry[] = ids.map((id) => {
    const e = byId.get(id)!;
    return { locator: e.path, kind: e.source as ImageEntry['kind'], container: e.container, member: e.member };
  });
  const { pp, options } = preprocessFor(spec);
  const source = new ListingSource({ entries }, pp, options, { keepCrops: true });
  const [ih, iw] = pp.crop;
  const T = meta.patch_grid[0] * meta.patch_grid[1] + meta.patch_start;
  const view = new Map<number, { rgb: Uint8Array; x: Float32Array; name: string | null }>();
  const outputs = meta.embedding === 'ln' ? { ln: [o.layer] } : { residual: [o.layer] };
  const rt = await VitRuntime.create(spec, { outputs, device: o.device, threads: o.threads });
  try {
    ctx.progress.start('figure', ids.length);
    for await (const b of imageBatches(source, { batch: o.batch, progress: ctx.progress })) {
      for (const s of b.skipped) warn(`${s.label}: cannot read it any more (${s.reason}); drawn as unavailable`);
      if (!b.items.length) continue;
      const r = await rt.run(b.pixels, b.items.length);
      const x = (meta.embedding === 'ln' ? r.ln : r.residual)!;
      b.items.forEach((it, i) => {
        const e = byId.get(ids[it.id])!;
        if (e.sha256 && it.info.sha256 && it.info.sha256 !== e.sha256) warn(`${e.path}: changed since the scan (content hash differs); its maps may not match its score`);
        view.set(e.id, { rgb: it.info.crop!.data, x: x.slice(i * T * d, (i + 1) * T * d), name: it.info.name });
      });
    }
  } finally {
    ctx.progress.end();
    source.close();
    await rt.close();
  }

  const [gr, gc] = meta.patch_grid;
  const P = gr * gc;
  const ps = meta.patch_start;
  const maps = (x: Float32Array, mode: number, sign: 1 | -1) => patchMaps(x, 0, { patchStart: ps, patches: P }, d, U, V, mode, sign);
  // Tiles are drawn at 96 px and rasterised at 2×: encode them at the size they are seen.
  const tileSide = Math.min(Math.max(ih, iw), 192);
  const jpg = (rgb: Uint8Array) => jpegDataUri(rgb, iw, ih, tileSide);
  const how = o.normalize ?? 'percentile';

  const rows: ModesRow[] = [];
  const encodes: Promise<unknown>[] = [];
  const described: ModesFigureResult['rows'] = [];
  let tiles = 0;
  for (const r of rowsSpec) {
    const info = modeInfo(run, o.layer, o.head, r.mode);
    const lines = [`c = ${fmt(info.cosine)}`];
    if (info.anisotropy !== null) lines.push(`rel. c = ${fmt(info.cosine - info.anisotropy)}`);
    lines.push(`σ = ${info.sigma.toPrecision(3)}`);
    const row: ModesRow = { label: `L${o.layer} H${o.head} M${r.mode} ${r.sign > 0 ? '+' : '−'}`, lines, tiles: [] };
    const computed = r.entries.map((e) => {
      const v = view.get(e.id);
      return v ? { e, v, ...maps(v.x, r.mode, r.sign) } : { e, v: null, q: null, k: null, score: null };
    });
    const have = computed.filter((c) => c.v) as { e: RankedImage; v: { rgb: Uint8Array; x: Float32Array; name: string | null }; q: Float64Array; k: Float64Array }[];
    const qs = mapScales(have.map((c) => c.q), how);
    const ks = mapScales(have.map((c) => c.k), how);
    const desc: ModesFigureResult['rows'][number] = { mode: r.mode, sign: r.sign, images: [] };
    let h = 0;
    for (const c of computed) {
      tiles++;
      const name = imageName({ path: c.e.path, name: c.v?.name ?? null });
      const caption = `#${c.e.rank} S ${c.e.score.toPrecision(3)}`;
      desc.images.push({ rank: c.e.rank, id: c.e.id, path: c.e.path, name, score: c.e.score, drawn: !!c.v });
      if (!c.v) {
        row.tiles.push({ href: null, hrefKey: null, caption, name });
        continue;
      }
      const score = c.score!;
      if (Math.abs(score - c.e.score) > 1e-3 * Math.max(1e-6, Math.abs(c.e.score))) {
        warn(`${c.e.path}: recomputed score ${score.toPrecision(6)} differs from the scan's ${c.e.score.toPrecision(6)} (L${o.layer} H${o.head} M${r.mode})`);
      }
      const qUp = upsampleGrid(scaleMap(c.q!, qs[h]), gr, gc, ih, iw);
      const kUp = upsampleGrid(scaleMap(c.k!, ks[h]), gr, gc, ih, iw);
      h++;
      // Encoded on libuv's threads while this one computes the next overlays; awaited below.
      const tile: ModesRow['tiles'][number] = { href: null, caption, name, qToken: c.e.qToken, kToken: c.e.kToken };
      row.tiles.push(tile);
      if (o.style === 'separate') {
        encodes.push(jpg(overlayRgb(c.v.rgb, iw, ih, qUp, null)).then((u) => (tile.href = u)));
        encodes.push(jpg(overlayRgb(c.v.rgb, iw, ih, null, kUp)).then((u) => (tile.hrefKey = u)));
      } else encodes.push(jpg(overlayRgb(c.v.rgb, iw, ih, qUp, kUp)).then((u) => (tile.href = u)));
    }
    rows.push(row);
    described.push(desc);
  }
  await Promise.all(encodes);
  const prog = scanProgress(run);
  const normText = { percentile: 'maps scaled per image from the median to the 99th percentile', image: 'maps scaled per image (positive part ÷ max)', row: 'maps scaled per row (positive part ÷ row max)' }[how];
  const svg = modesFigure({
    title: `${meta.model.id}: layer ${o.layer}, head ${o.head}`,
    subtitle: `top images by S = max Q × max K of ${prog.done} images · ${meta.embedding === 'ln' ? 'LayerNorm output' : 'residual stream'}${meta.status === 'complete' ? '' : ' · scan not complete'}`,
    rows,
    style: o.style,
    grid: [gr, gc],
    note: `− rows use (−u, −v) · indices 0-based · under each image: its name, rank and score S · ${normText}`,
  });
  return {
    svg,
    tiles,
    warnings,
    model: modelInfo(spec, meta.model.input),
    options: { layer: o.layer, head: o.head, modes: o.modes, sign: o.sign, style: o.style, images: nImages, normalize: how },
    run: run.dir,
    rows: described,
  };
}

/** Writes FILE.png and FILE.svg (both) and FILE.json (which images, their names and scores). */
export async function writeModesFigure(r: ModesFigureResult, outFile: string): Promise<string[]> {
  const ext = extname(outFile).toLowerCase();
  if (ext !== '.png' && ext !== '.svg') throw new UserError(`--out ${outFile}: give a .png or .svg file name`);
  const base = basename(outFile).slice(0, -ext.length);
  const out = new RunDir(dirname(outFile) || '.', 'figure-modes', { manifest: `${base}.json` });
  try {
    await out.figure(base, r.svg, "a head's modes with their top images: query map red, key map cyan", { photos: true });
    out.commit(out.header(r.model, r.options, { run: r.run }), { tiles: r.tiles, warnings: r.warnings, rows: r.rows });
  } catch (e) {
    out.abort();
    throw e;
  }
  const stem = outFile.slice(0, -ext.length);
  return [`${stem}.png`, `${stem}.svg`, `${stem}.json`];
}
