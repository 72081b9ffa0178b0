import type { Adapter } from '../adapter.js';
import { HALF_MEAN, HALF_STD } from '../preprocess.js';
import { buildHfVit, hfDefaultPreprocess } from './hf-vit-common.js';

/**
 * HF `vit`: ViTModel saved bare (google/vit-*-in21k, facebook/dino-vit*) or
 * ViTForImageClassification (`vit.` prefix + `classifier`). Older non-distilled DeiT repos
 * (facebook/deit-base-patch16-224) also say `vit`. `pooler.*` is ignored.
 */
export const hfVit: Adapter = {
  family: 'hf-vit',
  label: 'vit (ViTModel, ViTForImageClassification; google/vit-*, facebook/dino-vit*, non-distilled DeiT)',
  modelTypes: ['vit'],
  build: (input) =>
    buildHfVit(input, {
      family: 'hf-vit',
      prefixes: ['', 'vit.'],
      eps: 1e-12,
      head: ['classifier'],
      pooling: 'cls',
      preprocess: hfDefaultPreprocess(HALF_MEAN, HALF_STD),
    }),
};
