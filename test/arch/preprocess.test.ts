import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UserError } from '../../src/errors.js';
import { CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, defaultPreprocess, fromHfPreprocessor, fromTimmPretrainedCfg } from '../../src/arch/preprocess.js';

const FALLBACK = defaultPreprocess([224, 224], { mean: IMAGENET_MEAN, std: IMAGENET_STD, resample: 'bilinear' });

describe('HF preprocessor_config.json', () => {
  it('no file: the family default', () => {
    assert.deepEqual(fromHfPreprocessor(null, FALLBACK), FALLBACK);
  });

  it('google/vit-base-patch16-224 (old feature extractor: int size, no crop)', () => {
    const p = fromHfPreprocessor(
      { do_normalize: true, do_resize: true, feature_extractor_type: 'ViTFeatureExtractor', image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5], resample: 2, size: 224 },
      FALLBACK,
    );
    assert.deepEqual(p, { resizeMode: 'exact', resize: 224, crop: [224, 224], resample: 'bilinear', rescale: 1 / 255, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
  });

  it('openai/clip-vit-base-patch32 (int size = shortest edge, int crop)', () => {
    const p = fromHfPreprocessor(
      { crop_size: 224, do_center_crop: true, do_normalize: true, do_resize: true, feature_extractor_type: 'CLIPFeatureExtractor', image_mean: CLIP_MEAN, image_std: CLIP_STD, resample: 3, size: 224 },
      FALLBACK,
    );
    assert.deepEqual(p, { resizeMode: 'shortest', resize: 224, crop: [224, 224], resample: 'bicubic', rescale: 1 / 255, mean: CLIP_MEAN, std: CLIP_STD });
  });

  it('facebook/deit-*-distilled (DeiT: int size 256 = square, crop 224)', () => {
    const p = fromHfPreprocessor(
      { crop_size: 224, do_center_crop: true, do_normalize: true, do_resize: true, feature_extractor_type: 'DeiTFeatureExtractor', image_mean: IMAGENET_MEAN, image_std: IMAGENET_STD, resample: 3, size: 256 },
      FALLBACK,
    );
    assert.equal(p.resizeMode, 'exact');
    assert.equal(p.resize, 256);
    assert.deepEqual(p.crop, [224, 224]);
  });

  it('facebook/dinov2-base (BitImageProcessor: shortest_edge 256, crop 224)', () => {
    const p = fromHfPreprocessor(
      {
        crop_size: { height: 224, width: 224 },
        do_center_crop: true,
        do_normalize: true,
        do_rescale: true,
        do_resize: true,
        image_mean: IMAGENET_MEAN,
        image_processor_type: 'BitImageProcessor',
        image_std: IMAGENET_STD,
        resample: 3,
        rescale_factor: 0.00392156862745098,
        size: { shortest_edge: 256 },
      },
      FALLBACK,
    );
    assert.deepEqual(p, { resizeMode: 'shortest', resize: 256, crop: [224, 224], resample: 'bicubic', rescale: 0.00392156862745098, mean: IMAGENET_MEAN, std: IMAGENET_STD });
  });

  it('crop_size present but do_center_crop false (BEiT) does not crop', () => {
    const p = fromHfPreprocessor({ crop_size: 224, do_center_crop: false, size: { height: 384, width: 384 }, resample: 2 }, FALLBACK);
    assert.deepEqual(p.crop, [384, 384]);
    assert.equal(p.resize, 384);
  });

  it('do_normalize / do_rescale false', () => {
    const p = fromHfPreprocessor({ do_normalize: false, do_rescale: false, size: { height: 32, width: 32 } }, FALLBACK);
    assert.deepEqual([p.mean, p.std, p.rescale], [[0, 0, 0], [1, 1, 1], 1]);
  });

  it('PIL resample ids', () => {
    const ids: Record<number, string> = { 0: 'nearest', 1: 'lanczos', 2: 'bilinear', 3: 'bicubic' };
    for (const [id, name] of Object.entries(ids)) assert.equal(fromHfPreprocessor({ resample: Number(id) }, FALLBACK).resample, name);
    assert.throws(() => fromHfPreprocessor({ resample: 4 }, FALLBACK), UserError);
  });
});

describe('timm pretrained_cfg', () => {
  it('crop_pct 0.9: resize the short side to floor(224 / 0.9) = 248, crop 224', () => {
    const p = fromTimmPretrainedCfg({ input_size: [3, 224, 224], interpolation: 'bicubic', crop_pct: 0.9, crop_mode: 'center', mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] }, FALLBACK);
    assert.deepEqual(p, { resizeMode: 'shortest', resize: 248, crop: [224, 224], resample: 'bicubic', rescale: 1 / 255, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
  });

  it('crop_pct 0.875 → 256; crop_pct 1.0 at 384 → 384; squash → exact', () => {
    assert.equal(fromTimmPretrainedCfg({ input_size: [3, 224, 224], crop_pct: 0.875 }, FALLBACK).resize, 256);
    assert.equal(fromTimmPretrainedCfg({ input_size: [3, 384, 384], crop_pct: 1.0 }, FALLBACK).resize, 384);
    const s = fromTimmPretrainedCfg({ input_size: [3, 224, 224], crop_pct: 1.0, crop_mode: 'squash', interpolation: 'bilinear' }, FALLBACK);
    assert.equal(s.resizeMode, 'exact');
    assert.equal(s.resample, 'bilinear');
  });
});
