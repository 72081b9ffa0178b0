/**
 * The JSON API of `qkscope serve` (documented in docs/API.md). Every handler validates its
 * inputs and throws HttpError for what the client got wrong; the router turns those into
 * `{ error, status }` replies.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createHash } from 'node:crypto';
import { existsSync, statSync, readFileSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { decodeImage } from '../images/decode.js';
import { UserError } from '../errors.js';
import { HttpError, readBody, sendBytes, sendJson } from './http.js';
import {
  ImageStore,
  ModelPool,
  anisotropy,
  centreVectors,
  decodeUpload,
  decompose,
  imageModeContributions,
  modeMaps,
  resolveModelInput,
  type HeadBasis,
  type ModelSession,
  type StoredImage,
} from './live.js';
import { RunStore, headVectors, modelCurves, salienceVector, type RunInfo } from './runs.js';
import type { ImageLocator } from './scan-db.js';
import { ImageReader } from '../images/sources.js';
import { decodeImageBytes } from '../images/decode.js';
import { expandImagePaths } from '../images/sources.js';

export interface ApiOptions {
  runsDir: string;
  /** Upload limit in bytes. */
  maxUploadBytes: number;
  /** Optional folder of images offered in the Image view's picker (and for anisotropy). */
  imagesDir?: string;
  offline?: boolean;
  /** Images used for the live anisotropy estimate (default 64). */
  anisotropyImages?: number;
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

export class Api {
  readonly runs: RunStore;
  readonly images = new ImageStore();
  readonly models: ModelPool;
  private routes: Route[] = [];
  private anisotropyCache = new Map<string, Promise<unknown>>();
  private reader = new ImageReader();

  constructor(readonly opts: ApiOptions) {
    this.runs = new RunStore(opts.runsDir);
    this.models = new ModelPool({ offline: opts.offline });
    if (opts.imagesDir && !(existsSync(opts.imagesDir) && statSync(opts.imagesDir).isDirectory())) {
      throw new UserError(`--images ${opts.imagesDir}: not a folder`);
    }
    this.defineRoutes();
  }

