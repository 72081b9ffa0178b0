/**
 * The JSON API of `qkscope serve` (docs/API.md; payload types in src/api-types.ts). Handlers
 * validate their inputs and throw HttpError for what the client got wrong; every number comes
 * from the functions the CLI uses (store readers, jobs, analysis), never from a copy here.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { realpathSync, statSync } from 'node:fs';
import { UserError } from '../errors.js';
import type * as A from '../api-types.js';
import { decompositionOf, imageModesOf } from '../analysis/decomposition.js';
import { MAPS_DEFINITION, anisotropyPayload, headDetail as headPayload, modeDetail as modePayload, modeMapsPayload, modelRun, runBrief, storedBaselineValues, type ExplorerRun } from '../store/explorer.js';
import { patchMaps } from '../analysis/mode-maps.js';
import type { HeadModes } from '../analysis/types.js';
import { expandImagePaths } from '../images/sources.js';
import { ListingSource } from '../images/source.js';
import type { TopkImageLocator } from '../store/scan-run.js';
import { ANISOTROPY_DEFINITION, anisotropyBaseline } from '../jobs/anisotropy.js';
import { CONTRIBUTION_DEFINITION, contributionsOf } from '../jobs/contributions.js';
import { HttpError, etagOf, mimeOf, readBody, sendBytes, sendFile, sendJson } from './http.js';
import { ImageRegistry, ReadableRoots, asHttp, diskIdOf, keyOf, labelOf, type ServerImage } from './images.js';
import { Lru, memo } from './lru.js';
import { ModelPool, resolveModelInput, type Forward, type ModelSession, type RunSettings } from './models.js';
import { RunStore, headVectors, modalityOf, salienceVector, type RunInfo } from './runs.js';

export interface ApiOptions extends RunSettings {
  runsDir: string;
  /** Upload limit in bytes. */
  maxUploadBytes: number;
  /** Folders of images offered in the Image view's picker (also readable, and used for the anisotropy fallback). */
  imagesDirs?: string[];
  /** More folders the server may read images from (scans of images outside RUNS_DIR). */
  allowImages?: string[];
  /** Read every image a scan recorded, wherever it is. */
  allowScanImages?: boolean;
  offline?: boolean;
  /** Images used for a live anisotropy estimate when the run stores none (default 64). */
  anisotropyImages?: number;
  /** Uploads received at once (more: 503 at once). */
  maxConcurrentUploads?: number;
  /** Milliseconds an upload's body may take (408 after). */
  uploadTimeoutMs?: number;
}

type Handler = (ctx: Ctx) => Promise<void> | void;
interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  params: string[];
  query: URLSearchParams;
}
interface Route {
  method: 'GET' | 'POST';
  /** Segments after /api; ':x' captures one (decoded) segment. */
  pattern: string[];
  doc: string;
  handler: Handler;
}

const ENDPOINTS_DOC = 'docs/API.md';
/** Thumbnails of the Mode view's cards: the card's size at 2× pixel density. */
const THUMB_SIDE = 336;

export class Api {
  readonly runs: RunStore;
  readonly images: ImageRegistry;
  readonly models: ModelPool;
  private routes: Route[] = [];
  private anisotropyCache = new Lru<string, Promise<A.Anisotropy>>(64);
  private modeMapsCache = new Lru<string, Promise<A.ModeMaps>>(128);
  private imagesDirs: string[];
  private uploading = 0;

  constructor(readonly opts: ApiOptions) {
    this.runs = new RunStore(opts.runsDir);
    this.imagesDirs = (opts.imagesDirs ?? []).map((d) => checkFolder(d, '--images'));
    const roots = [this.runs.root, ...this.imagesDirs, ...(opts.allowImages ?? []).map((d) => checkFolder(d, '--allow-images'))];
    this.images = new ImageRegistry(new ReadableRoots(roots, !!opts.allowScanImages), { storeBytes: 256 << 20, maxPixels: opts.maxPixels });
    this.models = new ModelPool({ ...opts });
    this.defineRoutes();
  }

  async close(): Promise<void> {
    this.runs.close();
    await this.models.close();
    this.images.close();
  }

