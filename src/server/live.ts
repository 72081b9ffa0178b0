/**
 * Live computations for the Image and Mode views, on the same runtime the CLI uses
 * (`VitRuntime`, an onnxruntime session built from the VitSpec). Each model is opened once per
 * server, lazily, the first time a view needs it; one forward pass per (model, image) yields
 * every layer's LayerNorm output, attention probabilities and pre-softmax attention logits,
 * cached for a few images.
 *
 * Logit decomposition (METHOD.md §1, §2, §4, §5), for query token i and every key token j of
 * head h in block l, with x = LN(h) and √d_h = sqrt(head_dim):
 *
 *   a_ij = Σ_n σ_n (x_i·u_n)(v_n·x_j)/√d_h          mode parts (all d_h modes)
 *        + (s·x_j)/√d_h,  s = W_kᵀ b_q              key salience (query-independent)
 *        + ((W_q x_i + b_q)·b_k)/√d_h               query constant (same for every j; cancels in softmax)
 *        + B_ij                                     relative position bias (BEiT-style models)
 *        + residual                                 (float rounding; should be ~1e-6)
 *
 * a_ij on the left is the model's own pre-softmax logit, read from the ONNX graph (the input of
 * the block's Softmax); B_ij is read from the graph too (Softmax input minus the q·k product).
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import sharp from 'sharp';
import { loadWeight, type VitSpec } from '../arch/spec.js';
import { UserError } from '../errors.js';
import { decodeImage, type RgbImage } from '../images/decode.js';
import { preprocessFor, resizeAndCrop, normalise } from '../images/preprocess.js';
import { VitRuntime } from '../runtime/vit-runtime.js';
import type { TokenLayout } from '../arch/tokens.js';
import { HttpError } from './http.js';
import { loadSpec } from '../arch/load.js';

// ---------------------------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------------------------

export interface StoredImage {
  id: string;
  label: string;
  rgb: RgbImage;
}

/** Max pixels of an uploaded image (decompression bombs are refused before decoding). */
export const MAX_IMAGE_PIXELS = 40_000_000;

/**
 * Decodes uploaded bytes with the project's decoder (EXIF orientation, alpha dropped, CMYK as
 * Pillow does), after checking with sharp that they are an image of sane size.
 */
