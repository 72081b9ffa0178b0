import type { FloatArray, TensorSource } from '../checkpoint/types.js';
import { UserError } from '../errors.js';

/**
 * A lazy reference to (part of) a checkpoint tensor. `rows` selects a row range of the
 * leading dimension (how fused qkv weights are split); `transposed` marks weights stored as
 * [in, out] (GPT-2 Conv1D) that must be transposed to the canonical [out, in].
 * `shape` is the canonical shape after slicing and transposing.
 */
export interface WeightRef {
  source: TensorSource;
  name: string;
  rows?: [number, number];
  transposed?: boolean;
  shape: number[];
}

/** A PyTorch-convention linear layer: y = W x + b with W of shape [out, in]. */
export interface LinearSpec {
  weight: WeightRef;
  bias?: WeightRef;
}

/**
 * LayerNorm, or RMSNorm (LLaMA-style text models: no mean subtraction, no bias), or 'identity':
 * no normalisation at all (block 0 of a post-norm encoder sees its raw input; weight analysis only).
 */
export interface NormSpec {
  kind: 'layernorm' | 'rmsnorm' | 'identity';
  weight?: WeightRef;
  bias?: WeightRef;
  eps: number;
}

export type Activation = 'gelu' | 'gelu_tanh' | 'quick_gelu' | 'relu' | 'silu';

/** BEiT-style relative position bias: table [(2Wh-1)(2Ww-1)+3, H] indexed per token pair. */
export interface RelPosBiasSpec {
  table: WeightRef;
  /** Patch grid the table was built for. The index is derived from it (BEiT's formula). */
  window: [number, number];
}

export interface BlockSpec {
  norm1: NormSpec;
  /**
   * q, k, v, o: weights [d, d] (q/k/v rows grouped by head: head h owns rows h*d_h..). Text
   * models with grouped-query attention have k, v of [kvHeads * d_h, d] and, where d_h * heads
   * differs from d, q of [heads * d_h, d] and o of [d, heads * d_h].
   */
  q: LinearSpec;
  k: LinearSpec;
  v: LinearSpec;
  o: LinearSpec;
  /** Layer-scale vectors (DINOv2, BEiT, timm `ls1/ls2`), multiplied on the branch outputs. */
  ls1?: WeightRef;
  ls2?: WeightRef;
  norm2: NormSpec;
  /**
   * MLP. SwiGLU: `w12` packs [x1; x2] (DINOv2 `weights_in`), hidden = silu(x1) * x2, then `w3`.
   * Text models with separate projections (LLaMA `gate_proj`/`up_proj`) set `up`: then `w12` is
   * the gate alone and hidden = silu(w12 x) * (up x). (Text specs are for weight analysis only.)
   */
  mlp: { kind: 'mlp'; fc1: LinearSpec; fc2: LinearSpec } | { kind: 'swiglu'; w12: LinearSpec; w3: LinearSpec; up?: LinearSpec };
  relPosBias?: RelPosBiasSpec;
}

export type SpecialToken = 'cls' | 'dist' | 'reg';

export type Pooling = 'cls' | 'mean' | 'cls+mean' | 'attention' | 'none';

/**
 * A multi-head attention-pooling head (transformers' `SiglipMultiheadAttentionPoolingHead`,
 * timm's `AttentionPoolLatent`): a learned probe [1, d] attends (`heads` heads, nn.MultiheadAttention
 * maths: q from the probe, k and v from every final token, softmax(q kᵀ/√d_h) v, then `o`), and
 * y = a + MLP(norm(a)) with the model's activation; the pooled embedding is y [d].
 */
export interface AttnPoolSpec {
  probe: WeightRef;
  heads: number;
  q: LinearSpec;
  k: LinearSpec;
  v: LinearSpec;
  o: LinearSpec;
  norm: NormSpec;
  fc1: LinearSpec;
  fc2: LinearSpec;
}

