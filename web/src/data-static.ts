/**
 * The explorer's data source for a static site (`qkscope export`): the same payloads as the
 * `serve` API (src/api-types.ts), read from the site's precomputed data scripts (written by
 * src/jobs/export.ts, format in src/site-types.ts), and, for the Image view, computed in the page
 * by the exported model (model/runtime.ts) with the project's own maths: the mode maps
 * (src/analysis/mode-maps.ts), the modes of each head from its weights (src/analysis/modes.ts),
 * the contributions and the logit decomposition (src/analysis/contributions.ts, decomposition.ts).
 */
import type * as A from '../../src/api-types.js';
import type { SiteHeadWeights, SiteIndex, SiteLayer, SiteModeMaps, SiteRunMeta } from '../../src/site-types.js';
import { decodeHalf } from '../../src/io/float16.js';
import { patchMaps } from '../../src/analysis/mode-maps.js';
import { headModes } from '../../src/analysis/modes.js';
import { modeContributions } from '../../src/analysis/contributions.js';
import { decompositionOf, imageModesOf } from '../../src/analysis/decomposition.js';
import type { HeadModes } from '../../src/analysis/types.js';
import { ApiError, type DataSource } from './data.js';
import { dataFile, float32s, fromBase64, installRegistry } from './model/scripts.js';
import { PageModel, type PageForward } from './model/runtime.js';
import { cropFor, dataUriBlob, decodeBlob, pixelsOf, pngOf, type Rgb } from './model/images.js';

interface PageImage {
  id: string;
  label: string;
  rgb: Rgb;
  /** A stored top image: already the model's crop (at the stored size). */
  isCrop: boolean;
}

const MAPS_DEFINITION_FALLBACK = 'Q(t) = sign·x_t·u_n, K(t) = sign·x_t·v_n over the patch tokens (raster order), x = LN(h) feeding the block; S = max Q × max K';

/** A small FIFO cache. */
function cache<K, V>(size: number): { get(k: K, make: () => V): V; clear(): void } {
  const m = new Map<K, V>();
  return {
    get(k, make) {
      if (m.has(k)) return m.get(k)!;
      const v = make();
      m.set(k, v);
      if (v instanceof Promise) v.catch(() => m.delete(k));
      while (m.size > size) m.delete(m.keys().next().value as K);
      return v;
    },
    clear: () => m.clear(),
  };
}

async function hashHex(bytes: ArrayBuffer): Promise<string> {
  if (crypto.subtle) {
    const d = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
    return Array.from(d.slice(0, 10), (b) => b.toString(16).padStart(2, '0')).join('');
  }
  // file:// pages are not secure contexts everywhere: a simple FNV-1a then.
  let h = 0x811c9dc5;
  const b = new Uint8Array(bytes);
  for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i], 0x01000193) >>> 0;
  return h.toString(16).padStart(8, '0') + b.length.toString(16);
}

/** Status lines while the model loads (the Image view shows the last one). */
export const modelStatus = { text: '', listeners: new Set<(s: string) => void>() };
function status(s: string): void {
  modelStatus.text = s;
  for (const f of modelStatus.listeners) f(s);
}