  /** Handles /api/...; returns false when the path is not an API path. */
  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> {
    const raw = url.pathname.split('/').slice(1); // ['api', ...]
    if (raw[0] !== 'api') return false;
    let segs: string[];
    try {
      segs = raw.slice(1).filter((s, i, a) => s !== '' || i < a.length - 1).map((s) => decodeURIComponent(s));
    } catch {
      throw new HttpError(400, 'bad URL encoding');
    }
    if (segs.length === 1 && segs[0] === '') segs = [];
    let methodMismatch = false;
    for (const r of this.routes) {
      if (r.pattern.length !== segs.length) continue;
      const params: string[] = [];
      let ok = true;
      for (let i = 0; i < segs.length; i++) {
        if (r.pattern[i].startsWith(':')) params.push(segs[i]);
        else if (r.pattern[i] !== segs[i]) {
          ok = false;
          break;
        }
      }
      if (!ok) continue;
      if (r.method !== req.method && !(r.method === 'GET' && req.method === 'HEAD')) {
        methodMismatch = true;
        continue;
      }
      try {
        await r.handler({ req, res, params, query: url.searchParams });
      } catch (e) {
        throw asHttp(e);
      }
      return true;
    }
    if (methodMismatch) throw new HttpError(405, `${req.method} is not allowed here`);
    throw new HttpError(404, `no such endpoint: ${url.pathname} (GET /api lists them; see ${ENDPOINTS_DOC})`);
  }

  private route(method: 'GET' | 'POST', path: string, doc: string, handler: Handler): void {
    this.routes.push({ method, pattern: path.split('/').filter(Boolean), doc, handler });
  }

  // -------------------------------------------------------------------------------------------