  async close(): Promise<void> {
    this.reader.close();
    this.runs.close();
    await this.models.close();
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
      await r.handler({ req, res, params, query: url.searchParams });
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
    this.route('GET', '', 'this list', ({ res }) =>
      sendJson(res, 200, {
        name: 'qkscope serve API',
        docs: ENDPOINTS_DOC,
        index_base: 0,
        endpoints: this.routes.map((r) => ({ method: r.method, path: '/api/' + r.pattern.join('/'), doc: r.doc })),
      }),
    );

    this.route('GET', 'runs', 'svd runs under RUNS_DIR', ({ res }) => {
      sendJson(res, 200, { runs: this.runs.list().map(runBrief) });
    });

    this.route('GET', 'models', 'per run: layer-mean cosine against depth with the 95% chance band (Models view)', ({ res }) => {
      const runs = this.runs.list();
      sendJson(res, 200, {
        runs: runs.map((r) => {
          const c = modelCurves(r);
          return {
            ...runBrief(r),
            depth: c.weighted.depth,
            weighted: { value: c.weighted.value, band95: c.weighted.band95 },
            plain: { value: c.plain.value, band95: c.plain.band95 },
            heads: r.summary.layers.map((l) => l.heads.map((h) => ({ weighted: h.weighted_cosine, plain: h.mean_cosine }))),
          };
        }),
      });
    });

    this.route('GET', 'runs/:run', "a run's summary.json, plus its id and whether it has a scan", ({ res, params }) => {
      const r = this.runs.get(params[0]);
      sendJson(res, 200, { id: r.id, has_scan: !!r.scanPath, summary: r.summary });
    });

    this.route('GET', 'runs/:run/files/:name', 'a file of the run directory (only the files summary.json lists)', ({ res, params }) => {
      const r = this.runs.get(params[0]);
      const name = params[1];
      if (name.includes('/') || name.includes('\\') || name === '..' || name === '.' || name.includes('\0')) {
        throw new HttpError(403, `${JSON.stringify(name)}: paths outside the run directory are refused`);
      }
      const allowed = new Set<string>();
      for (const k of Object.keys(r.summary.files ?? {})) {
        const m = /^(.*)\.([a-z0-9]+)\/\.([a-z0-9]+)$/i.exec(k); // 'heatmap.svg/.png'
        if (m) allowed.add(`${m[1]}.${m[2]}`).add(`${m[1]}.${m[3]}`);
        else allowed.add(k);
      }
      allowed.add('summary.json');
      const p = join(r.dir, name);
      if (!allowed.has(name) || !existsSync(p)) throw new HttpError(404, `run ${r.id}: no file ${JSON.stringify(name)}`);
      const types: Record<string, string> = { '.json': 'application/json', '.csv': 'text/csv; charset=utf-8', '.svg': 'image/svg+xml', '.png': 'image/png', '.npy': 'application/octet-stream' };
      sendBytes(res, types[extname(name)] ?? 'application/octet-stream', readFileSync(p));
    });

    this.route('GET', 'runs/:run/heads/:layer/:head', 'one head: σ spectrum, per-mode cosines and chance bands, key salience', ({ res, params }) => {
      const r = this.runs.get(params[0]);
      const { l, h } = this.lh(r, params[1], params[2]);
      sendJson(res, 200, this.headDetail(r, l, h));
    });

    this.route('GET', 'runs/:run/anisotropy', 'per layer: mean cosine between centre-patch embeddings of different images', async ({ res, params }) => {
      const r = this.runs.get(params[0]);
      sendJson(res, 200, await this.anisotropyOf(r));
    });

    this.route('GET', 'runs/:run/modes/:layer/:head/:mode', 'one mode: σ, cosine, gap, and its top images for both signs (from run.db)', ({ res, params }) => {
      const r = this.runs.get(params[0]);
      const { l, h } = this.lh(r, params[1], params[2]);
      const n = intParam(params[3], 'mode', r.summary.dims.head_dim);
      const hs = r.summary.layers[l].heads[h];
      const db = this.runs.scan(r);
      const top = db ? db.top(l, h, n) : [];
      const meta = db?.meta() ?? null;
      sendJson(res, 200, {
        run: r.id,
        layer: l,
        head: h,
        mode: n,
        sigma: hs.sigma[n],
        sigma_scaled: hs.sigma[n] / Math.sqrt(r.summary.dims.head_dim),
        cosine: hs.cosine[n],
        rel_gap: hs.rel_gap[n],
        chance: { mode95: r.summary.chance.mode95, mode99: r.summary.chance.mode99 },
        has_scan: !!db,
        scan: meta
          ? {
              embedding: meta.embedding ?? null,
              top_k: meta.top_k ?? null,
              image_count: meta.image_count ?? null,
              status: meta.status ?? null,
              layers: meta.layers ?? null,
            }
          : null,
        top: top.map((t) => ({ sign: t.sign, rank: t.rank, label: labelOf(t.locator), score: t.score, qmax: t.qmax, kmax: t.kmax, q_token: t.q_token, k_token: t.k_token })),
      });
    });

    this.route('GET', 'runs/:run/modes/:layer/:head/:mode/top/:sign/:rank', 'a top image of a mode: its image id and query/key maps (live)', async ({ res, params }) => {
      const r = this.runs.get(params[0]);
      const { l, h } = this.lh(r, params[1], params[2]);
      const n = intParam(params[3], 'mode', r.summary.dims.head_dim);
      const sign = signParam(params[4]);
      const rank = Number(params[5]);
      const db = this.runs.scan(r);
      if (!db) throw new HttpError(404, `run ${r.id} has no scan database (run.db)`);
      const t = db.top(l, h, n).find((x) => x.sign === sign && x.rank === rank);
      if (!t) throw new HttpError(404, `run ${r.id}: no top image L${l} H${h} M${n} sign ${sign > 0 ? '+' : '−'} rank ${params[5]}`);
      const img = await this.imageFrom(t.locator);
      const m = await this.model(r);
      const maps = await this.maps(r, m, img, l, h, n, sign);
      sendJson(res, 200, { image: { id: img.id, label: img.label }, scan: { score: t.score, qmax: t.qmax, kmax: t.kmax, q_token: t.q_token, k_token: t.k_token }, ...maps });
    });

    this.route('POST', 'images', 'upload an image (raw bytes as the body); returns its id', async ({ req, res }) => {
      const bytes = await readBody(req, this.opts.maxUploadBytes);
      const rgb = await decodeUpload(bytes);
      const id = 'u' + createHash('sha256').update(bytes).digest('hex').slice(0, 20);
      const name = String(req.headers['x-filename'] ?? '').replace(/[^\w .()\-]/g, '').slice(0, 80);
      const img = this.images.put({ id, label: name || 'upload', rgb });
      sendJson(res, 201, { id: img.id, label: img.label, width: rgb.width, height: rgb.height });
    });

    this.route('GET', 'gallery', 'images to pick from (--images folder, and the run’s scan images with ?run=)', ({ res, query }) => {
      sendJson(res, 200, { images: this.gallery(query.get('run')).map(({ key, label, source }) => ({ key, label, source })) });
    });

    this.route('POST', 'gallery/:key', 'load a gallery image; returns its id', async ({ res, params, query }) => {
      const entry = this.gallery(query.get('run')).find((g) => g.key === params[0]);
      if (!entry) throw new HttpError(404, `no gallery image ${JSON.stringify(params[0])}`);
      const img = await this.imageFrom(entry.locator);
      sendJson(res, 200, { id: img.id, label: img.label, width: img.rgb.width, height: img.rgb.height });
    });

    this.route('GET', 'runs/:run/images/:image/input.png', 'the image as the run’s model sees it (resized and cropped), PNG', async ({ res, params }) => {
      const r = this.runs.get(params[0]);
      const img = this.images.get(params[1]);
      const m = await this.model(r);
      sendBytes(res, 'image/png', await m.cropPng(img));
    });

    this.route('GET', 'runs/:run/images/:image/maps', 'query and key maps of one mode on an image (?layer&head&mode&sign)', async ({ res, params, query }) => {
      const r = this.runs.get(params[0]);
      const img = this.images.get(params[1]);
      const { l, h } = this.lh(r, query.get('layer'), query.get('head'));
      const n = intParam(query.get('mode'), 'mode', r.summary.dims.head_dim);
      const sign = query.has('sign') ? signParam(query.get('sign')!) : 1;
      const m = await this.model(r);
      sendJson(res, 200, await this.maps(r, m, img, l, h, n, sign));
    });

    this.route('GET', 'runs/:run/images/:image/modes', 'every mode’s contribution to the attention score on this image (?layer&head)', async ({ res, params, query }) => {
      const r = this.runs.get(params[0]);
      const img = this.images.get(params[1]);
      const { l, h } = this.lh(r, query.get('layer'), query.get('head'));
      const m = await this.model(r);
      const f = await m.forward(img);
      const basis = this.basis(r, l, h);
      const modes = imageModeContributions(f, l, h, m.spec.heads, m.spec.width, basis);
      sendJson(res, 200, {
        layer: l,
        head: h,
        definition: 'contribution of mode n = Σ_{i,j} A_ij σ_n Q_n(i) K_n(j) / sqrt(d_h), over all token pairs (A: the model’s attention)',
        modes,
      });
    });

    this.route('GET', 'runs/:run/images/:image/decomposition', 'attention row of one query patch and its logit decomposition (?layer&head&patch&top)', async ({ res, params, query }) => {
      const r = this.runs.get(params[0]);
      const img = this.images.get(params[1]);
      const { l, h } = this.lh(r, query.get('layer'), query.get('head'));
      const m = await this.model(r);
      const f = await m.forward(img);
      const patch = intParam(query.get('patch'), 'patch', f.layout.patches);
      const top = query.has('top') ? intParam(query.get('top'), 'top', r.summary.dims.head_dim + 1) : 6;
      const w = await m.qkWeights(l);
      sendJson(res, 200, decompose(f, m.spec, l, h, patch, this.basis(r, l, h), w, top));
    });
  }

