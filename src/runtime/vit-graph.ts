/**
 * One ONNX graph builder for every ViT family, driven only by the VitSpec's fields: special
 * tokens and registers, absolute position embedding (interpolated for other image sizes),
 * pre-blocks LayerNorm, activation, layer-scale, relative position bias, SwiGLU, pooling,
 * classifier heads (with DeiT's distillation head).
 *
 * Graph, for input `pixels` [N, C, H, W] (N symbolic; with `startLayer` l the input is instead
 * `residual` [N, T, d] entering block l, and only blocks l..L−1 and the head are built):
 *   Conv(patch) -> [N, P, d] (+ patch position rows) ; special tokens (+ their position rows)
 *   are a precomputed [nS, d] constant expanded to [N, nS, d] and concatenated in front.
 *   preNorm?  then per block l:   residual[l] = x ; ln[l] = LN1(x)
 *     q = ln Wqᵀ/√dh + bq/√dh, k = ln Wkᵀ + bk, v = ln Wvᵀ + bv   (weights pre-transposed)
 *     attention[l] = Softmax(q kᵀ + relPosBias)  [N, H, T, T]
 *     x = x + ls1 ⊙ (attention v) Woᵀ + bo ;  x = x + ls2 ⊙ MLP(LN2(x))
 *   final = finalNorm(x); pooled = cls token | mean of patches | [cls, mean] | attention-pooling
 *   head (then fcNorm); logits = head(pooled), or the attention-pooled embedding itself.
 *
 * The graph is an OnnxGraph that callers may extend (`extend` callback) with their own nodes
 * on the named internal tensors (`VitTensors`), e.g. `g.reduceMax(g.slice(g.matmul(t.ln[l],
 * U), 1, t.layout.patchStart, t.layout.tokens), [1])`. Weights come from `loadWeight`, can be
 * replaced by edited copies at build time (`weights`), or be made graph inputs with a default
 * value (`overridable`) so a run can feed an edited W_q without rebuilding.
 */
import { loadWeight, type LinearSpec, type NormSpec, type VitSpec, type WeightRef, type Activation } from '../arch/spec.js';
import { UserError } from '../errors.js';
import { resizeGridF64 } from '../images/resample.js';
import { MS_DOMAIN, OnnxGraph } from './onnx-graph.js';
import { tokenLayout, registerCount, type TokenLayout } from '../arch/tokens.js';
import { forwardUnavailable, logitsWidth, pooledWidth } from '../arch/runnable.js';

/** Layers to expose: a list of 0-based block indices, or 'all'. */
export type LayerSelection = number[] | 'all';

export interface VitOutputs {
  /** LayerNorm output feeding each selected block's attention: [N, L, T, d]. */
  ln?: LayerSelection;
  /** Residual stream entering each selected block: [N, L, T, d]. */
  residual?: LayerSelection;
  /** Attention probabilities: [N, L, H, T, T]. */
  attention?: LayerSelection;
  /** Classifier logits [N, classes] (only when the spec has a head). */
  logits?: boolean;
  /** Pooled final features [N, d'] (the classifier's input). */
  features?: boolean;
  /** All tokens after the final norm [N, T, d] (HF's last_hidden_state). */
  final?: boolean;
}

/** Names of the graph's internal tensors, for callers that append computations. */
export interface VitTensors {
  /** The graph input: `pixels` [N, C, H, W], or `residual` [N, T, d] with `startLayer`. */
  input: string;
  /** '' when the graph starts after the embeddings (`startLayer` > 0). */
  pixels: string;
  /** Tokens entering block 0 (after the pre-blocks norm): [N, T, d]; '' with `startLayer` > 0. */
  embeddings: string;
  /** Per block ('' for blocks before `startLayer`): residual stream entering the block [N, T, d]. */
  residual: string[];
  /** Per block: LN1 output [N, T, d]. */
  ln: string[];
  /** Per block: attention probabilities [N, H, T, T] ('' for blocks built fused: see `unfused`). */
  attention: string[];
  /** Per block: attention built as onnxruntime's fused kernel (no `attention[l]`, no separate q/k/v projections). */
  fused: boolean[];
  /** After the final norm [N, T, d]. */
  final: string;
  /** Pooled features [N, d'] (absent for pooling 'none' without a CLS token). */
  features?: string;
  /** Logits [N, classes] when the spec has a head. */
  logits?: string;
  layout: TokenLayout;
}