export async function decodeUpload(bytes: Buffer): Promise<RgbImage> {
  if (bytes.length === 0) throw new HttpError(400, 'empty upload: send the image file as the request body');
  let meta: sharp.Metadata;
  try {
    meta = await sharp(bytes, { failOn: 'error' }).metadata();
  } catch {
    throw new HttpError(415, 'not an image we can read: give a JPEG, PNG or WebP file');
  }
  if (!meta.width || !meta.height) throw new HttpError(415, 'not an image we can read: give a JPEG, PNG or WebP file');
  if (meta.width * meta.height > MAX_IMAGE_PIXELS) {
    throw new HttpError(413, `image too large: ${meta.width}×${meta.height} pixels; the limit is ${MAX_IMAGE_PIXELS / 1e6} megapixels`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'qkscope-upload-'));
  try {
    const p = join(dir, 'upload');
    writeFileSync(p, bytes);
    try {
      return await decodeImage(p);
    } catch (e) {
      if (e instanceof UserError) throw new HttpError(415, 'cannot decode the image (it may be truncated or corrupt): give a JPEG, PNG or WebP file');
      throw e;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Bounded store of decoded images by id (least recently used dropped first). */
export class ImageStore {
  private images = new Map<string, StoredImage>();
  constructor(private readonly maxBytes = 256 << 20) {}

  put(img: StoredImage): StoredImage {
    this.images.delete(img.id);
    this.images.set(img.id, img);
    let total = 0;
    for (const v of this.images.values()) total += v.rgb.data.length;
    for (const [k, v] of this.images) {
      if (total <= this.maxBytes || this.images.size <= 1) break;
      total -= v.rgb.data.length;
      this.images.delete(k);
    }
    return img;
  }

  get(id: string): StoredImage {
    const img = this.images.get(id);
    if (!img) throw new HttpError(404, `no image ${JSON.stringify(id)} (it may have been dropped from the cache; upload it again)`);
    this.images.delete(id);
    this.images.set(id, img);
    return img;
  }

  has(id: string): boolean {
    return this.images.has(id);
  }
}

// ---------------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------------

export interface ForwardResult {
  layout: TokenLayout;
  /** [L, T, d] */
  ln: Float32Array;
  /** [L, H, T, T] */
  attention: Float32Array;
  /** [L, H, T, T] pre-softmax logits (the model's own) */
  logits: Float32Array;
  /** [L, H, T, T] relative position bias actually added (null when the model has none) */
  relPos: Float32Array | null;
}

interface QkWeights {
  wq: Float32Array; // [H*dh, d] rows of W_q (this layer)
  bq: Float32Array | null;
  bk: Float32Array | null;
}

/** One loaded model: spec, runtime (built on first use) and a small forward-pass cache. */
export class ModelSession {
  private runtime: Promise<VitRuntime> | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private cache = new Map<string, Promise<ForwardResult>>();
  private qk = new Map<number, Promise<QkWeights>>();
  readonly hasRelPos: boolean;

  constructor(
    readonly spec: VitSpec,
    private readonly closeSource: () => Promise<void>,
    private readonly cacheSize = 4,
  ) {
    if (spec.modality !== 'vision' || !spec.patchEmbed) {
      throw new HttpError(422, `${spec.modelId}: not a vision model; the image views need a ViT`);
    }
    this.hasRelPos = spec.blocks.some((b) => !!b.relPosBias);
  }

  get preprocess() {
    return preprocessFor(this.spec);
  }

  private getRuntime(): Promise<VitRuntime> {
    if (!this.runtime) {
      const L = this.spec.layers;
      const rel = this.hasRelPos;
      this.runtime = VitRuntime.create(this.spec, {
        outputs: { ln: 'all', attention: 'all' },
        extend: (g, t) => {
          // The Softmax's input is the model's pre-softmax logit; its producer (an Add for
          // relative position bias) or the q·k MatMul itself gives the bias-free product.
          for (let l = 0; l < L; l++) {
            const sm = g.nodes.find((n) => n.opType === 'Softmax' && n.output?.[0] === t.attention[l]);
            if (!sm?.input?.[0]) throw new Error(`serve: cannot find the attention Softmax of block ${l}`);
            const scores = sm.input[0];
            g.output(`logits.${l}`, scores);
            if (rel) {
              const add = g.nodes.find((n) => n.output?.[0] === scores);
              const qk = add && add.opType === 'Add' ? add.input![0] : scores;
              g.output(`qk.${l}`, qk);
            }
          }
        },
      });
      this.runtime.catch(() => {
        this.runtime = null;
      });
    }
    return this.runtime;
  }

  /** The pixels of an image as this model sees them: [3, h, w] normalised, and the crop as RGB. */
  input(img: StoredImage): { pixels: Float32Array; crop: RgbImage } {
    const { pp, options } = this.preprocess;
    const crop = resizeAndCrop(img.rgb, pp, options);
    return { pixels: normalise(crop, pp), crop };
  }

  async cropPng(img: StoredImage): Promise<Buffer> {
    const { crop } = this.input(img);
    return sharp(Buffer.from(crop.data.buffer, crop.data.byteOffset, crop.data.length), { raw: { width: crop.width, height: crop.height, channels: 3 } })
      .png()
      .toBuffer();
  }

  /** One forward pass (cached per image id unless `cache` is false); passes run one at a time. */
  forward(img: StoredImage, cache = true): Promise<ForwardResult> {
    const hit = this.cache.get(img.id);
    if (hit) {
      this.cache.delete(img.id);
      this.cache.set(img.id, hit);
      return hit;
    }
    const job = this.queue.then(async (): Promise<ForwardResult> => {
      const rt = await this.getRuntime();
      const { pixels } = this.input(img);
      const r = await rt.run(pixels, 1);
      const L = this.spec.layers;
      const T = rt.layout.tokens;
      const H = this.spec.heads;
      const per = H * T * T;
      const stack = (prefix: string): Float32Array => {
        const o = new Float32Array(L * per);
        for (let l = 0; l < L; l++) o.set(r.extra[`${prefix}.${l}`].data, l * per);
        return o;
      };
      const logits = stack('logits');
      let relPos: Float32Array | null = null;
      if (this.hasRelPos) {
        const qk = stack('qk');
        relPos = new Float32Array(qk.length);
        for (let i = 0; i < qk.length; i++) relPos[i] = logits[i] - qk[i];
      }
      return { layout: rt.layout, ln: r.ln!, attention: r.attention!, logits, relPos };
    });
    this.queue = job.catch(() => undefined);
    if (!cache) return job;
    this.cache.set(img.id, job);
    job.catch(() => this.cache.delete(img.id));
    while (this.cache.size > this.cacheSize) this.cache.delete(this.cache.keys().next().value!);
    return job;
  }

  /** W_q rows and the q/k biases of one block (loaded once). */
  qkWeights(l: number): Promise<QkWeights> {
    let w = this.qk.get(l);
    if (!w) {
      const b = this.spec.blocks[l];
      const f32 = (a: ArrayLike<number>) => (a instanceof Float32Array ? a : Float32Array.from(a));
      w = (async () => ({
        wq: f32(await loadWeight(b.q.weight)),
        bq: b.q.bias ? f32(await loadWeight(b.q.bias)) : null,
        bk: b.k.bias ? f32(await loadWeight(b.k.bias)) : null,
      }))();
      w.catch(() => this.qk.delete(l));
      this.qk.set(l, w);
    }
    return w;
  }

  async close(): Promise<void> {
    const rt = this.runtime;
    this.runtime = null;
    if (rt) await (await rt.catch(() => null))?.close();
    await this.closeSource();
  }
}

/**
 * Where the model of a run is: `summary.model.input` as given to `svd` (a path, possibly
 * relative to where svd ran, or a hub id). Relative paths are tried against the server's
 * working directory, the run directory and RUNS_DIR (and their parents).
 */
export function resolveModelInput(input: string, runDir: string, runsRoot: string): string {
  if (isAbsolute(input)) return input;
  const bases = [process.cwd(), runDir, dirname(runDir), runsRoot, dirname(runsRoot)];
  for (const b of bases) {
    const p = resolve(b, input);
    if (existsSync(p)) return p;
  }
  return input; // a hub id, or missing (openModel says so)
}

/** Opens models once per server, keyed by the resolved input (+ part). */
export class ModelPool {
  private sessions = new Map<string, Promise<ModelSession>>();
  constructor(private readonly flags: { offline?: boolean } = {}) {}

  get(input: string, opts: { part?: string; numHeads?: number; runId: string }): Promise<ModelSession> {
    const key = `${input}#${opts.part ?? ''}`;
    let s = this.sessions.get(key);
    if (!s) {
      s = (async () => {
        let loaded;
        try {
          loaded = await loadSpec(input, { offline: this.flags.offline, part: opts.part, numHeads: opts.numHeads });
        } catch (e) {
          if (e instanceof UserError) {
            throw new HttpError(422, `run ${opts.runId}: cannot open its model (${e.message}). The image views run the model named in summary.json's model.input; start serve from the folder where svd ran, or keep the model at that path`);
          }
          throw e;
        }
        try {
          return new ModelSession(loaded.spec, loaded.close);
        } catch (e) {
          await loaded.close();
          throw e;
        }
      })();
      s.catch(() => this.sessions.delete(key));
      this.sessions.set(key, s);
    }
    return s;
  }

  async close(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of all) await (await s.catch(() => null))?.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Maths
// ---------------------------------------------------------------------------------------------

function dot(a: ArrayLike<number>, aOff: number, b: ArrayLike<number>, bOff: number, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += a[aOff + i] * b[bOff + i];
  return s;
}

export interface HeadBasis {
  sigma: number[];
  cosine: number[];
  /** u_n, v_n: [d_h][d] */
  U: Float64Array[];
  V: Float64Array[];
  /** key salience s = W_kᵀ b_q, [d] */
  salience: Float64Array;
}

/** Query and key maps of mode n over the patch tokens (METHOD.md §4), times `sign`. */
export function modeMaps(f: ForwardResult, d: number, l: number, u: Float64Array, v: Float64Array, sign: 1 | -1): { q: number[]; k: number[] } {
  const { tokens: T, patchStart } = f.layout;
  const base = l * T * d;
  const q: number[] = [];
  const k: number[] = [];
  for (let t = patchStart; t < T; t++) {
    q.push(sign * dot(f.ln, base + t * d, u, 0, d));
    k.push(sign * dot(f.ln, base + t * d, v, 0, d));
  }
  return { q, k };
}

export interface ModeContribution {
  mode: number;
  sigma: number;
  cosine: number;
  /** Σ_j A_ij σ_n Q_n(i) K_n(j)/√d_h for one query row, or Σ_ij for the whole image */
  contribution: number;
}

/**
 * Contribution of each mode to the attention score of the whole image: Σ_{i,j} A_ij σ_n
 * Q_n(i) K_n(j) / √d_h over all token pairs (special tokens included), METHOD.md §5.
 */
export function imageModeContributions(f: ForwardResult, l: number, h: number, H: number, d: number, basis: HeadBasis): ModeContribution[] {
  const T = f.layout.tokens;
  const dh = basis.sigma.length;
  const rs = 1 / Math.sqrt(dh);
  const lnBase = l * T * d;
  const aBase = (l * H + h) * T * T;
  const out: ModeContribution[] = [];
  const Q = new Float64Array(T);
  const K = new Float64Array(T);
  for (let n = 0; n < dh; n++) {
    for (let t = 0; t < T; t++) {
      Q[t] = dot(f.ln, lnBase + t * d, basis.U[n], 0, d);
      K[t] = dot(f.ln, lnBase + t * d, basis.V[n], 0, d);
    }
    let s = 0;
    for (let i = 0; i < T; i++) {
      let row = 0;
      for (let j = 0; j < T; j++) row += f.attention[aBase + i * T + j] * K[j];
      s += Q[i] * row;
    }
    out.push({ mode: n, sigma: basis.sigma[n], cosine: basis.cosine[n], contribution: basis.sigma[n] * s * rs });
  }
  return out;
}

export interface Part {
  /** 'mode' | 'other_modes' | 'key_salience' | 'query_constant' | 'rel_pos_bias' */
  kind: string;
  label: string;
  mode?: number;
  /** value at every key token j (length T) */
  values: number[];
  /** attention-weighted: Σ_j A_ij values[j] */
  weighted: number;
}

export interface Decomposition {
  layer: number;
  head: number;
  query: { token: number; patch: number; row: number; col: number };
  tokens: { count: number; patch_start: number; grid: [number, number]; special: string[] };
  attention: number[];
  model_logit: number[];
  parts: Part[];
  reconstructed: number[];
  residual: number[];
  max_abs_residual: number;
  /** max_j |softmax(reconstructed)_j − attention_j| */
  softmax_max_abs_diff: number;
  modes: ModeContribution[];
  top_modes: number[];
  scale: string;
}

/** The logit decomposition of one query patch's attention row (see the file comment). */
export function decompose(f: ForwardResult, spec: VitSpec, l: number, h: number, patch: number, basis: HeadBasis, w: QkWeights, topK: number): Decomposition {
  const { tokens: T, patchStart, grid } = f.layout;
  const d = spec.width;
  const H = spec.heads;
  const dh = spec.headDim;
  const rs = 1 / Math.sqrt(dh);
  const i = patchStart + patch;
  const lnBase = l * T * d;
  const rowBase = ((l * H + h) * T + i) * T;
  const attention = Array.from(f.attention.subarray(rowBase, rowBase + T));
  const model = Array.from(f.logits.subarray(rowBase, rowBase + T), Number);

  // Per-mode parts.
  const modeVals: number[][] = [];
  const modes: ModeContribution[] = [];
  for (let n = 0; n < dh; n++) {
    const qi = dot(f.ln, lnBase + i * d, basis.U[n], 0, d);
    const c = basis.sigma[n] * qi * rs;
    const vals = new Array<number>(T);
    let weighted = 0;
    for (let j = 0; j < T; j++) {
      vals[j] = c * dot(f.ln, lnBase + j * d, basis.V[n], 0, d);
      weighted += attention[j] * vals[j];
    }
    modeVals.push(vals);
    modes.push({ mode: n, sigma: basis.sigma[n], cosine: basis.cosine[n], contribution: weighted });
  }
  const ranked = [...modes].sort((a, b) => Math.abs(b.contribution) - Math.abs(a.contribution));
  const top = ranked.slice(0, Math.max(0, Math.min(topK, dh))).map((m) => m.mode);
  const topSet = new Set(top);

  const weightedOf = (vals: number[]) => vals.reduce((s, v, j) => s + attention[j] * v, 0);
  const parts: Part[] = [];
  for (const n of top) {
    parts.push({ kind: 'mode', mode: n, label: `mode ${n}`, values: modeVals[n], weighted: modes[n].contribution });
  }
  if (top.length < dh) {
    const other = new Array<number>(T).fill(0);
    for (let n = 0; n < dh; n++) if (!topSet.has(n)) for (let j = 0; j < T; j++) other[j] += modeVals[n][j];
    parts.push({ kind: 'other_modes', label: `other ${dh - top.length} modes`, values: other, weighted: weightedOf(other) });
  }
  // Key salience: s·x_j / √d_h.
  const sal = Array.from({ length: T }, (_, j) => dot(f.ln, lnBase + j * d, basis.salience, 0, d) * rs);
  parts.push({ kind: 'key_salience', label: 'key salience', values: sal, weighted: weightedOf(sal) });
  // Query constant: (W_q x_i + b_q)·b_k / √d_h (the same for every key).
  let qc = 0;
  if (w.bk) {
    for (let r = 0; r < dh; r++) {
      const row = h * dh + r;
      const qv = dot(w.wq, row * d, f.ln, lnBase + i * d, d) + (w.bq ? w.bq[row] : 0);
      qc += qv * w.bk[row];
    }
    qc *= rs;
  }
  parts.push({ kind: 'query_constant', label: 'query constant', values: new Array<number>(T).fill(qc), weighted: qc });
  if (f.relPos) {
    const rp = Array.from(f.relPos.subarray(rowBase, rowBase + T), Number);
    parts.push({ kind: 'rel_pos_bias', label: 'relative position bias', values: rp, weighted: weightedOf(rp) });
  }

  const reconstructed = new Array<number>(T).fill(0);
  for (let n = 0; n < dh; n++) for (let j = 0; j < T; j++) reconstructed[j] += modeVals[n][j];
  for (const p of parts) if (p.kind !== 'mode' && p.kind !== 'other_modes') for (let j = 0; j < T; j++) reconstructed[j] += p.values[j];
  const residual = model.map((m, j) => m - reconstructed[j]);
  const mx = Math.max(...reconstructed);
  const ex = reconstructed.map((r) => Math.exp(r - mx));
  const z = ex.reduce((a, b) => a + b, 0);
  let smDiff = 0;
  for (let j = 0; j < T; j++) smDiff = Math.max(smDiff, Math.abs(ex[j] / z - attention[j]));
  const special = f.layout.special.map(String);
  return {
    layer: l,
    head: h,
    query: { token: i, patch, row: Math.floor(patch / grid[1]), col: patch % grid[1] },
    tokens: { count: T, patch_start: patchStart, grid, special },
    attention,
    model_logit: model,
    parts,
    reconstructed,
    residual,
    max_abs_residual: Math.max(...residual.map(Math.abs)),
    softmax_max_abs_diff: smDiff,
    modes,
    top_modes: top,
    scale: 'logits include the 1/sqrt(d_h) factor: mode n contributes σ_n (x_i·u_n)(v_n·x_j)/sqrt(d_h)',
  };
}

/** Per layer, the unit-length centre-patch LayerNorm output x = LN(h) of one image. */
export function centreVectors(f: ForwardResult, d: number, L: number): Float64Array[] {
  const { grid, patchStart, tokens: T } = f.layout;
  const t = patchStart + Math.floor(grid[0] / 2) * grid[1] + Math.floor(grid[1] / 2);
  const out: Float64Array[] = [];
  for (let l = 0; l < L; l++) {
    const base = (l * T + t) * d;
    const v = Float64Array.from(f.ln.subarray(base, base + d));
    const n = Math.hypot(...v);
    if (n > 0) for (let c = 0; c < d; c++) v[c] /= n;
    out.push(v);
  }
  return out;
}

/**
 * Per-layer mean cosine between the centre-patch embeddings of different images (METHOD.md §3,
 * anisotropy control), from `centreVectors` of each image: Σ_{a≠b} x̂_a·x̂_b / (N(N−1)).
 */
export function anisotropy(perImage: Float64Array[][], d: number, L: number): number[] {
  const out: number[] = [];
  const N = perImage.length;
  for (let l = 0; l < L; l++) {
    const sum = new Float64Array(d);
    for (const v of perImage) for (let c = 0; c < d; c++) sum[c] += v[l][c];
    let s2 = 0;
    for (let c = 0; c < d; c++) s2 += sum[c] ** 2;
    // |Σ x̂|² = N + Σ_{a≠b} x̂_a·x̂_b for unit vectors.
    out.push(N > 1 ? (s2 - N) / (N * (N - 1)) : NaN);
  }
  return out;
}