  private defineRoutes(): void {
    this.route('GET', '', 'this list', ({ res }) => {
      const body: A.ApiIndex = {
        name: 'qkscope serve API',
        docs: ENDPOINTS_DOC,
        index_base: 0,
        endpoints: this.routes.map((r) => ({ method: r.method, path: '/api/' + r.pattern.join('/'), doc: r.doc })),
      };
      sendJson(res, 200, body);
    });

    this.route('GET', 'runs', 'svd runs under RUNS_DIR', ({ res }) => {
      const body: A.RunList = { runs_dir: this.opts.runsDir, runs: this.runs.list().map((r) => runBrief(this.explorer(r))) };
      sendJson(res, 200, body);
    });

    this.route('GET', 'models', 'per run: layer-mean cosine against depth with the 95% chance band (Models view)', ({ res }) => {
      const body: A.ModelList = {
        runs_dir: this.opts.runsDir,
        runs: this.runs.list().map((r) => modelRun(this.explorer(r))),
      };
      sendJson(res, 200, body);
    });

    this.route('GET', 'runs/:run', "a run's summary.json, plus its id and whether it has a scan", ({ res, params }) => {
      const r = this.runs.get(params[0]);
      const body: A.RunDetail = { id: r.id, has_scan: !!r.scanPath, summary: r.summary as unknown as Record<string, unknown> };
      sendJson(res, 200, body);
    });

    this.route('GET', 'runs/:run/files/:name', 'a file of the run directory (only the files summary.json lists, and only inside RUNS_DIR)', ({ req, res, params }) => {
      const r = this.runs.get(params[0]);
      const name = params[1];
      if (name.includes('/') || name.includes('\\') || name === '..' || name === '.' || name.includes('\0')) {
        throw new HttpError(403, `${JSON.stringify(name)}: paths outside the run directory are refused`);
      }
      const allowed = new Set<string>(['summary.json']);
      for (const k of Object.keys(r.summary.files ?? {})) {
        const m = /^(.*)\.([a-z0-9]+)\/\.([a-z0-9]+)$/i.exec(k); // 'heatmap.svg/.png'
        if (m) allowed.add(`${m[1]}.${m[2]}`).add(`${m[1]}.${m[3]}`);
        else allowed.add(k);
      }
      if (!allowed.has(name)) throw new HttpError(404, `run ${r.id}: no file ${JSON.stringify(name)}`);
      // Opened by its real path: a link out of RUNS_DIR is refused like a missing file.
      const p = this.runs.file(r.dir, name);
      if (!p) throw new HttpError(404, `run ${r.id}: no file ${JSON.stringify(name)} inside RUNS_DIR`);
      const st = statSync(p);
      if (!st.isFile()) throw new HttpError(404, `run ${r.id}: ${JSON.stringify(name)} is not a file`);
      sendFile(res, p, st.size, mimeOf(name), 'no-cache', req.method ?? 'GET');
    });

    this.route('GET', 'runs/:run/heads/:layer/:head', 'one head: σ spectrum, per-mode cosines and chance bands, key salience', ({ res, params }) => {
      const r = this.runs.get(params[0]);
      const { l, h } = this.lh(r, params[1], params[2]);
      sendJson(res, 200, this.headDetail(r, l, h));
      // The Mode view of this head comes next: build the runtime that stops at this block now.
      if (r.scanPath && modalityOf(r.summary) === 'vision') void this.model(r).then((m) => m.warm(l)).catch(() => undefined);
    });

    this.route('GET', 'runs/:run/anisotropy', "per layer: the run's anisotropy baseline (anisotropy.json, else the scan's, else computed live) and the relative curves", async ({ res, params }) => {
      const r = this.runs.get(params[0]);
      sendJson(res, 200, await memo(this.anisotropyCache, `${r.id}|${r.mtime}`, () => this.anisotropyOf(r)));
    });

    this.route('GET', 'runs/:run/modes/:layer/:head/:mode', 'one mode: σ, cosine, gap, and its top images for both signs (from run.db)', ({ res, params }) => {
      const r = this.runs.get(params[0]);
      const { l, h } = this.lh(r, params[1], params[2]);
      const n = intParam(params[3], 'mode', r.summary.dims.head_dim);
      sendJson(res, 200, this.modeDetail(r, l, h, n));
    });

    this.route('GET', 'runs/:run/modes/:layer/:head/:mode/maps', 'every top image of a mode (both signs) with its query/key maps and a small crop, in one batched pass (Mode view; ?thumb=PX)', async ({ req, res, params, query }) => {
      const r = this.runs.get(params[0]);
      const { l, h } = this.lh(r, params[1], params[2]);
      const n = intParam(params[3], 'mode', r.summary.dims.head_dim);
      const db = this.runs.scan(r);
      if (!db) throw new HttpError(404, `run ${r.id} has no scan database (run.db)`);
      const side = query.has('thumb') ? Math.max(64, Math.min(512, intParam(query.get('thumb'), 'thumb', 513))) : THUMB_SIDE;
      const version = `${r.id}|${r.mtime}|${statSync(db.path).mtimeMs}|${l}|${h}|${n}|${side}`;
      const etag = etagOf('mode-maps', version);
      let fresh = false;
      const body = await memo(this.modeMapsCache, version, () => {
        fresh = true;
        return this.modeMaps(r, l, h, n, side);
      });
      sendJson(res, 200, fresh ? body : { ...body, compute_ms: 0 }, { req, etag, cache: 'private, no-cache' });
    });

    this.route('GET', 'runs/:run/modes/:layer/:head/:mode/top/:sign/:rank', 'one top image of a mode: its image id and query/key maps', async ({ res, params }) => {
      const r = this.runs.get(params[0]);
      const { l, h } = this.lh(r, params[1], params[2]);
      const n = intParam(params[3], 'mode', r.summary.dims.head_dim);
      const sign = signParam(params[4]);
      const rank = Number(params[5]);
      const db = this.runs.scan(r);
      if (!db) throw new HttpError(404, `run ${r.id} has no scan database (run.db)`);
      const t = db.top(l, h, n).find((x) => x.sign === sign && x.rank === rank);
      if (!t) throw new HttpError(404, `run ${r.id}: no top image L${l} H${h} M${n} sign ${sign > 0 ? '+' : '−'} rank ${params[5]}`);
      const img = this.images.onDisk(t.locator, true);
      const maps = await this.imageMaps(r, img, l, h, n, sign);
      const body: A.TopMaps = { ...maps, image: { id: img.id, label: img.label }, scan: { score: t.score, qmax: t.qmax, kmax: t.kmax, q_token: t.q_token, k_token: t.k_token } };
      sendJson(res, 200, body);
    });

    this.route('POST', 'images', 'upload an image (raw bytes as the body); returns its id', async ({ req, res }) => {
      const cap = this.opts.maxConcurrentUploads ?? 8;
      if (this.uploading >= cap) {
        // Refuse at once (and drop the connection) rather than hold a socket per waiting upload.
        res.shouldKeepAlive = false;
        throw new HttpError(503, `busy: ${cap} uploads are being received; try again in a moment`);
      }
      this.uploading++;
      let bytes: Buffer;
      try {
        bytes = await readBody(req, { maxBytes: this.opts.maxUploadBytes, timeoutMs: this.opts.uploadTimeoutMs ?? 30_000 });
      } catch (e) {
        res.shouldKeepAlive = false; // the rest of the body is not read
        throw e;
      } finally {
        this.uploading--;
      }
      const img = await this.images.upload(bytes, String(req.headers['x-filename'] ?? ''));
      const body: A.UploadResult = { id: img.id, label: img.label, width: img.width, height: img.height };
      sendJson(res, 201, body);
    });

    this.route('GET', 'gallery', 'images to pick from (--images folders, and the run’s scan images with ?run=)', ({ res, query }) => {
      const g = this.gallery(query.get('run'));
      const body: A.Gallery = { images: g.images.map(({ key, label, source }) => ({ key, label, source })), refused: g.refused, refused_hint: g.refused ? ReadableRoots.HINT : null };
      sendJson(res, 200, body);
    });

    this.route('POST', 'gallery/:key', 'load a gallery image; returns its id', async ({ res, params, query }) => {
      const entry = this.gallery(query.get('run')).images.find((g) => g.key === params[0]);
      if (!entry) throw new HttpError(404, `no gallery image ${JSON.stringify(params[0])}`);
      const img = this.images.onDisk(entry.locator, entry.source === 'scan');
      const runId = query.get('run');
      if (!runId) throw new HttpError(400, 'missing run: POST /api/gallery/KEY?run=RUN (the image is read through that run’s model)');
      // Decoded now, so an unreadable file is reported here (and its crop is cached).
      await (await this.model(this.runs.get(runId))).crop(img);
      const body: A.UploadResult = { id: img.id, label: img.label, width: img.width ?? 0, height: img.height ?? 0 };
      sendJson(res, 200, body);
    });

    this.route('GET', 'runs/:run/images/:image/input.png', 'the image as the run’s model sees it (resized and cropped), PNG', async ({ req, res, params }) => {
      const r = this.runs.get(params[0]);
      const img = this.image(r, params[1]);
      const m = await this.model(r);
      sendBytes(res, 'image/png', await m.png(img), { req, etag: etagOf('png', r.id, r.mtime, img.id), cache: 'private, no-cache' });
    });

    this.route('GET', 'runs/:run/images/:image/thumb.jpg', 'the same, as a small JPEG (the Mode view’s cards)', async ({ req, res, params }) => {
      const r = this.runs.get(params[0]);
      const img = this.image(r, params[1]);
      const m = await this.model(r);
      sendBytes(res, 'image/jpeg', await m.thumbnail(img, THUMB_SIDE), { req, etag: etagOf('jpg', r.id, r.mtime, img.id), cache: img.upload ? 'private, max-age=86400' : 'private, no-cache' });
    });

    this.route('GET', 'runs/:run/images/:image/maps', 'query and key maps of one mode on an image (?layer&head&mode&sign)', async ({ res, params, query }) => {
      const r = this.runs.get(params[0]);
      const img = this.image(r, params[1]);
      const { l, h } = this.lh(r, query.get('layer'), query.get('head'));
      const n = intParam(query.get('mode'), 'mode', r.summary.dims.head_dim);
      const sign = query.has('sign') ? signParam(query.get('sign')!) : 1;
      sendJson(res, 200, await this.imageMaps(r, img, l, h, n, sign));
    });

    this.route('GET', 'runs/:run/images/:image/modes', 'every mode’s contribution to the attention scores on this image (?layer&head), as `qkscope contributions`', async ({ res, params, query }) => {
      const r = this.runs.get(params[0]);
      const img = this.image(r, params[1]);
      const { l, h } = this.lh(r, query.get('layer'), query.get('head'));
      const { result } = await this.contributions(r, img, l, h, null);
      const body: A.ImageModes = imageModesOf(l, h, result, CONTRIBUTION_DEFINITION);
      sendJson(res, 200, body);
    });

    this.route('GET', 'runs/:run/images/:image/decomposition', 'attention row of one query patch and its logit decomposition (?layer&head&patch&top)', async ({ res, params, query }) => {
      const r = this.runs.get(params[0]);
      const img = this.image(r, params[1]);
      const { l, h } = this.lh(r, query.get('layer'), query.get('head'));
      const m = await this.model(r);
      const f = await m.forward(img);
      const patch = intParam(query.get('patch'), 'patch', f.layout.patches);
      const top = query.has('top') ? intParam(query.get('top'), 'top', r.summary.dims.head_dim + 1) : 6;
      sendJson(res, 200, await this.decomposition(r, m, f, img, l, h, patch, top));
    });
  }