  // -------------------------------------------------------------------------------------------

  private lh(r: RunInfo, ls: string | null, hs: string | null): { l: number; h: number } {
    return { l: intParam(ls, 'layer', r.summary.dims.layers), h: intParam(hs, 'head', r.summary.dims.heads) };
  }

  private headDetail(r: RunInfo, l: number, h: number) {
    const s = r.summary;
    const hs = s.layers[l].heads[h];
    const dh = s.dims.head_dim;
    let salAlongV: number[] | null = null;
    try {
      const sal = salienceVector(this.runs.array(r, 'key_salience.npy'), l, h);
      const V = headVectors(this.runs.array(r, 'V.npy'), l, h);
      salAlongV = V.map((v) => v.reduce((a, x, i) => a + x * sal[i], 0));
    } catch {
      salAlongV = null;
    }
    const db = this.runs.scan(r);
    let withImages: Set<string> | null = null;
    try {
      withImages = db ? db.modesWithImages() : null;
    } catch {
      withImages = null;
    }
    return {
      run: r.id,
      model: r.summary.model.id,
      layer: l,
      head: h,
      depth: s.layers[l].depth,
      dims: s.dims,
      weighted_cosine: hs.weighted_cosine,
      mean_cosine: hs.mean_cosine,
      weighted_band95: hs.weighted_band95,
      weighted_band99: hs.weighted_band99,
      chance: { mode95: s.chance.mode95, mode99: s.chance.mode99 },
      sigma_scale: s.sigma_scale,
      salience_norm: hs.salience_norm,
      salience_along_v: salAlongV,
      salience_note: 'key salience s = W_kᵀ b_q adds (s·x_j)/sqrt(d_h) to every query’s logit for key j; salience_along_v[n] = s·v_n',
      has_scan: !!db,
      modes: hs.sigma.map((sg, n) => ({
        mode: n,
        sigma: sg,
        sigma_scaled: sg / Math.sqrt(dh),
        cosine: hs.cosine[n],
        rel_gap: hs.rel_gap[n],
        has_images: withImages ? withImages.has(`${l}/${h}/${n}`) : false,
      })),
    };
  }

