import type { Adapter, BuildInput, Json } from '../adapter.js';
import { activation, agree, buildBlocks, checkConfig, HEADS_DIVIDE, configFile, finishSpec, HF_VISION_RULES, notesFor, num, obj, pair, posGrid, resolveHeads, str, Weights } from '../adapter.js';
import { CLIP_MEAN, CLIP_STD, defaultPreprocess, fromHfPreprocessor } from '../preprocess.js';
import type { AttnPoolSpec, LinearSpec, PreprocessSpec, VitSpec } from '../spec.js';
import { patchEmbed } from './hf-vit-common.js';

/** The CLIP-style encoder layer naming shared by CLIP and SigLIP vision towers. */
export const CLIP_BLOCK = {
  norm1: 'layer_norm1',
  norm2: 'layer_norm2',
  q: 'self_attn.q_proj',
  k: 'self_attn.k_proj',
  v: 'self_attn.v_proj',
  o: 'self_attn.out_proj',
  fc1: 'mlp.fc1',
  fc2: 'mlp.fc2',
};

/**
 * The vision config of a CLIP/SigLIP checkpoint with HF's vision-config defaults filled in:
 * full models nest it under `vision_config` (old openai configs also carry `vision_config_dict`,
 * which wins, as in transformers); `*_vision_model` configs are flat.
 */
export function visionConfig(cfg: Json | null, defaults: Json): Json {
  if (!cfg) return { ...defaults };
  const nested = obj(cfg.vision_config);
  const dict = obj(cfg.vision_config_dict);
  if (nested || dict) return { ...defaults, ...(nested ?? {}), ...(dict ?? {}) };
  return { ...defaults, ...cfg };
}

/** Checks the numbers of the vision config where they are written (a nested dict wins over vision_config, as in visionConfig). */
function checkVisionConfig(input: BuildInput): void {
  const cfg = input.config;
  const nested = obj(cfg?.vision_config);
  const dict = obj(cfg?.vision_config_dict);
  const file = configFile(input);
  const divides = [HEADS_DIVIDE('hidden_size', 'num_attention_heads')];
  if (!nested && !dict) return checkConfig(cfg, file, HF_VISION_RULES, divides);
  if (dict) checkConfig(dict, file, HF_VISION_RULES, [], 'vision_config_dict.');
  if (nested) checkConfig(Object.fromEntries(Object.entries(nested).filter(([k]) => dict?.[k] === undefined)), file, HF_VISION_RULES, [], 'vision_config.');
  checkConfig({ ...nested, ...dict }, file, {}, divides, dict ? 'vision_config_dict.' : 'vision_config.');
}

export interface ClipLikeFamily {
  family: string;
  defaults: Json;
  cls: boolean;
  preNorm: boolean;
  /** Whether the patch convolution has a bias (SigLIP yes, CLIP no). */
  patchBias: boolean;
  pooling: VitSpec['pooling'];
  projection?: string;
  /** Attention-pooling head under the vision tower (SigLIP `head`), used when its tensors are there. */
  attnPool?: string;
  preprocess: (image: [number, number]) => PreprocessSpec;
  notes: string[];
}

export function buildClipLike(input: BuildInput, fam: ClipLikeFamily): VitSpec {
  const vc = visionConfig(input.config, fam.defaults);
  checkVisionConfig(input);
  const notes = [...fam.notes];
  const root = new Weights(input.source);
  const w = root.sub('vision_model.');
  const { d, channels, patch, embed } = patchEmbed(w, 'embeddings.patch_embedding', vc, fam.patchBias ? 'optional' : 'none');
  const heads = resolveHeads(input, num(vc, 'num_attention_heads'), d, notes, w.file);
  const eps = num(vc, 'layer_norm_eps')!;
  const layers = w.countLayers('encoder.layers.');
  if (layers === 0) throw w.missing('encoder.layers.0.self_attn.q_proj.weight');
  agree(w, 'vision num_hidden_layers', num(vc, 'num_hidden_layers'), layers, `encoder.layers.${layers - 1}.*`);

  const configImage = pair(vc.image_size)!;
  const pe = w.info('embeddings.position_embedding.weight');
  const rows = pe.shape[0];
  const { grid, special } = posGrid(w, 'embeddings.position_embedding.weight', rows, [fam.cls ? 1 : 0], [Math.floor(configImage[0] / patch), Math.floor(configImage[1] / patch)]);
  const blocks = buildBlocks(w, 'encoder.layers.', layers, CLIP_BLOCK, { d, heads, eps });
  const head = fam.projection && root.has(`${fam.projection}.weight`) ? root.linearAny(fam.projection, d, 'none') : undefined;
  const useHead = vc.vision_use_head !== false;
  const attnPool = fam.attnPool && useHead && w.has(`${fam.attnPool}.probe`) ? attentionPoolHead(w, fam.attnPool, d, heads, eps) : undefined;
  if (attnPool) notes.push(`logits.npy holds the image embedding of the attention-pooling head (vision_model.${fam.attnPool}; transformers' pooler_output)`);
  else if (fam.attnPool) notes.push('no attention-pooling head in the checkpoint (or vision_use_head is false): no image embedding');
  const preprocess = fromHfPreprocessor(input.preprocessorConfig, fam.preprocess(configImage), input.preprocessorFile);
  const spec = {
    family: fam.family,
    modelId: input.modelId,
    modality: 'vision' as const,
    imageSize: preprocess.crop,
    patchSize: patch,
    channels,
    width: d,
    heads,
    tokenLayout: fam.cls ? ['cls' as const] : [],
    patchEmbed: embed,
    ...(fam.cls ? { clsToken: w.ref('embeddings.class_embedding', [d]) } : {}),
    posEmbed: { weight: w.ref('embeddings.position_embedding.weight', [rows, d]), grid, special },
    ...(fam.preNorm ? { preNorm: w.norm('pre_layrnorm', d, eps) } : {}),
    blocks,
    finalNorm: w.norm('post_layernorm', d, eps),
    pooling: attnPool ? ('attention' as const) : fam.pooling,
    ...(head ? { head } : {}),
    ...(attnPool ? { attnPool } : {}),
    activation: activation(str(vc, 'hidden_act'), 'gelu', w.file),
    preprocess,
    notes,
  };
  notesFor(spec, notes);
  return finishSpec(spec);
}