  // -------------------------------------------------------------------------------------------

  private lh(r: RunInfo, ls: string | null, hs: string | null): { l: number; h: number } {
    return { l: intParam(ls, 'layer', r.summary.dims.layers), h: intParam(hs, 'head', r.summary.dims.heads) };
  }

  /** An image by id; the `f…` ids of gallery and scan images are found again after a restart. */
  private image(r: RunInfo, id: string): ServerImage {
    const hit = this.images.find(id);
    if (hit) return hit;
    if (/^f[0-9a-f]{20}$/.test(id)) {
      const g = this.gallery(r.id).images.find((x) => diskIdOf(x.locator) === id);
      if (g) return this.images.onDisk(g.locator, g.source === 'scan');
    }
    return this.images.get(id);
  }

  /** A run as the payload builders (store/explorer.ts, shared with the static export) read it. */
  private explorer(r: RunInfo): ExplorerRun {
    return { id: r.id, dir: r.dir, summary: r.summary, scan: this.runs.scan(r), array: (f) => this.runs.array(r, f) };
  }

  private headDetail(r: RunInfo, l: number, h: number): A.HeadDetail {
    return headPayload(this.explorer(r), l, h);
  }

  private modeDetail(r: RunInfo, l: number, h: number, n: number): A.ModeDetail {
    return modePayload(this.explorer(r), l, h, n);
  }