  private basis(r: RunInfo, l: number, h: number): HeadBasis {
    const hs = r.summary.layers[l].heads[h];
    return {
      sigma: hs.sigma,
      cosine: hs.cosine,
      U: headVectors(this.runs.array(r, 'U.npy'), l, h),
      V: headVectors(this.runs.array(r, 'V.npy'), l, h),
      salience: salienceVector(this.runs.array(r, 'key_salience.npy'), l, h),
    };
  }

  private async model(r: RunInfo): Promise<ModelSession> {
    const input = resolveModelInput(r.summary.model.input, r.dir, this.runs.root);
    const hash = r.summary.model.id.lastIndexOf('#');
    const part = hash > 0 ? r.summary.model.id.slice(hash + 1) : undefined;
    const m = await this.models.get(input, { part, numHeads: r.summary.dims.heads, runId: r.id });
    const sd = r.summary.dims;
    if (m.spec.layers !== sd.layers || m.spec.heads !== sd.heads || m.spec.width !== sd.width) {
      throw new HttpError(409, `run ${r.id}: the model at ${input} (L=${m.spec.layers} H=${m.spec.heads} d=${m.spec.width}) does not match the run (L=${sd.layers} H=${sd.heads} d=${sd.width})`);
    }
    return m;
  }

  private async maps(r: RunInfo, m: ModelSession, img: StoredImage, l: number, h: number, n: number, sign: 1 | -1) {
    const f = await m.forward(img);
    const U = headVectors(this.runs.array(r, 'U.npy'), l, h);
    const V = headVectors(this.runs.array(r, 'V.npy'), l, h);
    const { q, k } = modeMaps(f, m.spec.width, l, U[n], V[n], sign);
    const hs = r.summary.layers[l].heads[h];
    const qmax = Math.max(...q);
    const kmax = Math.max(...k);
    return {
      layer: l,
      head: h,
      mode: n,
      sign,
      sigma: hs.sigma[n],
      cosine: hs.cosine[n],
      grid: f.layout.grid,
      image_size: f.layout.imageSize,
      patch_size: f.layout.patchSize,
      q,
      k,
      qmax,
      kmax,
      score: qmax * kmax,
      definition: 'Q(t) = sign·x_t·u_n, K(t) = sign·x_t·v_n over patch tokens (raster order), x = LN(h) of the block',
    };
  }