/**
 * transformers' `SiglipMultiheadAttentionPoolingHead` under `base`: `probe` [1, 1, d], an
 * nn.MultiheadAttention (`attention.in_proj_weight` [3d, d] split q, k, v; `in_proj_bias`;
 * `attention.out_proj`), `layernorm`, `mlp.fc1` / `mlp.fc2`; as many heads as the encoder.
 */
export function attentionPoolHead(w: Weights, base: string, d: number, heads: number, eps: number): AttnPoolSpec {
  const h = w.sub(`${base}.`);
  h.ref('attention.in_proj_weight', [3 * d, d], `nn.MultiheadAttention in-projection [q; k; v] for width ${d}`);
  const hasBias = h.has('attention.in_proj_bias');
  if (hasBias) h.ref('attention.in_proj_bias', [3 * d]);
  const part = (i: number): LinearSpec => ({
    weight: h.rows('attention.in_proj_weight', i * d, (i + 1) * d, [d]),
    ...(hasBias ? { bias: h.rows('attention.in_proj_bias', i * d, (i + 1) * d, []) } : {}),
  });
  const fc1 = h.linearAny('mlp.fc1', d);
  return {
    probe: h.ref('probe', [d], 'attention-pooling probe [1, 1, d]'),
    heads,
    q: part(0),
    k: part(1),
    v: part(2),
    o: h.linear('attention.out_proj', d, d),
    norm: h.norm('layernorm', d, eps),
    fc1,
    fc2: h.linear('mlp.fc2', d, fc1.weight.shape[0]),
  };
}

/** HF CLIPVisionConfig defaults (old openai configs omit some of these). */
export const CLIP_VISION_DEFAULTS: Json = {
  hidden_size: 768,
  intermediate_size: 3072,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  num_channels: 3,
  image_size: 224,
  patch_size: 32,
  hidden_act: 'quick_gelu',
  layer_norm_eps: 1e-5,
};

const clipFamily = (family: string): ClipLikeFamily => ({
  family,
  defaults: CLIP_VISION_DEFAULTS,
  cls: true,
  preNorm: true,
  patchBias: false,
  pooling: 'cls',
  projection: 'visual_projection',
  preprocess: (image) => defaultPreprocess(image, { mean: CLIP_MEAN, std: CLIP_STD, resample: 'bicubic', resizeShort: image[0] }),
  notes: ['CLIP applies post_layernorm to the pooled CLS token only; the head is visual_projection (no bias)'],
});

/**
 * CLIP vision towers: full CLIPModel (`model_type` clip, `vision_config`; the text tower and
 * `text_projection` are ignored) and CLIPVisionModel(WithProjection) (`clip_vision_model`).
 * Tensors under `vision_model.`: `embeddings.class_embedding` [d], `patch_embedding` (no bias),
 * `position_embedding`, `pre_layrnorm` (sic), `encoder.layers.{i}`, `post_layernorm`.
 */
export const hfClip: Adapter = {
  family: 'hf-clip',
  label: 'clip (CLIPModel: the vision tower; openai/clip-vit-*)',
  modelTypes: ['clip'],
  build: (input) => buildClipLike(input, clipFamily('hf-clip')),
};

export const hfClipVision: Adapter = {
  family: 'hf-clip-vision',
  label: 'clip_vision_model (CLIPVisionModel, CLIPVisionModelWithProjection)',
  modelTypes: ['clip_vision_model'],
  build: (input) => buildClipLike(input, clipFamily('hf-clip-vision')),
};
