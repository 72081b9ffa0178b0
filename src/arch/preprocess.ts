import { UserError } from '../errors.js';
import type { PreprocessSpec } from './spec.js';
import { checkConfig, num, obj, str, bool, RULES, type Json } from './adapter.js';

export const IMAGENET_MEAN: [number, number, number] = [0.485, 0.456, 0.406];
export const IMAGENET_STD: [number, number, number] = [0.229, 0.224, 0.225];
export const HALF_MEAN: [number, number, number] = [0.5, 0.5, 0.5];
export const HALF_STD: [number, number, number] = [0.5, 0.5, 0.5];
export const CLIP_MEAN: [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
export const CLIP_STD: [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

/** PIL resampling ids as stored in preprocessor_config.json. */
const PIL_RESAMPLE: Record<number, PreprocessSpec['resample']> = { 0: 'nearest', 1: 'lanczos', 2: 'bilinear', 3: 'bicubic' };

/** Image processors whose integer `size` means the shortest edge (HF `default_to_square=False`). */
const SHORTEST_EDGE_PROCESSORS = /^(CLIP|ChineseCLIP|Bit|ConvNext|MobileViT|Owl)/;

function triple(v: unknown): [number, number, number] | undefined {
  if (Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number')) return [v[0], v[1], v[2]] as [number, number, number];
  if (typeof v === 'number') return [v, v, v];
  return undefined;
}

function sizeOf(v: unknown): { shortest?: number; hw?: [number, number]; int?: number } | undefined {
  if (typeof v === 'number') return { int: v };
  const o = obj(v);
  if (!o) return undefined;
  if (typeof o.shortest_edge === 'number') return { shortest: o.shortest_edge };
  if (typeof o.height === 'number' && typeof o.width === 'number') return { hw: [o.height, o.width] };
  return undefined;
}

/**
 * Preprocessing from an HF preprocessor_config.json (`size` as an int, {shortest_edge} or
 * {height, width}; `crop_size`, `do_center_crop`, `resample`, `rescale_factor`, mean, std).
 * `fallback` supplies what the file leaves out (and everything when there is no file).
 */
export function fromHfPreprocessor(pp: Json | null | undefined, fallback: PreprocessSpec, file = 'preprocessor_config.json'): PreprocessSpec {
  if (!pp) return fallback;
  checkConfig(pp, file, {
    size: RULES.image,
    crop_size: RULES.image,
    rescale_factor: RULES.rescale,
    image_mean: RULES.mean,
    image_std: RULES.std,
  });
  const out: PreprocessSpec = { ...fallback, crop: [...fallback.crop] as [number, number] };
  const type = str(pp, 'image_processor_type') ?? str(pp, 'feature_extractor_type') ?? '';
  const size = sizeOf(pp.size);
  const crop = sizeOf(pp.crop_size);
  const cropHW: [number, number] | undefined = crop?.hw ?? (crop?.int !== undefined ? [crop.int, crop.int] : crop?.shortest !== undefined ? [crop.shortest, crop.shortest] : undefined);
  // Without an explicit do_center_crop, a crop_size means the processor crops (CLIP, DeiT, BiT).
  const doCrop = bool(pp, 'do_center_crop') ?? cropHW !== undefined;
  const doResize = bool(pp, 'do_resize') ?? true;
  if (doResize && size) {
    const shortest = size.shortest ?? (size.int !== undefined && (SHORTEST_EDGE_PROCESSORS.test(type) || (!type && fallback.resizeMode === 'shortest')) ? size.int : undefined);
    if (shortest !== undefined) {
      out.resizeMode = 'shortest';
      out.resize = shortest;
      out.crop = doCrop && cropHW ? cropHW : [shortest, shortest];
    } else {
      const hw = size.hw ?? [size.int!, size.int!];
      out.resizeMode = 'exact';
      out.resize = hw[0];
      out.crop = doCrop && cropHW ? cropHW : hw;
    }
  } else if (doCrop && cropHW) {
    out.crop = cropHW;
  }
  const rs = num(pp, 'resample');
  if (rs !== undefined) {
    const r = PIL_RESAMPLE[rs];
    if (!r) throw new UserError(`${file}: resample ${rs} is not supported (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic)`);
    out.resample = r;
  }
  if (bool(pp, 'do_rescale') === false) out.rescale = 1;
  else out.rescale = num(pp, 'rescale_factor') ?? 1 / 255;
  if (bool(pp, 'do_normalize') === false) {
    out.mean = [0, 0, 0];
    out.std = [1, 1, 1];
  } else {
    out.mean = triple(pp.image_mean) ?? out.mean;
    out.std = triple(pp.image_std) ?? out.std;
  }
  return out;
}

/**
 * Preprocessing from timm's `pretrained_cfg`: resize the short side to floor(size / crop_pct),
 * centre-crop `input_size` (crop_mode 'squash' resizes both sides instead).
 */
export function fromTimmPretrainedCfg(cfg: Json | undefined, fallback: PreprocessSpec): PreprocessSpec {
  if (!cfg) return fallback;
  const input = cfg.input_size;
  const hw: [number, number] =
    Array.isArray(input) && input.length === 3 && input.every((x) => typeof x === 'number') ? [input[1] as number, input[2] as number] : fallback.crop;
  const cropPct = num(cfg, 'crop_pct') ?? 0.875;
  const mode = str(cfg, 'crop_mode') ?? 'center';
  const scale = Math.floor(hw[0] / cropPct);
  const interp = str(cfg, 'interpolation');
  const resample: PreprocessSpec['resample'] =
    interp === 'bilinear' ? 'bilinear' : interp === 'nearest' ? 'nearest' : interp === 'lanczos' ? 'lanczos' : interp === 'bicubic' ? 'bicubic' : fallback.resample;
  return {
    resizeMode: mode === 'squash' ? 'exact' : 'shortest',
    resize: scale,
    crop: hw,
    resample,
    rescale: 1 / 255,
    mean: triple(cfg.mean) ?? fallback.mean,
    std: triple(cfg.std) ?? fallback.std,
  };
}

/** A default: resize to `size` x `size` (no crop) or short side then crop. */
export function defaultPreprocess(
  size: [number, number],
  o: { mean: [number, number, number]; std: [number, number, number]; resample: PreprocessSpec['resample']; resizeShort?: number },
): PreprocessSpec {
  return o.resizeShort
    ? { resizeMode: 'shortest', resize: o.resizeShort, crop: size, resample: o.resample, rescale: 1 / 255, mean: o.mean, std: o.std }
    : { resizeMode: 'exact', resize: size[0], crop: size, resample: o.resample, rescale: 1 / 255, mean: o.mean, std: o.std };
}

