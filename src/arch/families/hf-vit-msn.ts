import type { Adapter } from '../adapter.js';
import { IMAGENET_MEAN, IMAGENET_STD } from '../preprocess.js';
import { buildHfVit, hfDefaultPreprocess } from './hf-vit-common.js';

/** HF `vit_msn`: ViTMSNModel (bare) or ViTMSNForImageClassification (`vit.` + `classifier`). */
export const hfVitMsn: Adapter = {
  family: 'hf-vit-msn',
  label: 'vit_msn (ViTMSNModel, ViTMSNForImageClassification; facebook/vit-msn-*)',
  modelTypes: ['vit_msn'],
  build: (input) =>
    buildHfVit(input, {
      family: 'hf-vit-msn',
      prefixes: ['', 'vit.'],
      eps: 1e-6,
      head: ['classifier'],
      pooling: 'cls',
      preprocess: hfDefaultPreprocess(IMAGENET_MEAN, IMAGENET_STD),
    }),
};