export interface PreprocessSpec {
  /**
   * 'shortest' resizes the short side to `resize` then centre-crops `crop`; 'exact' resizes to
   * `resize` x `resize` ignoring the aspect ratio, then centre-crops `crop` (a no-op when equal;
   * DeiT's processor resizes to 256 x 256 and crops 224).
   */
  resizeMode: 'shortest' | 'exact';
  resize: number;
  crop: [number, number];
  resample: 'bicubic' | 'bilinear' | 'nearest' | 'lanczos';
  /** Multiplier applied to 0..255 values before normalising (1/255 normally). */
  rescale: number;
  mean: [number, number, number];
  std: [number, number, number];
}

/**
 * The canonical description of a ViT-like model: no framework names beyond this point.
 * Token order is `tokenLayout` followed by the patch tokens in raster order.
 */
export interface VitSpec {
  /** Family key of the adapter that produced it (e.g. 'hf-vit', 'timm-vit'). */
  family: string;
  /** Where it came from: a path or a hub id. */
  modelId: string;
  /** The modality: 'vision' for ViTs; text transformers reuse the weight analysis only. */
  modality: 'vision' | 'text';
  /**
   * The input resolution images are fed at (the preprocessing crop). When imageSize / patchSize
   * differs from `posEmbed.grid` the patch rows of the position embedding are resized (bicubic),
   * as HF does for DINOv2 (grid 37 for 518 px, run at 224 px); a note says so.
   */
  imageSize: [number, number];
  patchSize: number;
  channels: number;
  width: number;
  heads: number;
  headDim: number;
  /** Key/value heads (grouped-query attention); equals `heads` for ViTs. */
  kvHeads: number;
  layers: number;
  /** Special tokens in order before the patches. */
  tokenLayout: SpecialToken[];
  patchEmbed?: LinearSpec & { kind: 'conv' };
  clsToken?: WeightRef;
  distToken?: WeightRef;
  registerTokens?: WeightRef;
  /**
   * Absolute position embedding [n, d] with its patch grid; `special` says how many leading
   * rows belong to special tokens (0 for timm `no_embed_class`, SigLIP, I-JEPA). Those rows go
   * to the first `special` tokens of `tokenLayout`; later special tokens get no position
   * embedding (DINOv2 registers: special = 1 for CLS, registers inserted after).
   */
  posEmbed?: { weight: WeightRef; grid: [number, number]; special: number };
  /**
   * Models fed token embeddings instead of pixels (the I-JEPA predictor): a linear map from the
   * incoming width to `width` (`predictor_embed`), the learned mask token added at predicted
   * positions, and the per-token output map back (`predictor_proj`). No `patchEmbed` then.
   */
  inputProj?: LinearSpec;
  maskToken?: WeightRef;
  outputProj?: LinearSpec;
  /** Pre-blocks LayerNorm (CLIP's `pre_layrnorm`, timm `norm_pre`). */
  preNorm?: NormSpec;
  blocks: BlockSpec[];
  finalNorm?: NormSpec;
  /**
   * What the classifier / embedding head reads, declared by the adapter (all after `finalNorm`):
   * 'cls' token; 'mean' over the patch tokens (special tokens and registers excluded), then
   * `fcNorm` if any; 'cls+mean' the concatenation [CLS, mean of patch tokens] (DINOv2's
   * classifier, 2d wide; registers excluded as transformers >= 4.52 does); 'attention' the
   * multi-head attention-pooling head `attnPool` over all tokens (SigLIP, timm MAP), whose output
   * is the embedding itself (logits.npy) unless a `head` follows; 'none' no head.
   */
  pooling: Pooling;
  fcNorm?: NormSpec;
  head?: LinearSpec;
  /** The attention-pooling head when `pooling` is 'attention'. */
  attnPool?: AttnPoolSpec;
  /** DeiT distilled: the distillation head; logits are the mean of both heads. */
  distHead?: LinearSpec;
  activation: Activation;
  preprocess?: PreprocessSpec;
  /**
   * Post-norm text encoders (BERT, RoBERTa): each block's `norm1` is the LayerNorm that produced
   * its input (the embeddings LayerNorm for block 0, the previous block's output LayerNorm
   * otherwise) and `norm2` the attention-output LayerNorm, so `norm1` still describes what the
   * attention sees; the residual structure differs from pre-norm. Weight analysis only.
   */
  postNorm?: boolean;
  /**
   * Why the forward pass cannot be built from this spec although it is a vision model (a layout
   * without a patch embedding, a CNN stem): `embed` and the other image commands say this.
   */
  noForward?: string;
  /** Free-form notes the adapter wants in the summary (e.g. "predictor of I-JEPA"). */
  notes?: string[];
  /**
   * The user passed --allow-nonfinite: `loadWeight` lets NaN/Inf through (instead of refusing the
   * tensor) and jobs mark what they touched (svd: `nonfinite` heads). Set by `loadSpec`.
   */
  allowNonFinite?: boolean;
}