  /** Decodes an image named by the scan or the --images folder (cached by its locator). */
  private async imageFrom(loc: ImageLocator): Promise<StoredImage> {
    const id = 'f' + createHash('sha256').update(`${loc.kind}\0${loc.container}\0${loc.member ?? ''}\0${loc.path}`).digest('hex').slice(0, 20);
    if (this.images.has(id)) return this.images.get(id);
    const label = labelOf(loc);
    let rgb;
    try {
      if (loc.kind === 'file') rgb = await decodeImage(loc.path);
      else rgb = await decodeImageBytes((await this.reader.read({ kind: loc.kind, container: loc.container, member: loc.member })).bytes);
    } catch (e) {
      const msg = (e as Error).message.replace(loc.path + ': ', '').replace(loc.container + ': ', '');
      throw new HttpError(422, `${label}: cannot read the image (${msg})`);
    }
    return this.images.put({ id, label, rgb });
  }

  private gallery(runId: string | null): { key: string; label: string; locator: ImageLocator; source: string }[] {
    const out: { key: string; label: string; locator: ImageLocator; source: string }[] = [];
    const seen = new Set<string>();
    const add = (loc: ImageLocator, source: string) => {
      if (seen.has(loc.path)) return;
      seen.add(loc.path);
      out.push({ key: createHash('sha256').update(loc.path).digest('hex').slice(0, 16), label: labelOf(loc), locator: loc, source });
    };
    if (this.opts.imagesDir) {
      try {
        for (const p of expandImagePaths([this.opts.imagesDir])) add({ path: p, kind: 'file', container: p, member: null }, 'images');
      } catch {
        // empty folder: nothing to offer
      }
    }
    if (runId) {
      const r = this.runs.get(runId);
      try {
        for (const loc of this.runs.scan(r)?.images() ?? []) add(loc, 'scan');
      } catch {
        // bad run.db: the mode view reports it
      }
    }
    return out;
  }

  private anisotropyOf(r: RunInfo): Promise<unknown> {
    const stored = (() => {
      try {
        return this.runs.scan(r)?.anisotropy() ?? null;
      } catch {
        return null;
      }
    })();
    if (stored) {
      return Promise.resolve({
        available: true,
        source: 'scan',
        layers: r.summary.layers.map((l) => ({ layer: l.layer, depth: l.depth, value: stored.get(l.layer) ?? null })),
      });
    }
    let p = this.anisotropyCache.get(r.id);
    if (!p) {
      p = (async () => {
        const locs = this.gallery(r.id)
          .map((g) => g.locator)
          .slice(0, this.opts.anisotropyImages ?? 64);
        if (locs.length < 2) {
          return { available: false, reason: 'needs at least two images: start serve with --images DIR, or add a scan (run.db) to the run' };
        }
        const m = await this.model(r);
        const results = [];
        for (const loc of locs) {
          let img;
          try {
            img = await this.imageFrom(loc);
          } catch {
            continue;
          }
          results.push(centreVectors(await m.forward(img, false), m.spec.width, m.spec.layers));
        }
        const v = anisotropy(results, m.spec.width, m.spec.layers);
        return {
          available: true,
          source: 'live',
          images: results.length,
          definition: 'mean cosine between the centre-patch LayerNorm outputs x = LN(h) of different images, per layer',
          layers: r.summary.layers.map((l) => ({ layer: l.layer, depth: l.depth, value: v[l.layer] })),
        };
      })();
      p.catch(() => this.anisotropyCache.delete(r.id));
      this.anisotropyCache.set(r.id, p);
    }
    return p;
  }
}

function runBrief(r: RunInfo) {
  const s = r.summary;
  return {
    id: r.id,
    label: s.model.id,
    family: s.model.family,
    input: s.model.input,
    dims: s.dims,
    created: s.created,
    has_scan: !!r.scanPath,
    chance: { d: s.chance.d, mode95: s.chance.mode95 },
  };
}

/** A short, path-free name for an image: the file name, or the member / row of its container. */
function labelOf(loc: ImageLocator): string {
  if (loc.kind === 'file') return basename(loc.path);
  if (loc.kind === 'tar') return `${basename(loc.container)}#${basename(loc.member ?? '')}`;
  return `${basename(loc.container)}#row ${loc.member ?? '?'}`;
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