export interface VitGraphOptions {
  outputs: VitOutputs;
  /** Input image size [H, W]; default spec.imageSize. Other sizes interpolate the position embedding. */
  imageSize?: [number, number];
  /**
   * Replacement weights in canonical layout (PyTorch [out, in]), keyed like
   * `blocks.3.q.weight`, `blocks.3.q.bias`, `head.weight` (see `paramKey`).
   */
  weights?: Record<string, Float32Array>;
  /** Canonical keys of weights to expose as graph inputs with a default (fed per run). */
  overridable?: string[];
  /** Appends computations; outputs it declares with `g.output` are returned as extras. */
  extend?: (g: OnnxGraph, t: VitTensors) => void;
  /**
   * Blocks whose attention is built from plain ONNX nodes (separate q/k/v MatMuls, the scores,
   * a Softmax whose output is `attention[l]`) instead of onnxruntime's fused `Attention`
   * kernel (com.microsoft; less CPU, the same numbers to float32 rounding). An `extend`
   * callback that reads `attention[l]`, or looks for the Softmax or the q/k projections of
   * block l, needs block l here. Default: every block when `extend` is given (it may look
   * anywhere), none otherwise. Blocks in `outputs.attention` and blocks with `overridable`
   * weights are always built plain. (onnxruntime fuses Add + Gelu into BiasGelu by itself;
   * its SkipLayerNormalization was 3× slower on CPU than Add + LayerNormalization, so the
   * residual adds and norms stay plain.)
   */
  unfused?: LayerSelection;
  /**
   * Blocks (not built plain) whose q and k projections must be visible: separate q/k/v MatMul
   * nodes from the block's LayerNorm output (`blocks.<l>.q.weight` as their initializer, the
   * biases added inside the kernel), feeding onnxruntime's fused `MultiHeadAttention` for the
   * scores, Softmax and weighted sum. For an `extend` that reads the q/k projections but not
   * the attention probabilities (the scan's fast route); give it `unfused: []` beside.
   */
  qkProjections?: LayerSelection;
  /**
   * Build only blocks startLayer..L−1 (and what follows them): the graph's input is then
   * `residual` [N, T, d], the residual stream entering block startLayer (a full graph's
   * `residual.<l>` output), instead of `pixels`. Used to rerun only the blocks an edit of layer
   * l can change. Outputs of earlier blocks cannot be asked for. Default 0 (pixels in).
   */
  startLayer?: number;
}

/** How a canonical weight maps onto an initializer (for per-run overrides). */
export interface ParamBinding {
  init: string;
  /** Canonical [out, in] (or vector) -> initializer layout. */
  transform: (canonical: Float32Array) => Float32Array;
  canonicalShape: number[];
  /** The initializer's dims. */
  dims: number[];
}

export interface VitGraph {
  graph: OnnxGraph;
  tensors: VitTensors;
  layout: TokenLayout;
  /** The graph input and its per-image dims ([C, H, W] for pixels, [T, d] for a residual). */
  input: { name: 'pixels' | 'residual'; dims: number[] };
  /** First block built (0: the whole model). */
  startLayer: number;
  /** Output name -> dims (with 'batch' for N), for the outputs the caller asked for. */
  outputDims: Map<string, (number | string)[]>;
  /** Block indices per layered output. */
  layers: { ln: number[]; residual: number[]; attention: number[] };
  /** Overridable weights by canonical key. */
  params: Map<string, ParamBinding>;
  /** Names of outputs added by `extend`. */
  extraOutputs: string[];
  /** Model FLOPs per image (multiply-adds x 2) of the forward pass, for benchmarks. */
  flopsPerImage: number;
}

export function resolveLayers(sel: LayerSelection | undefined, layers: number, flag = 'layers'): number[] {
  if (sel === undefined) return [];
  if (sel === 'all') return Array.from({ length: layers }, (_, i) => i);
  for (const l of sel) {
    if (!Number.isInteger(l) || l < 0 || l >= layers) {
      throw new UserError(`--${flag}: layer ${l} is out of range; the model has layers 0..${layers - 1}`);
    }
  }
  return [...new Set(sel)].sort((a, b) => a - b);
}

function toF32(a: ArrayLike<number>): Float32Array {
  return a instanceof Float32Array ? a : Float32Array.from(a);
}