export function staticSource(dataBase = 'data/'): DataSource & { index(): Promise<SiteIndex> } {
  installRegistry(dataBase);
  const index = () => dataFile<SiteIndex>('index');
  const meta = async (run: string): Promise<SiteRunMeta> => {
    const m = (await index()).meta[run];
    if (!m) throw new ApiError(404, `no run ${JSON.stringify(run)} in this site`);
    return m;
  };
  const layer = async (run: string, l: number): Promise<SiteLayer> => {
    const m = await meta(run);
    const i = await index();
    const brief = i.runs.runs.find((r) => r.id === run)!;
    if (!Number.isInteger(l) || l < 0 || l >= brief.dims.layers) throw new ApiError(400, `layer ${l} is out of range: 0..${brief.dims.layers - 1}`);
    return dataFile<SiteLayer>(`runs/${m.slug}/L${l}`);
  };
  const checkHead = (brief: A.RunBrief, h: number) => {
    if (!Number.isInteger(h) || h < 0 || h >= brief.dims.heads) throw new ApiError(400, `head ${h} is out of range: 0..${brief.dims.heads - 1}`);
  };
  const brief = async (run: string) => {
    const b = (await index()).runs.runs.find((r) => r.id === run);
    if (!b) throw new ApiError(404, `no run ${JSON.stringify(run)} in this site`);
    return b;
  };

  // ---- images and the model ------------------------------------------------------------------
  const images = new Map<string, PageImage>();
  const models = new Map<string, PageModel>();
  const forwards = cache<string, Promise<PageForward>>(3);
  const modes = cache<string, Promise<{ modes: HeadModes; w: { wq: Float64Array; wk: Float64Array; bq: Float64Array | null; bk: Float64Array | null } }>>(24);

  const modelOf = async (run: string): Promise<PageModel> => {
    const m = await meta(run);
    if (!m.model) throw new ApiError(501, `this site has no model for ${run}: ${m.model_note ?? 'exported with --no-model'}; the Image view needs \`qkscope serve\` (or an export with the model)`);
    let pm = models.get(run);
    if (!pm) {
      pm = new PageModel(m.slug, m.model.card, m.model.chunks, (await index()).wasm_chunks);
      models.set(run, pm);
    }
    return pm;
  };
  const imageOf = async (run: string, id: string): Promise<PageImage> => {
    const hit = images.get(id);
    if (hit) return hit;
    if (/^g[0-9a-f]+$/.test(id)) {
      const m = await meta(run);
      const g = m.gallery.find((x) => x.key === id.slice(1));
      const uri = await dataFile<string>(`img/${id.slice(1)}`);
      const img: PageImage = { id, label: g?.label ?? id, rgb: await decodeBlob(dataUriBlob(uri)), isCrop: true };
      images.set(id, img);
      return img;
    }
    throw new ApiError(404, `no image ${JSON.stringify(id)} (images dropped on the page are forgotten when it reloads: drop it again)`);
  };
  const forward = async (run: string, id: string): Promise<{ f: PageForward; pm: PageModel }> => {
    const pm = await modelOf(run);
    const img = await imageOf(run, id);
    const f = await forwards.get(`${run}|${id}`, async () => {
      const pp = pm.card.preprocess;
      const r = await pm.forward(pixelsOf(cropFor(img.rgb, pp, img.isCrop), pp), status);
      status(`${pm.card.model.id} ran on ${r.backend}`);
      return r;
    });
    return { f, pm };
  };
  const headModesOf = (run: string, pm: PageModel, l: number, h: number) =>
    modes.get(`${run}|${l}|${h}`, async () => {
      const hw = await dataFile<SiteHeadWeights>(`model/${pm.slug}/heads.${l}`);
      const x = hw.heads[h];
      const f64 = (s: string) => Float64Array.from(float32s(s));
      const w = { wq: f64(x.wq), wk: f64(x.wk), bq: x.bq ? f64(x.bq) : null, bk: x.bk ? f64(x.bk) : null };
      const { width: d, head_dim: dh } = pm.card.dims;
      return { modes: headModes(w.wq, w.wk, w.bq, d, dh, l, h), w };
    });
  const layoutOf = (pm: PageModel) => {
    const lay = pm.card.layout;
    return { tokens: lay.tokens, patchStart: lay.patch_start, patches: lay.grid[0] * lay.grid[1], grid: lay.grid, special: lay.special };
  };
  /** The model's arrays of head h in block l, and the bias the runtime added (scores − q·k). */
  const headArrays = (pm: PageModel, f: PageForward, l: number, h: number) => {
    const T = pm.card.layout.tokens;
    const per = T * T;
    const at = (a: Float32Array) => a.subarray(h * per, (h + 1) * per);
    const scores = at(f.scores[l]);
    let relPos: Float64Array | null = null;
    if (f.qk) {
      const qk = at(f.qk[l]);
      relPos = Float64Array.from(scores, (s, i) => s - qk[i]);
    }
    return { x: f.ln[l], attention: at(f.attention[l]), scores, relPos };
  };
  const contributions = async (run: string, id: string, l: number, h: number, rows: number[] | null) => {
    const { f, pm } = await forward(run, id);
    const { modes: hm, w } = await headModesOf(run, pm, l, h);
    const { width: d, head_dim: dh } = pm.card.dims;
    const T = pm.card.layout.tokens;
    const a = headArrays(pm, f, l, h);
    const result = modeContributions({ x: a.x, T, d, dh, wq: w.wq, wk: w.wk, bq: w.bq, bk: w.bk, modes: hm, attention: a.attention, relPos: a.relPos, rows: rows ?? Array.from({ length: T }, (_, i) => i), modelScores: a.scores });
    return { result, hm, a, pm };
  };
  const checkLh = async (run: string, l: number, h: number) => {
    const b = await brief(run);
    if (!Number.isInteger(l) || l < 0 || l >= b.dims.layers) throw new ApiError(400, `layer ${l} is out of range: 0..${b.dims.layers - 1}`);
    checkHead(b, h);
    return b;
  };

  return {
    kind: 'static',
    live: true,
    imageNote:
      'The model runs in this page (onnxruntime-web: WebGPU where the browser has it, else WebAssembly) on the same graph and preprocessing as qkscope in Node. ' +
      'The browser decodes your file itself: PNGs give the same pixels as Node; a JPEG may differ by a few grey levels (another decoder), ICC colour profiles are ignored, as Pillow does. ' +
      'The picker’s images are the stored thumbnails, enlarged to the model’s input.',
    index,
    runs: async () => (await index()).runs,
    models: async () => (await index()).models,
    head: async (run, l, h) => {
      checkHead(await brief(run), h);
      return (await layer(run, l)).heads[h];
    },
    mode: async (run, l, h, n) => {
      const b = await brief(run);
      checkHead(b, h);
      if (!Number.isInteger(n) || n < 0 || n >= b.dims.head_dim) throw new ApiError(400, `mode ${n} is out of range: 0..${b.dims.head_dim - 1}`);
      return (await layer(run, l)).modes[h][n];
    },
    modeMaps: async (run, l, h, n) => {
      const m = await meta(run);
      if (n >= m.modes_per_head) {
        throw new ApiError(404, `the top images of mode ${n} are not in this site: it keeps modes 0..${m.modes_per_head - 1} of each head (qkscope export --modes-per-head)`);
      }
      const s = await dataFile<SiteModeMaps>(`runs/${m.slug}/maps/${l}-${h}-${n}`);
      const dec = (b: string) => Array.from(decodeHalf(fromBase64(b)));
      return { ...s, definition: s.definition || MAPS_DEFINITION_FALLBACK, images: s.images.map((x) => ({ ...x, maps: x.maps ? { ...x.maps, q: dec(x.maps.q), k: dec(x.maps.k) } : null })) };
    },
    anisotropy: async (run) => (await meta(run)).anisotropy,
    image: async (run, id, size) => {
      if (/^g[0-9a-f]+$/.test(id)) return dataUriBlob(await dataFile<string>(`img/${id.slice(1)}`));
      void size; // one picture for both sizes: the crop the model sees
      const img = await imageOf(run, id);
      const pm = await modelOf(run);
      return pngOf(cropFor(img.rgb, pm.card.preprocess, img.isCrop));
    },
    upload: async (file, name) => {
      const buf = await file.arrayBuffer();
      if (!buf.byteLength) throw new ApiError(400, 'empty file');
      let rgb: Rgb;
      try {
        rgb = await decodeBlob(file);
      } catch (e) {
        throw new ApiError(415, (e as Error).message);
      }
      const id = `u${await hashHex(buf)}`;
      const label = name.replace(/[^\w .()-]/g, '').slice(0, 80) || 'upload';
      images.set(id, { id, label, rgb, isCrop: false });
      return { id, label, width: rgb.width, height: rgb.height };
    },
    gallery: async (run) => {
      // The Image view asks for its picker when it opens: start loading the model now (tens of MB).
      modelOf(run).then((pm) => pm.warm(status), () => undefined);
      return { images: (await meta(run)).gallery.map((g) => ({ key: g.key, label: g.label, source: 'scan' as const })), refused: 0, refused_hint: null };
    },
    pick: async (run, key) => {
      const img = await imageOf(run, `g${key}`);
      return { id: img.id, label: img.label, width: img.rgb.width, height: img.rgb.height };
    },
    imageMaps: async (run, id, l, h, n, sign) => {
      await checkLh(run, l, h);
      const { f, pm } = await forward(run, id);
      const { modes: hm } = await headModesOf(run, pm, l, h);
      const d = pm.card.dims.width;
      const lay = layoutOf(pm);
      const mp = patchMaps(f.ln[l], 0, lay, d, hm.U, hm.V, n, sign);
      return {
        layer: l,
        head: h,
        mode: n,
        sign,
        sigma: hm.sigma[n],
        cosine: hm.cosine[n],
        grid: lay.grid,
        image_size: pm.card.layout.image_size,
        patch_size: pm.card.layout.patch_size,
        q: Array.from(mp.q),
        k: Array.from(mp.k),
        qmax: mp.qmax,
        kmax: mp.kmax,
        score: mp.score,
        normalization: 'percentile',
        definition: MAPS_DEFINITION_FALLBACK,
      };
    },
    imageModes: async (run, id, l, h) => {
      await checkLh(run, l, h);
      const { result } = await contributions(run, id, l, h, null);
      return imageModesOf(l, h, result, (await index()).contribution_definition);
    },
    decomposition: async (run, id, l, h, patch, top) => {
      await checkLh(run, l, h);
      const pm = await modelOf(run);
      const lay = layoutOf(pm);
      if (!Number.isInteger(patch) || patch < 0 || patch >= lay.patches) throw new ApiError(400, `patch ${patch} is out of range: 0..${lay.patches - 1}`);
      const i = lay.patchStart + patch;
      const { result, hm, a } = await contributions(run, id, l, h, [i]);
      const T = lay.tokens;
      return decompositionOf({
        layer: l,
        head: h,
        result,
        sigma: hm.sigma,
        dh: pm.card.dims.head_dim,
        layout: lay,
        patch,
        attention: a.attention.subarray(i * T, (i + 1) * T),
        modelLogits: a.scores.subarray(i * T, (i + 1) * T),
        relPos: a.relPos,
        top,
      });
    },
  };
}
