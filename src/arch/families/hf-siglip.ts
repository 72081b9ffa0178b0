import type { Adapter, Json } from '../adapter.js';
import { HALF_MEAN, HALF_STD, defaultPreprocess } from '../preprocess.js';
import { buildClipLike, type ClipLikeFamily } from './hf-clip.js';

/** HF SiglipVisionConfig defaults. */
export const SIGLIP_VISION_DEFAULTS: Json = {
  hidden_size: 768,
  intermediate_size: 3072,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  num_channels: 3,
  image_size: 224,
  patch_size: 16,
  hidden_act: 'gelu_pytorch_tanh',
  layer_norm_eps: 1e-6,
};

const siglipFamily = (family: string): ClipLikeFamily => ({
  family,
  defaults: SIGLIP_VISION_DEFAULTS,
  cls: false,
  preNorm: false,
  patchBias: true,
  pooling: 'none',
  attnPool: 'head',
  preprocess: (image) => defaultPreprocess(image, { mean: HALF_MEAN, std: HALF_STD, resample: 'bicubic' }),
  notes: ['SigLIP has no CLS token'],
});

/**
 * SigLIP vision towers: full SiglipModel (`siglip`, `vision_config`; text tower ignored) and
 * SiglipVisionModel (`siglip_vision_model`). No CLS token; the patch convolution has a bias;
 * position embeddings cover the patches only; `post_layernorm` normalises every token, and the
 * attention-pooling head (`vision_model.head`, when present and `vision_use_head` is not false)
 * turns them into the image embedding.
 */
export const hfSiglip: Adapter = {
  family: 'hf-siglip',
  label: 'siglip (SiglipModel: the vision tower; google/siglip-*)',
  modelTypes: ['siglip'],
  build: (input) => buildClipLike(input, siglipFamily('hf-siglip')),
};

export const hfSiglipVision: Adapter = {
  family: 'hf-siglip-vision',
  label: 'siglip_vision_model (SiglipVisionModel)',
  modelTypes: ['siglip_vision_model'],
  build: (input) => buildClipLike(input, siglipFamily('hf-siglip-vision')),
};