  /** The run's model, checked against the run's dimensions. */
  private async model(r: RunInfo): Promise<ModelSession> {
    if (modalityOf(r.summary) !== 'vision') throw new HttpError(422, `run ${r.id}: ${r.summary.model.id} is not a vision model; the image views need a ViT (this run has the weight views only)`);
    const input = resolveModelInput(r.summary.model.input ?? r.summary.model.id, r.dir, this.runs.root);
    const hash = r.summary.model.id.lastIndexOf('#');
    const part = hash > 0 ? r.summary.model.id.slice(hash + 1) : undefined;
    const m = await this.models.get(input, { part, numHeads: r.summary.dims.heads, runId: r.id });
    const sd = r.summary.dims;
    if (m.spec.layers !== sd.layers || m.spec.heads !== sd.heads || m.spec.width !== sd.width) {
      throw new HttpError(409, `run ${r.id}: the model at ${input} (L=${m.spec.layers} H=${m.spec.heads} d=${m.spec.width}) does not match the run (L=${sd.layers} H=${sd.heads} d=${sd.width})`);
    }
    return m;
  }

  /** Head (l, h)'s modes from the model's weights, checked against the run's σ (same model, same modes). */
  private async headModes(r: RunInfo, m: ModelSession, l: number, h: number): Promise<HeadModes> {
    const modes = await m.headModes(l, h);
    const run = r.summary.layers[l].heads[h].sigma;
    const tol = 1e-4 * Math.max(1e-12, Math.abs(run[0]));
    if (run.length !== modes.sigma.length || run.some((s, n) => Math.abs(s - modes.sigma[n]) > tol)) {
      throw new HttpError(409, `run ${r.id}: the model at ${r.summary.model.input} is not the one the run analysed (σ of layer ${l} head ${h} differ); re-run qkscope svd on it`);
    }
    return modes;
  }

