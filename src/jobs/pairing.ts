/**
 * `pairing` (paper figure 6, docs/method.md §7): for each scanned mode's top-k images, whether the
 * object with the largest mean query map is the object with the largest mean key map; per
 * layer the σ-weighted probability with n, a bootstrap interval and the chance baseline.
 *
 *   const r = await runPairing(spec, openRun('runs/vit-b16'), 'masks/', {}, ctx);
 *   await writePairing(r, 'runs/vit-b16/pairing');
 *
 * The scan's database is read through store/scan-run.ts; images (files, tar members, Parquet
 * cells) through the one batch loop, so an image that cannot be decoded is skipped and listed.
 * A missing or wrong mask stops the run with one line naming it.
 */
import { existsSync } from 'node:fs';
import { basename } from 'node:path';
import type { VitSpec } from '../arch/spec.js';
import { tokenLayout } from '../arch/tokens.js';
import { UserError } from '../errors.js';
import { preprocessFor } from '../images/preprocess.js';
import { ListingSource } from '../images/source.js';
import type { ImageEntry, SourceKind } from '../images/sources.js';
import { instanceMaskPath } from '../data/datasets.js';
import { ignoredIds, instanceCoverage, readInstanceMask, VOID_LABEL } from '../data/masks.js';
import { bootstrapInfo, bootstrapLabel, type BootstrapInfo, type BootstrapOptions } from '../analysis/intervals.js';
import { pairOutcome, summarisePairing, type LayerPairing, type ModePairing, type PairingRecord } from '../analysis/pairing.js';
import { DEFAULT_BATCH, imageBatches, type SkippedImage } from '../runtime/batch-loop.js';
import type { Device } from '../runtime/device.js';
import { VitRuntime } from '../runtime/vit-runtime.js';
import { pairingFigure } from '../report/figures/pairing.js';
import { RunDir, modelInfo, type ModelInfo } from '../store/run-dir.js';
import { headVectors, modeSigmas, topImageRows, type ScanRun } from '../store/scan-run.js';
import { jobContext, type JobContext } from './job.js';

export const PAIRING_DEFINITION =
  'For each (layer, head, mode), its top-k images of the positive sign from the scan. On each image, object = an instance of the mask (0 = unlabelled; the --ignore-label values, by default 255 ' +
  '"void / border" in grey and palette masks, are unlabelled too; instances covering less than --min-patches patches dropped); ' +
  'mean_o(M) = Σ_p c_o(p) M(p) / Σ_p c_o(p) with c_o the instance’s per-patch coverage (mask resized and cropped like the image); the top query object maximises mean_o(Q_n), Q_n(p) = x_p·u_n, ' +
  'the top key object maximises mean_o(K_n), K_n(p) = x_p·v_n (x = the scan’s embedding). Images with fewer than two objects are excluded (n_single per layer). ' +
  'p_n = fraction of the usable images where they coincide; per layer Σ σ_n p_n / Σ σ_n over heads and modes; n = distinct usable images of the layer. ' +
  'baseline = the same statistic when the key object is drawn at random in proportion to object area: per image P(same) = area share of the top query object, averaged per mode, σ-weighted per layer. ' +
  'interval, excess_interval, mean_interval = 95 % percentile bootstrap over the usable images (see bootstrap) of weighted_probability, of weighted_probability − baseline and of mean_probability; ' +
  'per mode, interval = 95 % Clopper–Pearson interval of same / images.';

export interface PairingOptions {
  /** Each mode's top-k images (default 5). */
  top?: number;
  /** Drop instances covering less than this many patches (default 1). */
  minPatches?: number;
  /** Mask values that are unlabelled besides 0: default 255 for grey and palette masks; 'none': none. */
  ignoreLabels?: number[] | 'none';
  batch?: number;
  device?: Device;
  threads?: number;
  maxPixels?: number;
  /** What the user passed as --model. */
  input?: string;
  bootstrap?: BootstrapOptions;
}

export interface PairingResult {
  model: ModelInfo;
  options: { top: number; min_patches: number; ignore_label: number[] | string; batch: number; device: Device | null };
  run: string;
  embedding: 'ln' | 'residual';
  layers: LayerPairing[];
  modes: ModePairing[];
  /** Images that ran; of them, usable (two objects or more) and single (fewer). */
  images: number;
  images_used: number;
  images_single: number;
  skipped: { path: string; reason: string }[];
  bootstrap: BootstrapInfo;
  interrupted: boolean;
}

