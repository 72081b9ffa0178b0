/**
 * Data for `qkscope figure modes`: the top images of some modes of one head, re-read from
 * wherever the scan found them, run through the model again to recompute the query and key maps
 * (so figures work for any run, and for any mode), drawn by report/figures/modes.ts.
 */
import type { VitSpec } from '../arch/spec.js';
import { UserError } from '../errors.js';
import { preprocessFor, preprocessImage, resizeAndCrop } from '../images/preprocess.js';
import type { Device } from '../runtime/device.js';
import { VitRuntime } from '../runtime/vit-runtime.js';
import { modesFigure, type ModesRow } from '../report/figures/modes.js';
import { normaliseMap, overlayRgb, upsampleGrid } from '../report/overlay.js';
import { weightsFingerprint } from './scan.js';
import { checkMode, modeInfo, topList, type RankedImage, type ScanRun } from '../store/scan-run.js';
import { ImageReader, sha256 } from '../images/sources.js';
import { decodeImageBytes } from '../images/decode.js';
import { pngDataUri, rgbToPng } from '../io/png.js';

export interface ModesFigureOptions {
  layer: number;
  head: number;
  modes: number[];
  sign: 1 | -1 | 'both';
  style: 'overlay' | 'separate';
  /** Images per row (default: all the scan kept). */
  images?: number;
  device?: Device;
  threads?: number;
  warn?: (msg: string) => void;
}

function blobF32(b: Buffer): Float32Array {
  const out = new Float32Array(b.length / 4);
  new Uint8Array(out.buffer).set(b);
  return out;
}

const fmt = (x: number) => (Number.isFinite(x) ? x.toFixed(3).replace('-', '−') : 'n/a');

