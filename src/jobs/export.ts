/**
 * `export`: a static, self-contained copy of the explorer for some svd / scan runs: the same
 * front-end as `serve` (web/src, built once as a classic script), reading precomputed files
 * instead of the API (web/src/data-static.ts). Every data file is a script that registers its
 * value (`qkscopeData(key, value)`), because browsers refuse fetch() of local files: the site
 * works from file:// as from any static host.
 *
 * What is stored (docs/method.md §9):
 * - the run list, the Models view's curves, each layer's head and mode numbers (store/explorer.ts,
 *   the same builders as `serve`), the stored anisotropy baseline;
 * - for the first `modesPerHead` modes of each head (σ descending) with top images in the scan:
 *   each top image's query and key maps on the patch grid as float16, recomputed through the
 *   one image-batch loop and the runtime (the scan stores only scores);
 * - each unique top image once, as a small JPEG (longest side `imageSize`);
 * - the model (unless left out): the ONNX graph of export-onnx, each layer's q/k head weights
 *   (for the in-page decomposition), and onnxruntime-web's WebAssembly binary.
 *
 *   const r = await runExport(['runs/vit-b16'], { modesPerHead: 16 }, ctx);
 *   const w = await writeExport(r, 'site');   // streams the images through the model as it writes
 */
import { existsSync, readdirSync, readFileSync, realpathSync, rmSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as A from '../api-types.js';
import type { VitSpec } from '../arch/spec.js';
import { loadSpec } from '../arch/load.js';
import { forwardUnavailable } from '../arch/runnable.js';
import { headWeights } from '../arch/head-weights.js';
import { UserError } from '../errors.js';
import { encodeHalf } from '../io/float16.js';
import { rgbToJpeg } from '../io/jpeg.js';
import { readNpy, type NpyArray } from '../io/npy.js';
import { preprocessFor } from '../images/preprocess.js';
import { ListingSource } from '../images/source.js';
import type { ImageEntry } from '../images/sources.js';
import { patchMaps } from '../analysis/mode-maps.js';
import { imageBatches } from '../runtime/batch-loop.js';
import type { Device } from '../runtime/device.js';
import { VitRuntime } from '../runtime/vit-runtime.js';
import { type ExplorerRun, headDetail, modeMapsPayload, headVectors, imageLabel, modeDetail, modelRun, runBrief, storedAnisotropy } from '../store/explorer.js';
import { RunDir } from '../store/run-dir.js';
import { TopkReader, type TopkImageLocator, type TopkRow } from '../store/scan-run.js';
import { readSvdSummary } from '../store/svd-run.js';
import { VERSION } from '../version.js';
import { ANISOTROPY_DEFINITION } from './anisotropy.js';
import { CONTRIBUTION_DEFINITION } from './contributions.js';
import { onnxBytes, runExportOnnx, type OnnxExport } from './export-onnx.js';
import type { OnnxModelCard, SiteHeadWeights, SiteIndex, SiteLayer, SiteModeMaps, SiteRunMeta } from '../site-types.js';

export type { SiteHeadWeights, SiteIndex, SiteLayer, SiteModeMaps, SiteRunMeta };
import { jobContext, type JobContext } from './job.js';

export interface ExportOptions {
  /** Modes per head (the largest σ first) whose top images and maps are stored (default 16). */
  modesPerHead?: number;
  /** Longest side of the stored top images in pixels (default 160). */
  imageSize?: number;
  /** JPEG quality of the stored images (default 82). */
  quality?: number;
  /** Include each run's model so the Image view runs in the page (default true). */
  model?: boolean;
  /** Leave out models whose weights exceed this many MB (default 100). */
  maxModelMb?: number;
  title?: string;
  batch?: number;
  device?: Device;
  threads?: number;
  maxPixels?: number;
  /** Open hub models from the cache only. */
  offline?: boolean;
}

export const EXPORT_DEFAULTS = { modesPerHead: 16, imageSize: 160, quality: 82, maxModelMb: 100 } as const;

/** Site data format, read by web/src/data-static.ts. */
export const SITE_FORMAT = 'qkscope-site/1';

interface Entry {
  l: number;
  h: number;
  n: number;
  row: TopkRow;
  key: string;
}

interface RunWork {
  id: string;
  slug: string;
  run: ExplorerRun;
  spec: VitSpec | null;
  close: () => Promise<void>;
  entries: Entry[];
  /** key → locator, in first-seen order. */
  images: Map<string, TopkImageLocator>;
  stored: number;
  card: OnnxModelCard | null;
  /** The model's export graph (weights read when the site is written). */
  onnx: OnnxExport | null;
  modelNote: string | null;
}

export interface SiteFile {
  /** Path inside the site. */
  name: string;
  data: string | Uint8Array;
}

export interface ExportResult {
  index: SiteIndex;
  options: Required<Pick<ExportOptions, 'modesPerHead' | 'imageSize' | 'quality' | 'model' | 'maxModelMb'>>;
  inputs: string[];
  /**
   * Every file of the site, produced lazily: small data first, then per run the images (through
   * the model, batch by batch, maps computed on the way), the mode maps, the model files.
   * `writeExport` drains it; memory stays bounded by one batch and one run's maps.
   */
  files: AsyncIterable<SiteFile>;
  warnings: string[];
  close(): Promise<void>;
}

const ORT_WASM = 'ort-wasm-simd-threaded.jsep.wasm';
/** Base64 chunk size of the model and wasm scripts (under any engine's string limit). */
const CHUNK = 24 << 20;

/** The script text registering `value` under `key` (the site's only data format). */
export function dataScript(key: string, value: unknown): string {
  return `qkscopeData(${JSON.stringify(key)},${JSON.stringify(value)});\n`;
}

/** Where `key`'s script lives in the site. */
export function dataPath(key: string): string {
  return `data/${key}.js`;
}

const b64 = (a: Uint8Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
const f32b64 = (a: ArrayLike<number>) => b64(new Uint8Array(Float32Array.from(a).buffer));

/** Runs given on the command line: a run directory, or a folder of runs (found as serve finds them, ids relative to it). */
export function findRuns(inputs: string[]): { id: string; dir: string }[] {
  const out: { id: string; dir: string }[] = [];
  for (const input of inputs) {
    if (!existsSync(input) || !statSync(input).isDirectory()) throw new UserError(`${input}: no such run directory`);
    if (existsSync(join(input, 'summary.json'))) {
      out.push({ id: basename(resolve(input)), dir: input });
      continue;
    }
    const found: { id: string; dir: string }[] = [];
    const walk = (dir: string, depth: number) => {
      if (existsSync(join(dir, 'summary.json'))) found.push({ id: relative(input, dir).split(sep).join('/') || '.', dir });
      if (depth >= 3) return;
      for (const name of readdirSync(dir).sort()) {
        if (name.startsWith('.') || name === 'node_modules') continue;
        const p = join(dir, name);
        if (statSync(p).isDirectory()) walk(p, depth + 1);
      }
    };
    walk(input, 0);
    if (!found.length) throw new UserError(`${input}: no summary.json in it or below; give svd run directories (qkscope svd MODEL --out DIR)`);
    out.push(...found);
  }
  const seen = new Map<string, number>();
  return out.map((r) => {
    const n = (seen.get(r.id) ?? 0) + 1;
    seen.set(r.id, n);
    return n > 1 ? { ...r, id: `${r.id}-${n}` } : r;
  });
}

/** A file-name-safe, unique slug for a run id. */
function slugOf(id: string, used: Set<string>): string {
  const base = id.replace(/[^\w.-]+/g, '_').replace(/^\.+/, '_') || 'run';
  let s = base;
  for (let i = 2; used.has(s); i++) s = `${base}-${i}`;
  used.add(s);
  return s;
}

/** The model input of a run: as recorded, or relative to where svd ran / the run directory. */
function modelInput(input: string, runDir: string): string {
  if (!input || existsSync(input)) return input;
  for (const base of [runDir, dirname(runDir), dirname(dirname(runDir))]) {
    const p = resolve(base, input);
    if (existsSync(p)) return p;
  }
  return input;
}

/** The identity of a stored image: its source and the crop geometry (runs with the same preprocessing share it). */
function imageKey(loc: TopkImageLocator, pp: unknown, side: number): string {
  return createHash('sha256').update(JSON.stringify([loc.kind, loc.path, loc.container, loc.member, pp, side])).digest('hex').slice(0, 20);
}

export async function runExport(inputs: string[], opts: ExportOptions = {}, context?: Partial<JobContext>): Promise<ExportResult> {
  const ctx = jobContext(context);
  const o = {
    modesPerHead: opts.modesPerHead ?? EXPORT_DEFAULTS.modesPerHead,
    imageSize: opts.imageSize ?? EXPORT_DEFAULTS.imageSize,
    quality: opts.quality ?? EXPORT_DEFAULTS.quality,
    model: opts.model ?? true,
    maxModelMb: opts.maxModelMb ?? EXPORT_DEFAULTS.maxModelMb,
  };
  if (!Number.isInteger(o.modesPerHead) || o.modesPerHead < 0) throw new UserError(`--modes-per-head ${o.modesPerHead}: give a whole number ≥ 0`);
  if (!Number.isInteger(o.imageSize) || o.imageSize < 16 || o.imageSize > 1024) throw new UserError(`--image-size ${o.imageSize}: give a side in pixels from 16 to 1024`);
  const warnings: string[] = [];
  const warn = (m: string) => {
    warnings.push(m);
    ctx.progress.note(`warning: ${m}`);
  };
  const found = findRuns(inputs);
  const slugs = new Set<string>();
  const works: RunWork[] = [];
  const closeAll = async () => {
    for (const w of works) {
      w.run.scan?.close();
      await w.close();
    }
  };
  try {
    for (const f of found) {
      const summary = readSvdSummary(f.dir);
      const arrays = new Map<string, NpyArray>();
      const scanPath = join(f.dir, 'run.db');
      const scan = existsSync(scanPath) ? new TopkReader(realpathSync(scanPath)) : null;
      const run: ExplorerRun = {
        id: f.id,
        dir: f.dir,
        summary,
        scan,
        array(file) {
          let a = arrays.get(file);
          if (!a) {
            const p = join(f.dir, file);
            if (!existsSync(p)) throw new UserError(`${f.dir}: ${file} is missing; re-run qkscope svd`);
            a = readNpy(p);
            arrays.set(file, a);
          }
          return a;
        },
      };
      const w: RunWork = { id: f.id, slug: slugOf(f.id, slugs), run, spec: null, close: async () => undefined, entries: [], images: new Map(), stored: 0, card: null, onnx: null, modelNote: null };
      works.push(w);
      const vision = (summary.model as { modality?: string }).modality !== 'text';
      const needModel = vision && (o.model || (scan && o.modesPerHead > 0));
      if (needModel) {
        const input = modelInput(summary.model.input ?? '', f.dir);
        const hash = summary.model.id.lastIndexOf('#');
        const part = hash > 0 ? summary.model.id.slice(hash + 1) : undefined;
        try {
          const m = await loadSpec(input, { offline: opts.offline, part, numHeads: summary.dims.heads });
          w.spec = m.spec;
          w.close = m.close;
        } catch (e) {
          if (!(e instanceof UserError)) throw e;
          if (scan && o.modesPerHead > 0) throw new UserError(`run ${f.id}: cannot open its model ${input} (${e.message}); the top images' maps are recomputed with it: keep the model there, or export with --modes-per-head 0`);
          w.modelNote = `the model (${input}) could not be opened when the site was made: ${e.message}`;
        }
        const sd = summary.dims;
        if (w.spec && (w.spec.layers !== sd.layers || w.spec.heads !== sd.heads || w.spec.width !== sd.width)) {
          throw new UserError(`run ${f.id}: the model at ${input} (L=${w.spec.layers} H=${w.spec.heads} d=${w.spec.width}) is not the run's (L=${sd.layers} H=${sd.heads} d=${sd.width})`);
        }
        const why = w.spec ? forwardUnavailable(w.spec) : null;
        if (why) {
          if (scan && o.modesPerHead > 0) throw new UserError(`run ${f.id}: ${summary.model.id} cannot be run on images (${why}); export it with --modes-per-head 0`);
          w.modelNote = `${summary.model.id} cannot be run on images: ${why}`;
        }
      } else if (!vision) w.modelNote = 'a text model: the weight views only';
      else w.modelNote = 'left out (--no-model)';
      // Top images of the stored modes.
      if (scan && w.spec && !forwardUnavailable(w.spec)) {
        const { pp } = preprocessFor(w.spec);
        const stored = Math.min(o.modesPerHead, summary.dims.head_dim);
        w.stored = stored;
        for (let l = 0; l < summary.dims.layers; l++)
          for (let h = 0; h < summary.dims.heads; h++)
            for (let n = 0; n < stored; n++)
              for (const row of scan.top(l, h, n)) {
                const key = imageKey(row.locator, pp, o.imageSize);
                if (!w.images.has(key)) w.images.set(key, row.locator);
                w.entries.push({ l, h, n, row, key });
              }
      }
      // The model for the page.
      if (o.model && w.spec && !forwardUnavailable(w.spec)) {
        const exp = await runExportOnnx(w.spec, { input: summary.model.input ?? undefined });
        const size = exp.card.weight_bytes / 1e6;
        if (size > o.maxModelMb) {
          w.modelNote = `left out: ${size.toFixed(0)} MB of weights is over --max-model-mb ${o.maxModelMb} (the Image view needs \`qkscope serve\` for this model)`;
        } else {
          w.card = exp.card;
          w.onnx = exp;
        }
      }
    }
  } catch (e) {
    await closeAll();
    throw e;
  }

  const created = new Date().toISOString();
  const runs = works.map((w) => w.run);
  const meta: Record<string, SiteRunMeta> = {};
  for (const w of works) {
    meta[w.id] = {
      slug: w.slug,
      anisotropy:
        storedAnisotropy(w.run, ANISOTROPY_DEFINITION) ?? {
          available: false,
          reason: `run ${w.id} stores no anisotropy baseline (the static site cannot compute one); run \`qkscope anisotropy MODEL IMAGES --run RUN\` before exporting`,
        },
      modes_per_head: w.stored,
      // Chunks and bytes are filled in when the model is written (the index is written last).
      model: w.card ? { card: w.card, chunks: 0, bytes: 0 } : null,
      model_note: w.modelNote,
      gallery: [...w.images.entries()].slice(0, 500).map(([key, loc]) => ({ key, label: imageLabel(loc) })),
    };
  }
  const index: SiteIndex = {
    format: SITE_FORMAT,
    title: opts.title ?? (works.length === 1 ? `qkscope: ${works[0].run.summary.model.id}` : `qkscope: ${works.length} models`),
    created,
    tool: { name: 'qkscope', version: VERSION },
    runs: { runs_dir: '(static site)', runs: runs.map(runBrief) },
    models: { runs_dir: '(static site)', runs: runs.map(modelRun) },
    meta,
    wasm_chunks: works.some((w) => w.card) ? -1 : 0,
    image_size: o.imageSize,
    contribution_definition: CONTRIBUTION_DEFINITION,
    notes: [],
  };

  async function* files(): AsyncGenerator<SiteFile> {
    // The model files are written first so the index can record their exact chunk counts.
    const wasm = works.some((w) => w.card) ? readFileSync(ortWasmPath()) : null;
    if (wasm) {
      const chunks = base64Chunks(wasm);
      index.wasm_chunks = chunks.length;
      for (let i = 0; i < chunks.length; i++) yield { name: dataPath(`ort/wasm.${i}`), data: dataScript(`ort/wasm.${i}`, chunks[i]) };
    }
    for (const w of works) {
      const run = w.run;
      const { layers: L, heads: H } = run.summary.dims;
      // Layers: heads and modes (top lists of the stored modes only).
      const storedSet = new Set<string>();
      for (const e of w.entries) storedSet.add(`${e.l}/${e.h}/${e.n}`);
      for (let l = 0; l < L; l++) {
        const layer: SiteLayer = { heads: [], modes: [], stored_modes: w.stored };
        for (let h = 0; h < H; h++) {
          layer.heads.push(headDetail(run, l, h, storedSet));
          const modes: A.ModeDetail[] = [];
          for (let n = 0; n < run.summary.dims.head_dim; n++) {
            const md = modeDetail(run, l, h, n);
            modes.push(storedSet.has(`${l}/${h}/${n}`) ? md : { ...md, top: [] });
          }
          layer.modes.push(modes);
        }
        yield { name: dataPath(`runs/${w.slug}/L${l}`), data: dataScript(`runs/${w.slug}/L${l}`, layer) };
      }
      // Images through the model: maps of every stored (mode, sign, rank), JPEGs once.
      if (w.entries.length && w.spec) yield* imageFiles(w);
      // The model for the page.
      if (w.card && w.onnx && w.spec) {
        const exp = w.onnx;
        const bytes = await onnxBytes(exp);
        w.onnx = null;
        const chunks = base64Chunks(bytes);
        meta[w.id].model = { card: exp.card, chunks: chunks.length, bytes: bytes.length };
        for (let i = 0; i < chunks.length; i++) yield { name: dataPath(`model/${w.slug}/onnx.${i}`), data: dataScript(`model/${w.slug}/onnx.${i}`, chunks[i]) };
        for (let l = 0; l < L; l++) {
          const hw: SiteHeadWeights = { heads: [] };
          for (let h = 0; h < H; h++) {
            const x = await headWeights(w.spec, l, h);
            hw.heads.push({ wq: f32b64(x.wq), wk: f32b64(x.wk), bq: x.bq ? f32b64(x.bq) : null, bk: x.bk ? f32b64(x.bk) : null });
          }
          yield { name: dataPath(`model/${w.slug}/heads.${l}`), data: dataScript(`model/${w.slug}/heads.${l}`, hw) };
        }
      }
    }
    yield { name: dataPath('index'), data: dataScript('index', index) };
  }

  const emitted = new Set<string>();
  async function* imageFiles(w: RunWork): AsyncGenerator<SiteFile> {
    const spec = w.spec!;
    const run = w.run;
    const d = spec.width;
    const { pp, options } = preprocessFor(spec);
    const keys = [...w.images.keys()];
    const listing: ImageEntry[] = keys.map((k) => {
      const loc = w.images.get(k)!;
      return { locator: loc.path, kind: loc.kind, container: loc.container, member: loc.member };
    });
    const byKey = new Map<string, Entry[]>();
    for (const e of w.entries) {
      let list = byKey.get(e.key);
      if (!list) byKey.set(e.key, (list = []));
      list.push(e);
    }
    const layers = [...new Set(w.entries.map((e) => e.l))].sort((a, b) => a - b);
    const pos = new Map(layers.map((l, i) => [l, i]));
    // Per mode: its images' maps, filled as batches finish.
    type Stored = SiteModeMaps['images'][number];
    const perMode = new Map<string, Stored[]>();
    for (const e of w.entries) {
      const k = `${e.l}/${e.h}/${e.n}`;
      if (!perMode.has(k)) perMode.set(k, []);
    }
    const slot = new Map<Entry, Stored>();
    for (const e of w.entries) {
      const s: Stored = { sign: e.row.sign, rank: e.row.rank, label: imageLabel(e.row.locator), id: `g${e.key}`, thumb: null, scan: { score: e.row.score, qmax: e.row.qmax, kmax: e.row.kmax }, maps: null, error: { status: 422, message: 'not computed' } };
      perMode.get(`${e.l}/${e.h}/${e.n}`)!.push(s);
      slot.set(e, s);
    }
    const vectors = new Map<string, { u: Float64Array; v: Float64Array }>();
    const vecOf = (l: number, h: number) => {
      const k = `${l}/${h}`;
      let x = vectors.get(k);
      if (!x) {
        const flat = (a: Float64Array[]) => {
          const o2 = new Float64Array(a.length * d);
          a.forEach((r, n) => o2.set(r, n * d));
          return o2;
        };
        x = { u: flat(headVectors(run.array('U.npy'), l, h)), v: flat(headVectors(run.array('V.npy'), l, h)) };
        vectors.set(k, x);
      }
      return x;
    };
    const meta = run.scan?.meta() ?? null;
    const lnScan = !meta || meta.embedding === undefined || meta.embedding === 'ln';
    let mismatched = 0;
    const source = new ListingSource({ entries: listing }, pp, options, { keepCrops: true, decode: { maxPixels: opts.maxPixels } });
    const rt = await VitRuntime.create(spec, { outputs: { ln: layers }, device: opts.device, threads: opts.threads });
    const layout = rt.layout;
    const T = layout.tokens;
    const per = layers.length * T * d;
    ctx.progress.start(`export ${w.id}`, keys.length);
    try {
      for await (const b of imageBatches(source, { batch: opts.batch, progress: ctx.progress, stop: ctx.stop })) {
        for (const s of b.skipped) {
          for (const e of byKey.get(keys[s.id]) ?? []) slot.get(e)!.error = { status: 422, message: `cannot read the image (${s.reason})` };
          warn(`${s.label}: cannot read it (${s.reason}); its cards show the reason`);
        }
        if (!b.items.length) continue;
        const r = await rt.run(b.pixels, b.items.length);
        const ln = r.ln!;
        for (let i = 0; i < b.items.length; i++) {
          const it = b.items[i];
          const key = keys[it.id];
          for (const e of byKey.get(key) ?? []) {
            const { u, v } = vecOf(e.l, e.h);
            const off = i * per + pos.get(e.l)! * T * d;
            const mp = patchMaps(ln, off, layout, d, u, v, e.n, e.row.sign);
            if (lnScan && Math.abs(mp.score - e.row.score) > 1e-3 * Math.max(1e-6, Math.abs(e.row.score))) mismatched++;
            const s = slot.get(e)!;
            s.maps = { q: b64(encodeHalf(mp.q)), k: b64(encodeHalf(mp.k)), qmax: mp.qmax, kmax: mp.kmax, score: mp.score };
            s.error = null;
          }
          if (!emitted.has(key)) {
            emitted.add(key);
            const c = it.info.crop!;
            const jpg = await rgbToJpeg(c.data, c.width, c.height, o.imageSize, o.quality);
            yield { name: dataPath(`img/${key}`), data: dataScript(`img/${key}`, `data:image/jpeg;base64,${jpg.toString('base64')}`) };
          }
        }
      }
    } finally {
      ctx.progress.end();
      source.close();
      await rt.close();
    }
    if (ctx.stop?.stop) throw new UserError(`export interrupted; nothing was written (run it again)`, 130);
    if (mismatched) warn(`run ${w.id}: ${mismatched} recomputed scores differ from the scan's by more than 0.1 % (images changed since the scan, or another model?)`);
    for (const [k, images] of perMode) {
      const [l, h, n] = k.split('/').map(Number);
      const payload: SiteModeMaps = modeMapsPayload(w.id, { layer: l, head: h, mode: n }, layout, images, { count: 0, hint: null }, 0);
      yield { name: dataPath(`runs/${w.slug}/maps/${l}-${h}-${n}`), data: dataScript(`runs/${w.slug}/maps/${l}-${h}-${n}`, payload) };
    }
  }

  return { index, options: o, inputs: found.map((f) => f.dir), files: files(), warnings, close: closeAll };
}

function base64Chunks(bytes: Uint8Array): string[] {
  const s = b64(bytes);
  const out: string[] = [];
  for (let i = 0; i < s.length; i += CHUNK) out.push(s.slice(i, i + CHUNK));
  return out;
}

/** onnxruntime-web's WebAssembly binary (the build with the WebGPU and CPU back-ends). */
export function ortWasmPath(): string {
  const require = createRequire(import.meta.url);
  try {
    return require.resolve(`onnxruntime-web/${ORT_WASM}`);
  } catch {
    throw new UserError(`onnxruntime-web/${ORT_WASM}: not found; reinstall onnxruntime-web (npm install), or export with --no-model`);
  }
}

/** The front-end built for static sites (vite build -c web/vite.static.config.ts): dist/web-static/. */
export function staticAppDir(): string {
  const here = dirname(fileURLToPath(import.meta.url)); // dist/src/jobs
  return resolve(here, '..', '..', 'web-static');
}

/** The site's page: the explorer's shell, loading the data registry and the app as classic scripts. */
export function siteHtml(index: Pick<SiteIndex, 'title'>): string {
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/"/g, '&quot;');
  return `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>${esc(index.title)}</title>
    <link rel="icon" href="data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E%3Crect width='16' height='16' rx='3' fill='%23223'/%3E%3Crect x='3' y='3' width='5' height='10' fill='%23e34'/%3E%3Crect x='8' y='3' width='5' height='10' fill='%233cd'/%3E%3C/svg%3E" />
    <link rel="stylesheet" href="app.css" />
  </head>
  <body>
    <header class="topbar">
      <a class="brand" href="#/">qk<span>scope</span></a>
      <nav id="crumbs" aria-label="breadcrumbs"></nav>
      <span class="spacer"></span>
      <span class="apilink" title="a static export: the data are files beside this page">static site</span>
    </header>
    <main id="app"><p class="loading">Loading…</p></main>
    <noscript>This site needs JavaScript.</noscript>
    <script>window.QKSCOPE_STATIC = { data: 'data/' };</script>
    <script src="app.js"></script>
  </body>
</html>
`;
}

/**
 * `--out` must be a new or empty folder, or an earlier export (whose files are replaced: the
 * data folder of another set of runs would otherwise linger).
 */
function clearPreviousExport(dir: string): void {
  if (!existsSync(dir)) return;
  const names = readdirSync(dir);
  if (!names.length) return;
  if (!names.includes('export.json')) throw new UserError(`--out ${dir}: not empty and not an earlier export; give a new folder`);
  for (const n of ['data', 'app.js', 'app.css', 'index.html', 'export.json']) rmSync(join(dir, n), { recursive: true, force: true });
}

export interface ExportWritten {
  dir: string;
  files: number;
  bytes: number;
  manifest: string;
}

/** Writes the site into `dir` (every file as NAME.partial, renamed at the end; export.json last). */
export async function writeExport(r: ExportResult, dir: string): Promise<ExportWritten> {
  const app = staticAppDir();
  if (!existsSync(join(app, 'app.js'))) {
    throw new UserError(`${app}: the static front-end is not built; run \`npm run build\` (vite build -c web/vite.static.config.ts)`);
  }
  clearPreviousExport(dir);
  const out = new RunDir(dir, 'export');
  let files = 0;
  let bytes = 0;
  const groups: Record<string, number> = {};
  const add = (name: string, data: string | Uint8Array) => {
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    out.bytes(name, buf, null);
    files++;
    bytes += buf.length;
    const g = name.startsWith('data/') ? name.split('/').slice(0, 2).join('/') : name;
    groups[g] = (groups[g] ?? 0) + buf.length;
  };
  try {
    for await (const f of r.files) add(f.name, f.data);
    for (const name of ['app.js', 'app.css']) add(name, readFileSync(join(app, name)));
    add('index.html', siteHtml(r.index));
    out.describeGroup('index.html', 'the site: open it in a browser (file:// or any static host)');
    out.describeGroup('app.js/.css', 'the explorer front-end (the same code as `qkscope serve`, built as one classic script)');
    out.describeGroup('data/index.js', 'runs, the Models view, per-run notes (a script: qkscopeData(key, value))');
    out.describeGroup('data/runs/RUN/L<l>.js', "each layer's head and mode numbers");
    out.describeGroup('data/runs/RUN/maps/L-H-N.js', "a stored mode's top images with their query/key maps (float16, base64)");
    out.describeGroup('data/img/KEY.js', 'each unique top image once (JPEG, base64)');
    out.describeGroup('data/model/RUN/onnx.I.js', 'the model (ONNX of export-onnx, base64 chunks) for the in-page Image view');
    out.describeGroup('data/model/RUN/heads.L.js', "layer L's q/k head weights (float32) for the in-page decomposition");
    out.describeGroup('data/ort/wasm.I.js', "onnxruntime-web's WebAssembly binary (base64 chunks)");
    const manifest = out.commit(out.header(null, { ...r.options }, r.inputs), {
      site: { format: SITE_FORMAT, files: files + 1, bytes, by_part: groups },
      runs: Object.fromEntries(Object.entries(r.index.meta).map(([id, m]) => [id, { slug: m.slug, modes_per_head: m.modes_per_head, images: m.gallery.length, model: m.model ? { bytes: m.model.bytes } : null, model_note: m.model_note }])),
      warnings: r.warnings,
    });
    bytes += statSync(manifest).size;
    return { dir, files: files + 1, bytes, manifest };
  } catch (e) {
    out.abort();
    throw e;
  } finally {
    await r.close();
  }
}