  private async imageMaps(r: RunInfo, img: ServerImage, l: number, h: number, n: number, sign: 1 | -1): Promise<A.Maps> {
    const m = await this.model(r);
    const modes = await this.headModes(r, m, l, h);
    const { layout, out } = await m.embed([img], l);
    const e = out.get(img.id)!;
    if (e instanceof HttpError) throw e;
    const mp = patchMaps(e.x, 0, layout, m.spec.width, modes.U, modes.V, n, sign);
    return {
      layer: l,
      head: h,
      mode: n,
      sign,
      sigma: modes.sigma[n],
      cosine: modes.cosine[n],
      grid: layout.grid,
      image_size: layout.imageSize,
      patch_size: layout.patchSize,
      q: Array.from(mp.q),
      k: Array.from(mp.k),
      qmax: mp.qmax,
      kmax: mp.kmax,
      score: mp.score,
      normalization: 'percentile',
      definition: MAPS_DEFINITION,
    };
  }

  /** The Mode view: every top image of a mode, both signs, through one batched pass at block l. */
  private async modeMaps(r: RunInfo, l: number, h: number, n: number, side: number): Promise<A.ModeMaps> {
    const t0 = Date.now();
    const top = this.runs.scan(r)!.top(l, h, n);
    const m = await this.model(r);
    const modes = await this.headModes(r, m, l, h);
    let refused = 0;
    const rows = top.map((t) => {
      try {
        return { t, img: this.images.onDisk(t.locator, true), error: null };
      } catch (e) {
        if (e instanceof HttpError && e.status === 403) refused++;
        return { t, img: null, error: e instanceof HttpError ? e : new HttpError(500, String(e)) };
      }
    });
    const { layout, out } = await m.embed(rows.flatMap((x) => (x.img ? [x.img] : [])), l);
    const round = (a: Float64Array) => Array.from(a, (v) => Number(v.toPrecision(6)));
    const images: A.TopImageMaps[] = await Promise.all(
      rows.map(async ({ t, img, error }): Promise<A.TopImageMaps> => {
        const base = { sign: t.sign, rank: t.rank, label: labelOf(t.locator), scan: { score: t.score, qmax: t.qmax, kmax: t.kmax } };
        const e = img ? out.get(img.id) : error;
        if (!img || !e || e instanceof HttpError) {
          const err = e instanceof HttpError ? e : new HttpError(500, 'not computed');
          return { ...base, id: img?.id ?? null, thumb: null, maps: null, error: { status: err.status, message: err.message } };
        }
        const mp = patchMaps(e.x, 0, layout, m.spec.width, modes.U, modes.V, n, t.sign);
        // The crop inline: one reply draws the whole view (no request per card).
        const thumb = `data:image/jpeg;base64,${(await m.thumbnail(img, side)).toString('base64')}`;
        return { ...base, id: img.id, thumb, maps: { q: round(mp.q), k: round(mp.k), qmax: mp.qmax, kmax: mp.kmax, score: mp.score }, error: null };
      }),
    );
    return modeMapsPayload(r.id, { layer: l, head: h, mode: n }, layout, images, { count: refused, hint: refused ? ReadableRoots.HINT : null }, Date.now() - t0);
  }

  /** `qkscope contributions` on one image (all query tokens, or the one given). */
  private async contributions(r: RunInfo, img: ServerImage, l: number, h: number, queryToken: number | null, known?: { m: ModelSession; f: Forward }) {
    const m = known?.m ?? (await this.model(r));
    const modes = await this.headModes(r, m, l, h);
    const f = known?.f ?? (await m.forward(img));
    const T = f.layout.tokens;
    const per = T * T;
    const H = m.spec.heads;
    const at = (a: Float32Array) => a.subarray((l * H + h) * per, (l * H + h + 1) * per);
    const rows = queryToken === null ? Array.from({ length: T }, (_, i) => i) : [queryToken];
    const { result, relPos } = await contributionsOf(
      m.spec,
      { layout: f.layout, x: f.ln.subarray(l * T * m.spec.width, (l + 1) * T * m.spec.width), attention: at(f.attention), scores: f.scores ? at(f.scores) : null },
      { layer: l, head: h, rows, modes },
    );
    return { result, relPos, modes, f, m, at };
  }

  private async decomposition(r: RunInfo, m: ModelSession, f: Forward, img: ServerImage, l: number, h: number, patch: number, topK: number): Promise<A.Decomposition> {
    const T = f.layout.tokens;
    const i = f.layout.patchStart + patch;
    const { result, relPos, modes, at } = await this.contributions(r, img, l, h, i, { m, f });
    return decompositionOf({
      layer: l,
      head: h,
      result,
      sigma: modes.sigma,
      dh: m.spec.headDim,
      layout: { ...f.layout, special: f.layout.special.map(String) },
      patch,
      attention: at(f.attention).subarray(i * T, (i + 1) * T),
      modelLogits: f.scores ? at(f.scores).subarray(i * T, (i + 1) * T) : null,
      relPos,
      top: topK,
    });
  }

