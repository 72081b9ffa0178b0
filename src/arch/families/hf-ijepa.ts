import type { Adapter } from '../adapter.js';
import { HALF_MEAN, HALF_STD } from '../preprocess.js';
import { buildHfVit, hfDefaultPreprocess } from './hf-vit-common.js';

/**
 * HF `ijepa` (facebook/ijepa_*): IJepaModel, the I-JEPA *encoder* in ViT layout with no CLS
 * token; position embeddings cover the patches only. IJepaForImageClassification (`ijepa.`
 * prefix) mean-pools all tokens.
 */
export const hfIjepa: Adapter = {
  family: 'hf-ijepa',
  label: 'ijepa (IJepaModel; facebook/ijepa_*: the encoder)',
  modelTypes: ['ijepa'],
  build: (input) =>
    buildHfVit(input, {
      family: 'hf-ijepa',
      prefixes: ['', 'ijepa.'],
      eps: 1e-12,
      head: ['classifier'],
      pooling: 'mean',
      preprocess: hfDefaultPreprocess(HALF_MEAN, HALF_STD),
    }),
};