/**
 * Loads a WeightRef to a float32 (or float64) array in canonical shape. For a transposed ref,
 * `rows` are canonical rows, i.e. columns of the stored [in, out] tensor (GPT-2's fused
 * c_attn), so the stored tensor is read whole and sliced here.
 */
export async function loadWeight(ref: WeightRef): Promise<FloatArray> {
  const data = await readWeight(ref);
  // Every weight the analysis and the graph builder use passes here: refuse NaN/Inf once, by name.
  if (!ref.source.allowNonFinite) checkFinite(ref, data);
  return data;
}

/**
 * `loadWeight` into `into` where the source can (float32 storage, rows as stored): a caller
 * that reads the same-sized weights over and over (the analysis, layer after layer) reuses one
 * buffer instead of fresh memory each time. Otherwise exactly `loadWeight` (a new array).
 */
export async function loadWeightInto(ref: WeightRef, into: Float32Array): Promise<FloatArray> {
  const rows = ref.rows ?? (ref.shape.length ? [0, ref.source.info(ref.name)?.shape[0] ?? -1] : null);
  if (!ref.transposed && ref.source.readInto && rows && rows[1] >= 0) {
    const data = await ref.source.readInto(ref.name, rows[0], rows[1], into);
    if (data) {
      if (!ref.source.allowNonFinite) checkFinite(ref, data);
      return data;
    }
  }
  return loadWeight(ref);
}

function checkFinite(ref: WeightRef, data: FloatArray): void {
  let bad = 0;
  if (data instanceof Float32Array) {
    // Integer test of the exponent bits (all ones: NaN or ±Inf), a third of the float test's time.
    const u = new Uint32Array(data.buffer, data.byteOffset, data.length);
    for (let i = 0; i < u.length; i++) if ((u[i] & 0x7f800000) === 0x7f800000) bad++;
  } else for (let i = 0; i < data.length; i++) if (data[i] - data[i] !== 0) bad++; // NaN and ±Inf only
  if (bad === 0) return;
  const part = ref.rows ? ` (rows ${ref.rows[0]}..${ref.rows[1] - 1})` : '';
  throw new UserError(
    `${ref.source.location}: tensor ${ref.name}${part} has ${bad} non-finite value${bad === 1 ? '' : 's'} (NaN or ±Inf) among ${data.length}; ` +
      'the checkpoint is damaged (a diverged training run?), re-download it, or pass --allow-nonfinite to analyse it anyway',
  );
}

async function readWeight(ref: WeightRef): Promise<FloatArray> {
  if (!ref.transposed) {
    const [r0, r1] = ref.rows ?? [undefined, undefined];
    return ref.source.read(ref.name, r0, r1);
  }
  const data = await ref.source.read(ref.name);
  const info = ref.source.info(ref.name);
  const storedCols = info ? info.shape[info.shape.length - 1] : ref.shape[0];
  const inn = data.length / storedCols;
  const [r0, r1] = ref.rows ?? [0, storedCols];
  const out = r1 - r0;
  const t = data instanceof Float64Array ? new Float64Array(out * inn) : new Float32Array(out * inn);
  for (let i = 0; i < inn; i++) {
    const rowOff = i * storedCols + r0;
    for (let o = 0; o < out; o++) t[o * inn + i] = data[rowOff + o];
  }
  return t;
}