function numel(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * [rows, cols] → [cols, rows], times `scale`. In 64 × 64 tiles: the row-by-row loop wrote with a
 * stride of `rows` floats and took twice the time (~1 s of every ViT-B/16 graph build).
 */
export function transpose2(w: Float32Array, rows: number, cols: number, scale = 1, into?: Float32Array): Float32Array {
  const t = into ?? new Float32Array(rows * cols);
  const B = 64;
  for (let r0 = 0; r0 < rows; r0 += B) {
    const r1 = Math.min(rows, r0 + B);
    for (let c0 = 0; c0 < cols; c0 += B) {
      const c1 = Math.min(cols, c0 + B);
      for (let c = c0; c < c1; c++) {
        const o = c * rows;
        for (let r = r0; r < r1; r++) t[o + r] = w[r * cols + c] * scale;
      }
    }
  }
  return t;
}

function scaled(v: Float32Array, s: number): Float32Array {
  if (s === 1) return v;
  const o = new Float32Array(v.length);
  for (let i = 0; i < v.length; i++) o[i] = v[i] * s;
  return o;
}

/**
 * How each family resamples its position embedding for another image size, as its reference
 * code does: torch bicubic without antialias (HF ViT, DeiT, CLIP, SigLIP, DINOv2, BEiT,
 * I-JEPA, MAE, MSN), with antialias (timm's resample_abs_pos_embed, HF DINOv2-with-registers).
 */
export function posInterpolation(family: string): 'bicubic' | 'bicubic-aa' {
  return family.startsWith('timm') || family === 'hf-dinov2-registers' ? 'bicubic-aa' : 'bicubic';
}

/** Builds the graph. Loads the weights it needs through `loadWeight` (async). */
export async function buildVitGraph(spec: VitSpec, opts: VitGraphOptions): Promise<VitGraph> {
  const why = forwardUnavailable(spec);
  if (why || !spec.patchEmbed) throw new UserError(`${spec.modelId}: only vision models can be run, and this one cannot: ${why ?? 'no patch embedding'}`);
  const imageSize = opts.imageSize ?? spec.imageSize;
  const layout = tokenLayout(spec, imageSize);
  const { width: d, heads: H, headDim: dh, layers: L } = spec;
  const T = layout.tokens;
  const nS = layout.patchStart;
  const [gh, gw] = layout.grid;
  if (spec.kvHeads !== H) throw new UserError(`${spec.modelId}: grouped-query attention (kvHeads ${spec.kvHeads} != heads ${H}) is not supported by the runtime`);
  const start = opts.startLayer ?? 0;
  if (!Number.isInteger(start) || start < 0 || start >= L) throw new Error(`buildVitGraph: startLayer ${start} is not a block of ${spec.modelId} (0..${L - 1})`);
  const sel = {
    ln: resolveLayers(opts.outputs.ln, L),
    residual: resolveLayers(opts.outputs.residual, L),
    attention: resolveLayers(opts.outputs.attention, L),
  };
  for (const l of [...sel.ln, ...sel.residual, ...sel.attention]) {
    if (l < start) throw new UserError(`--layers: layer ${l} comes before the graph's first block ${start}; ask a full graph for it`);
  }
  const overrides = opts.weights ?? {};
  const overridable = new Set(opts.overridable ?? []);
  const params = new Map<string, ParamBinding>();
  const g = new OnnxGraph(spec.modelId);
  let flops = 0;

  const load = async (key: string, ref: WeightRef): Promise<Float32Array> => {
    const o = overrides[key];
    if (o) {
      if (o.length !== numel(ref.shape)) throw new Error(`weight override ${key}: ${o.length} values, expected shape [${ref.shape}]`);
      return o;
    }
    return toF32(await loadWeight(ref));
  };

  /**
   * One buffer reused by the lazy weight transforms: `encode` / `writeExternal` copy each weight
   * as soon as it is produced, so a fresh array per weight only cost page faults (on this VM
   * ~2.7 ms per MB: ~0.9 s for ViT-B/16's 340 MB of linear weights).
   */
  let scratchBuf = new Float32Array(0);
  const scratch = (n: number): Float32Array => (scratchBuf.length >= n ? scratchBuf : (scratchBuf = new Float32Array(n))).subarray(0, n);

  /**
   * A weight initializer registered under its canonical key: `transform(load(key, ref))`,
   * read lazily when the graph is serialised, or now when the key is overridable.
   */
  const param = async (
    key: string,
    dims: number[],
    ref: WeightRef,
    canonicalShape: number[],
    transform: (c: Float32Array) => Float32Array,
    /** The same transform writing into the build's scratch (lazy initializers only: copied at once). */
    lazyTransform: (c: Float32Array) => Float32Array = transform,
  ): Promise<string> => {
    const size = dims.reduce((a, b) => a * b, 1);
    if (numel(ref.shape) !== size) throw new Error(`${spec.modelId}: ${key} has shape [${ref.shape}], expected ${size} values`);
    const init = overridable.has(key)
      ? g.init(key, dims, transform(await load(key, ref)), { overridable: true })
      : g.init(key, dims, async () => lazyTransform(await load(key, ref)));
    params.set(key, { init, transform, canonicalShape, dims });
    return init;
  };
  const id = (c: Float32Array) => c;

  /** y = x Wᵀ + b, with W pre-transposed to [in, out]; `scale` is folded into W and b. */
  const linear = async (x: string, lin: LinearSpec, key: string, rowsIn: number, scale = 1, bias = true): Promise<{ y: string; out: number }> => {
    const [out, inn] = lin.weight.shape.length === 2 ? lin.weight.shape : [lin.weight.shape[0], numel(lin.weight.shape.slice(1))];
    const tr = (c: Float32Array) => transpose2(c, out, inn, scale);
    const wi = await param(`${key}.weight`, [inn, out], lin.weight, [out, inn], tr, (c) => transpose2(c, out, inn, scale, scratch(out * inn)));
    let y = g.matmul(x, wi, key.replace(/\./g, '_'));
    flops += 2 * rowsIn * inn * out;
    if (lin.bias && bias) {
      const trb = (c: Float32Array) => scaled(c, scale);
      y = g.add(y, await param(`${key}.bias`, [out], lin.bias, [out], trb));
    }
    return { y, out };
  };

  const norm = async (x: string, n: NormSpec, key: string, dim: number): Promise<string> => {
    const w = n.weight ? await param(`${key}.weight`, [dim], n.weight, [dim], id) : g.floats(Array(dim).fill(1));
    const inputs = [x, w];
    if (n.bias) inputs.push(await param(`${key}.bias`, [dim], n.bias, [dim], id));
    return g.op('LayerNormalization', inputs, { axis: -1, epsilon: { f: n.eps } }, { name: key.replace(/\./g, '_') });
  };

  const activation = (x: string, act: Activation): string => {
    switch (act) {
      case 'gelu':
        return g.op('Gelu', [x], {}, { domain: MS_DOMAIN });
      case 'gelu_tanh':
        return g.op('FastGelu', [x], {}, { domain: MS_DOMAIN });
      case 'quick_gelu':
        return g.op('QuickGelu', [x], { alpha: { f: 1.702 } }, { domain: MS_DOMAIN });
      case 'relu':
        return g.op('Relu', [x]);
      case 'silu':
        return g.mul(x, g.op('Sigmoid', [x]));
    }
  };

  // ---- embeddings (none when the graph starts at a later block) ---------------------
  let pixels = '';
  let embeddings = '';
  let x: string;
  if (start > 0) {
    x = g.input('residual', ['batch', T, d]);
  } else {
    pixels = g.input('pixels', ['batch', spec.channels, imageSize[0], imageSize[1]]);
    const p = spec.patchSize;
    const pe = spec.patchEmbed;
    if (numel(pe.weight.shape) !== d * spec.channels * p * p) {
      throw new Error(`${spec.modelId}: patch embedding has shape [${pe.weight.shape}], expected ${d}x${spec.channels}x${p}x${p}`);
    }
    const convInputs = [pixels, await param('patchEmbed.weight', [d, spec.channels, p, p], pe.weight, pe.weight.shape, id)];
    if (pe.bias) convInputs.push(await param('patchEmbed.bias', [d], pe.bias, [d], id));
    const conv = g.op('Conv', convInputs, { kernel_shape: [p, p], strides: [p, p] }, { name: 'patch_embed' });
    flops += 2 * layout.patches * d * spec.channels * p * p;
    let patches = g.transpose(g.reshape(conv, [0, d, -1]), [0, 2, 1], 'patches'); // [N, P, d]

    // Position embedding: rows [0, special) belong to the first special tokens, the rest to patches.
    let posSpecial: Float32Array | undefined;
    if (spec.posEmbed) {
      const pos = await load('posEmbed.weight', spec.posEmbed.weight);
      const ns = spec.posEmbed.special;
      const [ph, pw] = spec.posEmbed.grid;
      if (pos.length !== (ns + ph * pw) * d) {
        throw new Error(`${spec.modelId}: position embedding has ${pos.length / d} rows, expected ${ns} + ${ph}x${pw}`);
      }
      if (ns > nS) throw new Error(`${spec.modelId}: position embedding has ${ns} special rows but only ${nS} special tokens`);
      posSpecial = pos.subarray(0, ns * d);
      let posPatch: Float32Array = pos.subarray(ns * d);
      if (ph !== gh || pw !== gw) {
        const mode = posInterpolation(spec.family);
        posPatch = Float32Array.from(resizeGridF64(posPatch, ph, pw, d, gh, gw, mode));
      }
      patches = g.add(patches, g.init('posEmbed.patches', [layout.patches, d], Float32Array.from(posPatch)), 'patches_pos');
    }

    x = patches;
    if (nS > 0) {
      const special = new Float32Array(nS * d);
      const cls = spec.clsToken && (await load('clsToken', spec.clsToken));
      const dist = spec.distToken && (await load('distToken', spec.distToken));
      const regs = spec.registerTokens && (await load('registerTokens', spec.registerTokens));
      const nReg = registerCount(spec);
      let r = 0;
      layout.special.forEach((t, i) => {
        let src: Float32Array | undefined;
        if (t === 'cls') src = cls;
        else if (t === 'dist') src = dist;
        else if (t === 'reg' && regs) {
          const ri = r++ % nReg;
          src = regs.subarray(ri * d, ri * d + d);
        }
        if (!src || src.length < d) throw new Error(`${spec.modelId}: special token '${t}' has no weight`);
        for (let c = 0; c < d; c++) special[i * d + c] = src[c] + (posSpecial && i * d < posSpecial.length ? posSpecial[i * d + c] : 0);
      });
      const sInit = g.init('specialTokens', [1, nS, d], special);
      const batch = g.slice(g.op('Shape', [pixels]), 0, 0, 1, 'batch_dim');
      const shape = g.op('Concat', [batch, g.ints([nS, d])], { axis: 0 }, { name: 'special_shape' });
      const sp = g.op('Expand', [sInit, shape], {}, { name: 'special' });
      x = g.op('Concat', [sp, patches], { axis: 1 }, { name: 'tokens' });
    }
    if (spec.preNorm) x = await norm(x, spec.preNorm, 'preNorm', d);
    embeddings = x;
  }

  // ---- blocks ------------------------------------------------------------------------
  const skipped = () => Array<string>(start).fill('');
  const tensors: VitTensors = { input: start > 0 ? x : pixels, pixels, embeddings, residual: skipped(), ln: skipped(), attention: skipped(), fused: Array<boolean>(start).fill(false), final: '', layout };
  const invSqrt = 1 / Math.sqrt(dh);
  const rows = T; // per image
  // Blocks whose attention runs as onnxruntime's fused `Attention` kernel (see VitGraphOptions.unfused).
  const plain = new Set([...resolveLayers(opts.unfused ?? (opts.extend ? 'all' : undefined), L, 'unfused'), ...sel.attention]);
  for (const k of overridable) {
    const m = /^blocks\.(\d+)\./.exec(k);
    if (m) plain.add(Number(m[1]));
  }
  const separateQk = new Set(resolveLayers(opts.qkProjections, L, 'qkProjections'));
  for (let l = start; l < spec.blocks.length; l++) {
    const b = spec.blocks[l];
    const key = `blocks.${l}`;
    tensors.residual.push(x);
    const ln = await norm(x, b.norm1, `${key}.norm1`, d);
    tensors.ln.push(ln);
    let ctx: string;
    if (!plain.has(l) && separateQk.has(l)) {
      // q/k/v as three MatMuls (q pre-scaled by 1/√d_h, as in the plain block), biases and the
      // relative position bias given to the kernel: the same numbers as `Attention`, with the
      // pre-bias projections left in the graph for an `extend` to read.
      const hd = H * dh;
      const lins = [b.q, b.k, b.v];
      const proj = await Promise.all(lins.map((lin, i) => linear(ln, lin, `${key}.${'qkv'[i]}`, rows, i === 0 ? invSqrt : 1, false)));
      const biases = async () => packBias(await Promise.all(lins.map(async (lin, i) => (lin.bias ? scaled(await load(`${key}.${'qkv'[i]}.bias`, lin.bias), i === 0 ? invSqrt : 1) : null))), hd);
      const inputs = [proj[0].y, proj[1].y, proj[2].y, g.init(`${key}.qkv.bias`, [3 * hd], biases)];
      if (b.relPosBias) inputs.push('', g.init(`${key}.relPosBias`, [1, H, T, T], await relPosBias(spec, b.relPosBias, layout)));
      ctx = g.op('MultiHeadAttention', inputs, { num_heads: H, scale: { f: 1 } }, { domain: MS_DOMAIN, name: `${key}_attention` });
      flops += 2 * 2 * H * T * T * dh;
      tensors.attention.push('');
      tensors.fused.push(true);
    } else if (!plain.has(l)) {
      // One kernel for q/k/v (a single [d, 3·H·d_h] projection, unscaled: the op scales q·k by
      // 1/√d_h), the scores with the relative position bias, Softmax and the weighted sum:
      // ~15 % less CPU than the separate nodes for this part, and no [N, H, T, T] tensor.
      const lins = [b.q, b.k, b.v];
      const hd = H * dh;
      const inputs = [ln, g.init(`${key}.qkv.weight`, [d, 3 * hd], async () => packQkv(await Promise.all(lins.map((lin, i) => load(`${key}.${'qkv'[i]}.weight`, lin.weight))), d, hd, scratch(3 * d * hd)))];
      // Always a bias (zeros where q/k/v have none): onnxruntime 1.30's CPU Attention crashes (SIGSEGV) without one.
      inputs.push(g.init(`${key}.qkv.bias`, [3 * hd], async () => packBias(await Promise.all(lins.map((lin, i) => (lin.bias ? load(`${key}.${'qkv'[i]}.bias`, lin.bias) : null))), hd)));
      if (b.relPosBias) inputs.push('', '', g.init(`${key}.relPosBias`, [1, H, T, T], await relPosBias(spec, b.relPosBias, layout)));
      ctx = g.op('Attention', inputs, { num_heads: H, scale: { f: invSqrt } }, { domain: MS_DOMAIN, name: `${key}_attention` });
      flops += 2 * rows * d * 3 * hd + 2 * 2 * H * T * T * dh;
      tensors.attention.push('');
      tensors.fused.push(true);
    } else {
      const q = await linear(ln, b.q, `${key}.q`, rows, invSqrt);
      const k = await linear(ln, b.k, `${key}.k`, rows);
      const v = await linear(ln, b.v, `${key}.v`, rows);
      const qh = g.transpose(g.reshape(q.y, [0, 0, H, dh]), [0, 2, 1, 3], `${key}_qh`); // [N,H,T,dh]
      const kh = g.transpose(g.reshape(k.y, [0, 0, H, dh]), [0, 2, 3, 1], `${key}_kh`); // [N,H,dh,T]
      const vh = g.transpose(g.reshape(v.y, [0, 0, H, dh]), [0, 2, 1, 3], `${key}_vh`); // [N,H,T,dh]
      let scores = g.matmul(qh, kh, `${key}_scores`);
      flops += 2 * 2 * H * T * T * dh;
      if (b.relPosBias) scores = g.add(scores, g.init(`${key}.relPosBias`, [H, T, T], await relPosBias(spec, b.relPosBias, layout)));
      const attn = g.op('Softmax', [scores], { axis: -1 }, { name: `${key}_attention` });
      tensors.attention.push(attn);
      tensors.fused.push(false);
      ctx = g.reshape(g.transpose(g.matmul(attn, vh, `${key}_ctx`), [0, 2, 1, 3]), [0, 0, H * dh]);
    }
    let a = (await linear(ctx, b.o, `${key}.o`, rows)).y;
    if (b.ls1) a = g.mul(a, await param(`${key}.ls1`, [d], b.ls1, [d], id));
    x = g.add(x, a, `${key}_resid_attn`);
    const ln2 = await norm(x, b.norm2, `${key}.norm2`, d);
    let m: string;
    if (b.mlp.kind === 'mlp') {
      const h1 = await linear(ln2, b.mlp.fc1, `${key}.fc1`, rows);
      m = (await linear(activation(h1.y, spec.activation), b.mlp.fc2, `${key}.fc2`, rows)).y;
    } else {
      const h12 = await linear(ln2, b.mlp.w12, `${key}.w12`, rows);
      const half = h12.out / 2;
      const [x1, x2] = g.opN('Split', [h12.y, g.ints([half, half])], 2, { axis: -1 }, { name: `${key}_swiglu_split` });
      m = (await linear(g.mul(g.mul(x1, g.op('Sigmoid', [x1])), x2), b.mlp.w3, `${key}.w3`, rows)).y;
    }
    if (b.ls2) m = g.mul(m, await param(`${key}.ls2`, [d], b.ls2, [d], id));
    x = g.add(x, m, `${key}_out`);
  }

  // ---- head --------------------------------------------------------------------------
  const final = spec.finalNorm ? await norm(x, spec.finalNorm, 'finalNorm', d) : x;
  tensors.final = final;
  const tokenAt = (i: number, name: string) => g.op('Gather', [final, g.ints([i], [])], { axis: 1 }, { name });
  const patchMean = () => g.reduceMean(g.slice(final, 1, nS, T), [1], false, 'patch_mean');
  /**
   * The attention-pooling head (spec.ts `AttnPoolSpec`): the probe's query, the same for every
   * image, broadcasts against each image's keys: [1, Hp, 1, dhp] x [N, Hp, dhp, T] -> [N, Hp, 1, T].
   */
  const attentionPool = async (tokens: string, ap: NonNullable<VitSpec['attnPool']>): Promise<string> => {
    const Hp = ap.heads;
    const dhp = d / Hp;
    const probe = await param('attnPool.probe', [1, 1, d], ap.probe, [d], id);
    const q = (await linear(probe, ap.q, 'attnPool.q', 1, 1 / Math.sqrt(dhp))).y;
    const k = (await linear(tokens, ap.k, 'attnPool.k', T)).y;
    const v = (await linear(tokens, ap.v, 'attnPool.v', T)).y;
    const qh = g.transpose(g.reshape(q, [1, 1, Hp, dhp]), [0, 2, 1, 3], 'attnPool_qh');
    const kh = g.transpose(g.reshape(k, [0, 0, Hp, dhp]), [0, 2, 3, 1], 'attnPool_kh');
    const vh = g.transpose(g.reshape(v, [0, 0, Hp, dhp]), [0, 2, 1, 3], 'attnPool_vh');
    const attn = g.op('Softmax', [g.matmul(qh, kh, 'attnPool_scores')], { axis: -1 }, { name: 'attnPool_attention' });
    flops += 2 * 2 * Hp * T * dhp;
    const ctx = g.reshape(g.transpose(g.matmul(attn, vh, 'attnPool_ctx'), [0, 2, 1, 3]), [0, 0, d]);
    const a = (await linear(ctx, ap.o, 'attnPool.o', 1)).y; // [N, 1, d]
    const h1 = await linear(await norm(a, ap.norm, 'attnPool.norm', d), ap.fc1, 'attnPool.fc1', 1);
    const m = (await linear(activation(h1.y, spec.activation), ap.fc2, 'attnPool.fc2', 1)).y;
    return g.reshape(g.add(a, m, 'attnPool_out'), [0, d], 'attn_pooled'); // [N, d]
  };
  // The pooling the adapter declared (spec.ts `Pooling`); 'none' still exposes CLS / patch-mean features.
  let pooled: string;
  const headIn = pooledWidth(spec);
  if (spec.pooling === 'cls' || spec.pooling === 'cls+mean') {
    if (layout.cls === null) throw new Error(`${spec.modelId}: pooling '${spec.pooling}' without a CLS token`);
    pooled = tokenAt(layout.cls, 'cls_token');
    // DINOv2's classifiers read [CLS, mean of the patch tokens] (registers excluded: patches start at nS).
    if (spec.pooling === 'cls+mean') pooled = g.op('Concat', [pooled, patchMean()], { axis: 1 }, { name: 'cls_mean' });
  } else if (spec.pooling === 'mean') {
    pooled = patchMean();
  } else if (spec.pooling === 'attention') {
    if (!spec.attnPool) throw new Error(`${spec.modelId}: pooling 'attention' without an attention-pooling head`);
    pooled = await attentionPool(final, spec.attnPool);
  } else {
    pooled = layout.cls !== null ? tokenAt(layout.cls, 'cls_token') : patchMean();
  }
  if (spec.fcNorm) pooled = await norm(pooled, spec.fcNorm, 'fcNorm', headIn);
  tensors.features = pooled;
  const outWidth = logitsWidth(spec);
  if (outWidth !== null) {
    // A classifier after the pooling, or the attention-pooled embedding itself (SigLIP).
    let logits = spec.head ? (await linear(pooled, spec.head, 'head', 1)).y : pooled;
    if (spec.distHead) {
      if (layout.dist === null) throw new Error(`${spec.modelId}: distillation head without a distillation token`);
      const dl = (await linear(tokenAt(layout.dist, 'dist_token'), spec.distHead, 'distHead', 1)).y;
      logits = g.mul(g.add(logits, dl), g.floats([0.5], []), 'logits_mean');
    }
    tensors.logits = logits;
  }

  // ---- outputs -----------------------------------------------------------------------
  const outputDims = new Map<string, (number | string)[]>();
  for (const l of sel.ln) outputDims.set(g.output(`ln.${l}`, tensors.ln[l]), ['batch', T, d]);
  for (const l of sel.residual) outputDims.set(g.output(`residual.${l}`, tensors.residual[l]), ['batch', T, d]);
  for (const l of sel.attention) outputDims.set(g.output(`attention.${l}`, tensors.attention[l]), ['batch', H, T, T]);
  if (opts.outputs.logits && tensors.logits) outputDims.set(g.output('logits', tensors.logits), ['batch', outWidth!]);
  if (opts.outputs.features && tensors.features) outputDims.set(g.output('features', tensors.features), ['batch', headIn]);
  if (opts.outputs.final) outputDims.set(g.output('final', tensors.final), ['batch', T, d]);
  const before = g.outputs.length;
  opts.extend?.(g, tensors);
  const extraOutputs = g.outputs.slice(before).map((o) => o.name!);
  g.prune(); // only what the outputs need runs (an early layer's outputs stop the model there)
  if (g.outputs.length === 0) throw new UserError('nothing to compute: ask for at least one output (ln, residual, attention, logits, features)');
  const input = start > 0 ? { name: 'residual' as const, dims: [T, d] } : { name: 'pixels' as const, dims: [spec.channels, imageSize[0], imageSize[1]] };
  return { graph: g, tensors, layout, input, startLayer: start, outputDims, layers: sel, params, extraOutputs, flopsPerImage: flops };
}

/** q, k, v weights (canonical [hd, d] each) packed as the Attention op's [d, 3·hd] (columns q | k | v). */
function packQkv(w: Float32Array[], d: number, hd: number, into?: Float32Array): Float32Array {
  const out = into ?? new Float32Array(d * 3 * hd);
  w.forEach((m, s) => {
    for (let o = 0; o < hd; o++) for (let i = 0; i < d; i++) out[i * 3 * hd + s * hd + o] = m[o * d + i];
  });
  return out;
}

/** q, k, v biases packed as [3·hd] (zeros for a projection without bias, e.g. BEiT's k). */
function packBias(b: (Float32Array | null)[], hd: number): Float32Array {
  const out = new Float32Array(3 * hd);
  b.forEach((v, s) => v && out.set(v.subarray(0, hd), s * hd));
  return out;
}

/**
 * BEiT's relative position bias for the current layout, gathered to [H, T, T]. Index
 * (query i, key j): patches use (Δrow + Wh−1)(2Ww−1) + (Δcol + Ww−1); CLS→token n−3,
 * token→CLS n−2, CLS→CLS n−1 (n = table rows).
 */
/** BEiT's relative position bias of every head for `layout`, [H, T, T] (the runtime's and runtime/taps.ts's one indexing). */
export async function relPosBias(spec: VitSpec, rp: NonNullable<VitSpec['blocks'][number]['relPosBias']>, layout: TokenLayout): Promise<Float32Array> {
  const [wh, ww] = rp.window;
  if (wh !== layout.grid[0] || ww !== layout.grid[1]) {
    throw new UserError(
      `${spec.modelId}: relative position bias was built for a ${wh}x${ww} patch grid; run at ${wh * spec.patchSize}x${ww * spec.patchSize} (interpolating BEiT's bias table is not supported)`,
    );
  }
  if (layout.patchStart > 1) throw new Error(`${spec.modelId}: relative position bias with more than one special token`);
  const table = toF32(await loadWeight(rp.table));
  const H = spec.heads;
  const n = table.length / H;
  if (n !== (2 * wh - 1) * (2 * ww - 1) + 3) throw new Error(`${spec.modelId}: relative position table has ${n} rows, expected ${(2 * wh - 1) * (2 * ww - 1) + 3}`);
  const T = layout.tokens;
  const s = layout.patchStart; // 0 or 1
  const out = new Float32Array(H * T * T);
  for (let i = 0; i < T; i++) {
    for (let j = 0; j < T; j++) {
      let idx: number;
      if (s === 1 && i === 0 && j === 0) idx = n - 1;
      else if (s === 1 && i === 0) idx = n - 3;
      else if (s === 1 && j === 0) idx = n - 2;
      else {
        const pi = i - s;
        const pj = j - s;
        const dr = Math.floor(pi / ww) - Math.floor(pj / ww) + wh - 1;
        const dc = (pi % ww) - (pj % ww) + ww - 1;
        idx = dr * (2 * ww - 1) + dc;
      }
      for (let h = 0; h < H; h++) out[(h * T + i) * T + j] = table[idx * H + h];
    }
  }
  return out;
}