/** Where to look for an image's mask: the file name of a file or tar member, the stored name of a Parquet cell. */
function maskKey(row: { path: string; source: string; member: string | null; name: string | null }): string | null {
  if (row.source === 'file') return row.path;
  if (row.source === 'tar') return row.member;
  return row.name;
}

export async function runPairing(spec: VitSpec, scan: ScanRun, masks: string, opts: PairingOptions = {}, context?: Partial<JobContext>): Promise<PairingResult> {
  const ctx = jobContext(context);
  const top = opts.top ?? 5;
  const minPatches = opts.minPatches ?? 1;
  const meta = scan.meta;
  const d = spec.width;
  if (meta.model.width !== d || meta.model.layers !== spec.blocks.length || meta.model.heads !== spec.heads) {
    throw new UserError(`--model: the scan was made with a model of width ${meta.model.width}, ${meta.model.layers} layers, ${meta.model.heads} heads; this one has ${d}, ${spec.blocks.length}, ${spec.heads}`);
  }
  const { pp, options } = preprocessFor(spec);
  const imageSize: [number, number] = [...pp.crop];
  if (meta.image_size && (meta.image_size[0] !== imageSize[0] || meta.image_size[1] !== imageSize[1])) {
    throw new UserError(`the scan ran at ${meta.image_size.join('x')} but the model preprocesses to ${imageSize.join('x')}; use the model the scan was made with`);
  }
  const sigma = modeSigmas(scan);
  const vectors = headVectors(scan);
  const rows = topImageRows(scan, top);
  if (rows.length === 0) throw new UserError(`${scan.dir}: the scan has no top-k images yet; run or finish \`qkscope scan\` first`);

  // Modes (sorted) and, per image, which modes have it in their top-k.
  const modeKey = (l: number, h: number, m: number) => `${l}/${h}/${m}`;
  const modeIndex = new Map<string, number>();
  const modeInfo = [...new Set(rows.map((r) => modeKey(r.layer, r.head, r.mode)))]
    .map((k) => k.split('/').map(Number))
    .sort((a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2])
    .map(([layer, head, mode]) => ({ layer, head, mode, sigma: sigma.get(modeKey(layer, head, mode)) ?? 0 }));
  modeInfo.forEach((m, i) => modeIndex.set(modeKey(m.layer, m.head, m.mode), i));
  const byImage = new Map<number, { entry: ImageEntry; mask: string; jobs: number[] }>();
  const preSkipped: { path: string; reason: string }[] = [];
  const noName = new Set<number>();
  for (const r of rows) {
    let e = byImage.get(r.id);
    if (!e) {
      if (noName.has(r.id)) continue;
      const key = maskKey(r);
      const gone = r.source === 'file' && !existsSync(r.path);
      if (!key || gone) {
        noName.add(r.id);
        preSkipped.push({ path: r.path, reason: gone ? 'cannot read: file not found (ENOENT)' : `${r.source} cell without a file name, so no mask can be matched to it` });
        continue;
      }
      const mask = instanceMaskPath(masks, key);
      if (!mask) {
        const stem = basename(key).replace(/\.[^.]*$/, '');
        throw new UserError(`${r.path}: no instance mask in ${masks} (expected ${stem}.png or ${stem}_seg.png)`);
      }
      const entry: ImageEntry = { locator: r.path, kind: r.source as SourceKind, container: r.container || r.path, member: r.member };
      byImage.set(r.id, (e = { entry, mask, jobs: [] }));
    }
    e.jobs.push(modeIndex.get(modeKey(r.layer, r.head, r.mode))!);
  }
  const todo = [...byImage.values()];
  const layers = meta.layers;
  const embedding = meta.embedding ?? 'ln';
  const source = new ListingSource({ entries: todo.map((t) => t.entry) }, pp, options, { decode: { maxPixels: opts.maxPixels } });
  const layout = tokenLayout(spec, imageSize);
  const ignore = opts.ignoreLabels;
  const prepare = async (id: number, info: { width: number | null; height: number | null }) => {
    const m = await readInstanceMask(todo[id].mask, { width: info.width!, height: info.height!, path: todo[id].entry.locator });
    return instanceCoverage(m, pp, options, layout, minPatches, ignoredIds(m.kind, ignore));
  };
  const batch = opts.batch ?? DEFAULT_BATCH;
  const rt = await VitRuntime.create(spec, { outputs: { [embedding]: layers }, imageSize, device: opts.device, threads: opts.threads });
  const records: PairingRecord[] = [];
  const skipped: SkippedImage[] = [];
  let ran = 0;
  ctx.progress.start('pairing', todo.length);
  try {
    const T = layout.tokens, P = layout.patches, ps = layout.patchStart, Ls = layers.length;
    const Q = new Float64Array(P), K = new Float64Array(P);
    for await (const b of imageBatches(source, { batch, progress: ctx.progress, stop: ctx.stop, prepare })) {
      skipped.push(...b.skipped);
      if (b.items.length === 0) continue;
      const X = (await rt.run(b.pixels, b.items.length))[embedding]!;
      b.items.forEach((it, k) => {
        for (const j of todo[it.id].jobs) {
          const m = modeInfo[j];
          const li = layers.indexOf(m.layer);
          const vec = vectors.get(`${m.layer}/${m.head}`);
          if (li < 0 || !vec) continue;
          const u = vec.u.subarray(m.mode * d, (m.mode + 1) * d), v = vec.v.subarray(m.mode * d, (m.mode + 1) * d);
          for (let p = 0; p < P; p++) {
            const o = ((k * Ls + li) * T + ps + p) * d;
            let q = 0, kk = 0;
            for (let i = 0; i < d; i++) {
              q += X[o + i] * u[i];
              kk += X[o + i] * v[i];
            }
            Q[p] = q;
            K[p] = kk;
          }
          records.push({ image: it.id, mode: j, outcome: pairOutcome(Q, K, it.extra) });
        }
      });
      ran += b.items.length;
    }
  } finally {
    ctx.progress.end();
    await rt.close();
    source.close();
  }
  if (ran === 0) {
    const all = [...preSkipped, ...skipped.map((s) => ({ path: s.label, reason: s.reason }))];
    throw new UserError(`pairing: none of the ${todo.length + preSkipped.length} images could be used${all.length ? ` (first: ${all[0].path}: ${all[0].reason})` : ''}`);
  }
  const s = summarisePairing(modeInfo, records, layers, spec.blocks.length, opts.bootstrap);
  return {
    model: modelInfo(spec, opts.input ?? meta.model.input),
    options: {
      top,
      min_patches: minPatches,
      ignore_label: ignore === undefined ? `default: ${VOID_LABEL} in grey and palette masks, none in RGB masks` : ignore === 'none' ? [] : [...ignore],
      batch,
      device: opts.device ?? null,
    },
    run: scan.dir,
    embedding,
    layers: s.layers,
    modes: s.modes,
    images: ran,
    images_used: s.images,
    images_single: s.single,
    skipped: [...preSkipped, ...skipped.map((x) => ({ path: x.label, reason: x.reason }))],
    bootstrap: bootstrapInfo(opts.bootstrap),
    interrupted: !!ctx.stop?.stop && ran + skipped.length < todo.length,
  };
}

