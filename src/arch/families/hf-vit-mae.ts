import type { Adapter } from '../adapter.js';
import { IMAGENET_MEAN, IMAGENET_STD } from '../preprocess.js';
import { buildHfVit, hfDefaultPreprocess } from './hf-vit-common.js';

/**
 * HF `vit_mae`: ViTMAEModel (bare) or ViTMAEForPreTraining (encoder under `vit.`; the
 * `decoder.*` tensors are ignored). The position embedding is MAE's fixed sin-cos table.
 */
export const hfVitMae: Adapter = {
  family: 'hf-vit-mae',
  label: 'vit_mae (ViTMAEModel, ViTMAEForPreTraining; facebook/vit-mae-*; decoder ignored)',
  modelTypes: ['vit_mae'],
  build: (input) =>
    buildHfVit(input, {
      family: 'hf-vit-mae',
      prefixes: ['', 'vit.'],
      eps: 1e-12,
      head: ['classifier'],
      pooling: 'cls',
      preprocess: hfDefaultPreprocess(IMAGENET_MEAN, IMAGENET_STD),
      notes: ['MAE encoder run on all patches (no random masking)'],
    }),
};