  private gallery(runId: string | null): { images: { key: string; label: string; locator: TopkImageLocator; source: 'images' | 'scan' }[]; refused: number } {
    const images: { key: string; label: string; locator: TopkImageLocator; source: 'images' | 'scan' }[] = [];
    const seen = new Set<string>();
    let refused = 0;
    const add = (loc: TopkImageLocator, source: 'images' | 'scan') => {
      if (seen.has(loc.path)) return;
      seen.add(loc.path);
      if (source === 'scan' && !this.images.readable.allows(loc, true)) {
        refused++;
        return;
      }
      images.push({ key: keyOf(loc), label: labelOf(loc), locator: loc, source });
    };
    for (const dir of this.imagesDirs) {
      try {
        for (const p of expandImagePaths([dir])) add({ path: p, kind: 'file', container: p, member: null }, 'images');
      } catch {
        // an empty folder offers nothing
      }
    }
    if (runId) {
      const r = this.runs.get(runId);
      try {
        for (const loc of this.runs.scan(r)?.images() ?? []) add(loc, 'scan');
      } catch {
        // a bad run.db: the Mode view reports it
      }
    }
    return { images, refused };
  }

  /** The run's own baseline (anisotropy.json, else the scan's), else computed live from up to N images. */
  private async anisotropyOf(r: RunInfo): Promise<A.Anisotropy> {
    const stored = storedBaselineValues({ dir: r.dir, summary: r.summary, scan: this.scanOf(r) });
    if (stored) return anisotropyPayload(r, stored, ANISOTROPY_DEFINITION);
    const locs = this.gallery(r.id).images.slice(0, this.opts.anisotropyImages ?? 64);
    if (locs.length < 2) {
      return { available: false, reason: `run ${r.id} stores no anisotropy baseline; run \`qkscope anisotropy MODEL IMAGES --run RUN\`, or start serve with --images DIR to estimate one here` };
    }
    const m = await this.model(r);
    const imgs = locs.map((g) => this.images.onDisk(g.locator, g.source === 'scan'));
    const src = new ListingSource({ entries: imgs.map((i) => i.entry) }, m.pp.pp, m.pp.options, { decode: { maxPixels: this.opts.maxPixels } });
    try {
      const b = await m.serial(() => anisotropyBaseline(m.spec, src, { layers: 'all', batch: this.opts.batch, device: this.opts.device, threads: this.opts.threads }));
      return anisotropyPayload(r, { source: 'live', values: new Map(b.values.map((v) => [v.layer, { value: v.value ?? NaN, images: v.n, interval: v.interval }])) }, ANISOTROPY_DEFINITION);
    } finally {
      src.close();
    }
  }

  /** The run's scan database, or null (a bad run.db: the Mode view reports it). */
  private scanOf(r: RunInfo): ReturnType<RunStore['scan']> | null {
    try {
      return this.runs.scan(r) ?? null;
    } catch {
      return null;
    }
  }
}

function checkFolder(dir: string, flag: string): string {
  let st;
  try {
    st = statSync(dir);
  } catch {
    st = null;
  }
  if (!st?.isDirectory()) throw new UserError(`${flag} ${dir}: not a folder`);
  return realpathSync(dir);
}

function intParam(v: string | null | undefined, name: string, bound: number): number {
  if (v === null || v === undefined || v === '') throw new HttpError(400, `missing ${name}`);
  if (!/^\d+$/.test(v)) throw new HttpError(400, `${name} ${JSON.stringify(v)}: expected a whole number (0-based)`);
  const n = Number(v);
  if (n >= bound) throw new HttpError(400, `${name} ${n} is out of range: 0..${bound - 1}`);
  return n;
}

function signParam(v: string): 1 | -1 {
  if (v === '+' || v === '1' || v === '+1' || v === 'pos') return 1;
  if (v === '-' || v === '-1' || v === 'neg') return -1;
  throw new HttpError(400, `sign ${JSON.stringify(v)}: use pos or neg (or +1 / -1)`);
}