/** Writes pairing.json (manifest), pairing.csv (per mode) and the figure. */
export async function writePairing(r: PairingResult, dir: string, opts: { figures?: boolean } = {}): Promise<string> {
  const out = new RunDir(dir, 'pairing');
  try {
    out.csv(
      'pairing.csv',
      [
        ['layer', 'head', 'mode', 'sigma', 'images', 'same', 'probability', 'baseline', 'single', 'probability_lo', 'probability_hi'],
        ...r.modes.map((m) => [m.layer, m.head, m.mode, m.sigma, m.images, m.same, m.probability, m.baseline, m.single, m.interval?.[0], m.interval?.[1]]),
      ],
      'per mode: usable top-k images, how many pair the same object, probability (95 % Clopper–Pearson interval), chance baseline, images left out with fewer than two objects',
    );
    if (opts.figures !== false && r.layers.length) {
      await out.figure(
        'pairing',
        pairingFigure({ model: r.model.id, layers: r.layers, top: r.options.top, images: r.images_used, single: r.images_single, intervalLabel: bootstrapLabel(r.bootstrap) }),
        'P(same object) against depth: σ-weighted with its 95 % bootstrap interval, plain mean, chance baseline (dashed)',
      );
    }
    return out.commit(out.header(r.model, { ...r.options }, { run: r.run }), {
      run: r.run,
      index_base: 0,
      top: r.options.top,
      embedding: r.embedding,
      definition: PAIRING_DEFINITION,
      ignore_label: r.options.ignore_label,
      min_patches: r.options.min_patches,
      bootstrap: r.bootstrap,
      images: r.images,
      images_used: r.images_used,
      images_single: r.images_single,
      skipped: r.skipped,
      interrupted: r.interrupted,
      layers: r.layers,
      modes: r.modes,
    });
  } catch (e) {
    out.abort();
    throw e;
  }
}