export async function modesFigureSvg(run: ScanRun, spec: VitSpec, o: ModesFigureOptions): Promise<{ svg: string; tiles: number }> {
  const warn = o.warn ?? (() => undefined);
  const { meta } = run;
  for (const m of o.modes) checkMode(run, o.layer, o.head, m);
  if (spec.width !== meta.model.width || spec.heads !== meta.model.heads || spec.headDim !== meta.model.head_dim) {
    throw new UserError(`${spec.modelId}: not the model of this scan (dimensions differ)`);
  }
  if ((await weightsFingerprint(spec, meta.layers)) !== meta.weights_sha256) {
    throw new UserError(`${spec.modelId}: its q/k weights differ from those the scan used; give the scanned model with --model`);
  }
  const vec = run.db.prepare('SELECT u, v FROM vectors WHERE layer = ? AND head = ?').get(o.layer, o.head) as { u: Buffer; v: Buffer };
  const U = blobF32(vec.u);
  const V = blobF32(vec.v);
  const d = spec.width;
  const signs: (1 | -1)[] = o.sign === 'both' ? [1, -1] : [o.sign];
  const nImages = Math.min(o.images ?? meta.top_k, meta.top_k);
  const rowsSpec: { mode: number; sign: 1 | -1; entries: RankedImage[] }[] = [];
  for (const mode of o.modes) for (const sign of signs) rowsSpec.push({ mode, sign, entries: topList(run, o.layer, o.head, mode, sign).slice(0, nImages) });

  // Read every image once.
  const { pp, options } = preprocessFor(spec);
  const [ih, iw] = [pp.crop[0], pp.crop[1]];
  const per = 3 * ih * iw;
  const byId = new Map<number, RankedImage>();
  for (const r of rowsSpec) for (const e of r.entries) byId.set(e.id, e);
  const reader = new ImageReader();
  const view = new Map<number, { rgb: Uint8Array; slot: number }>();
  const pixels: Float32Array[] = [];
  try {
    for (const [id, e] of byId) {
      try {
        const { bytes } = await reader.read({ kind: e.source as 'file' | 'tar' | 'parquet', container: e.container, member: e.member });
        if (e.sha256 && sha256(bytes) !== e.sha256) warn(`${e.path}: changed since the scan (content hash differs); its maps may not match its score`);
        const img = await decodeImageBytes(bytes);
        const px = new Float32Array(per);
        preprocessImage(img, pp, options, px, 0);
        view.set(id, { rgb: resizeAndCrop(img, pp, options).data, slot: pixels.length });
        pixels.push(px);
      } catch (err) {
        warn(`${e.path}: cannot read it any more (${(err as Error).message.split('\n')[0]}); drawn as unavailable`);
      }
    }
  } finally {
    reader.close();
  }

  // Embeddings of the layer, in batches.
  const emb = new Map<number, Float32Array>();
  if (pixels.length) {
    const outputs = meta.embedding === 'ln' ? { ln: [o.layer] } : { residual: [o.layer] };
    const rt = await VitRuntime.create(spec, { outputs, device: o.device, threads: o.threads });
    try {
      const T = rt.layout.tokens;
      const B = 16;
      for (let s = 0; s < pixels.length; s += B) {
        const n = Math.min(B, pixels.length - s);
        const batch = new Float32Array(n * per);
        for (let i = 0; i < n; i++) batch.set(pixels[s + i], i * per);
        const r = await rt.run(batch, n);
        const x = (meta.embedding === 'ln' ? r.ln : r.residual)!;
        for (let i = 0; i < n; i++) emb.set(s + i, x.slice(i * T * d, (i + 1) * T * d));
      }
    } finally {
      await rt.close();
    }
  }

  const [gr, gc] = meta.patch_grid;
  const P = gr * gc;
  const ps = meta.patch_start;
  const maps = (slot: number, mode: number, sign: 1 | -1) => {
    const x = emb.get(slot)!;
    const q = new Float64Array(P);
    const k = new Float64Array(P);
    for (let t = 0; t < P; t++) {
      let sq = 0;
      let sk = 0;
      const off = (ps + t) * d;
      for (let c = 0; c < d; c++) {
        sq += x[off + c] * U[mode * d + c];
        sk += x[off + c] * V[mode * d + c];
      }
      q[t] = sign * sq;
      k[t] = sign * sk;
    }
    return { q, k };
  };
  const maxOf = (a: Float64Array) => a.reduce((m, v) => Math.max(m, v), -Infinity);
  const tileSide = Math.min(Math.max(ih, iw), 192);
  const png = async (rgb: Uint8Array) => pngDataUri(await rgbToPng(rgb, iw, ih, tileSide));

  const rows: ModesRow[] = [];
  let tiles = 0;
  for (const r of rowsSpec) {
    const info = modeInfo(run, o.layer, o.head, r.mode);
    const lines = [`c = ${fmt(info.cosine)}`];
    if (info.anisotropy !== null) lines.push(`rel. c = ${fmt(info.cosine - info.anisotropy)}`);
    lines.push(`σ = ${info.sigma.toPrecision(3)}`);
    const row: ModesRow = { label: `L${o.layer} H${o.head} M${r.mode} ${r.sign > 0 ? '+' : '−'}`, lines, tiles: [] };
    for (const e of r.entries) {
      const v = view.get(e.id);
      tiles++;
      if (!v) {
        row.tiles.push({ href: null, hrefKey: null, caption: `#${e.rank} S ${e.score.toPrecision(3)}` });
        continue;
      }
      const { q, k } = maps(v.slot, r.mode, r.sign);
      const score = maxOf(q) * maxOf(k);
      if (Math.abs(score - e.score) > 1e-3 * Math.max(1e-6, Math.abs(e.score))) {
        warn(`${e.path}: recomputed score ${score.toPrecision(6)} differs from the scan's ${e.score.toPrecision(6)} (L${o.layer} H${o.head} M${r.mode})`);
      }
      const qUp = upsampleGrid(normaliseMap(q), gr, gc, ih, iw);
      const kUp = upsampleGrid(normaliseMap(k), gr, gc, ih, iw);
      const caption = `#${e.rank} S ${e.score.toPrecision(3)}`;
      if (o.style === 'separate') {
        row.tiles.push({ href: await png(overlayRgb(v.rgb, iw, ih, qUp, null)), hrefKey: await png(overlayRgb(v.rgb, iw, ih, null, kUp)), caption, qToken: e.qToken, kToken: e.kToken });
      } else {
        row.tiles.push({ href: await png(overlayRgb(v.rgb, iw, ih, qUp, kUp)), caption, qToken: e.qToken, kToken: e.kToken });
      }
    }
    rows.push(row);
  }
  const prog = run.db.prepare('SELECT done FROM progress').get() as { done: number };
  const svg = modesFigure({
    title: `${meta.model.id}: layer ${o.layer}, head ${o.head}`,
    subtitle: `top images by S = max Q × max K of ${prog.done} images · ${meta.embedding === 'ln' ? 'LayerNorm output' : 'residual stream'}${meta.status === 'complete' ? '' : ' · scan not complete'}`,
    rows,
    style: o.style,
    grid: [gr, gc],
    note: '− rows use (−u, −v) · indices 0-based · under each image: rank, score S · maps normalised per image (positive part / max)',
  });
  return { svg, tiles };
}
