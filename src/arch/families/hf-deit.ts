import type { Adapter } from '../adapter.js';
import { IMAGENET_MEAN, IMAGENET_STD, defaultPreprocess } from '../preprocess.js';
import { buildHfVit } from './hf-vit-common.js';

/**
 * HF `deit`: DeiTModel / DeiTForImageClassification(WithTeacher) under `deit.`. Distilled
 * checkpoints add `embeddings.distillation_token` (tokens CLS then DIST, position rows for both)
 * and two heads, `cls_classifier` and `distillation_classifier`, whose logits are averaged.
 */
export const hfDeit: Adapter = {
  family: 'hf-deit',
  label: 'deit (DeiTModel, DeiTForImageClassificationWithTeacher; facebook/deit-*-distilled-*)',
  modelTypes: ['deit'],
  build: (input) =>
    buildHfVit(input, {
      family: 'hf-deit',
      prefixes: ['deit.', ''],
      eps: 1e-12,
      head: ['classifier', 'cls_classifier'],
      distHead: 'distillation_classifier',
      pooling: 'cls',
      // DeiTImageProcessor defaults: resize to 256 x 256, centre-crop 224, bicubic.
      preprocess: (image) => ({
        ...defaultPreprocess(image, { mean: IMAGENET_MEAN, std: IMAGENET_STD, resample: 'bicubic' }),
        resize: Math.floor((image[0] * 256) / 224),
      }),
    }),
};
