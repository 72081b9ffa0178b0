import { UserError } from '../../errors.js';
import type { Adapter, BuildInput, Json } from '../adapter.js';
import { checkConfig, HEADS_DIVIDE, configFile, num, obj, pair, resolveHeads, RULES, str, Weights } from '../adapter.js';
import { IMAGENET_MEAN, IMAGENET_STD, defaultPreprocess, fromTimmPretrainedCfg } from '../preprocess.js';
import type { Activation } from '../spec.js';
import { buildTimmLike, HEADS_BY_WIDTH } from './timm-common.js';

/** timm model-name sizes: heads and width (timm vision_transformer.py / deit.py definitions). */
export const TIMM_SIZES: Record<string, { heads: number; width: number }> = {
  tiny: { heads: 3, width: 192 },
  small: { heads: 6, width: 384 },
  medium: { heads: 8, width: 512 },
  base: { heads: 12, width: 768 },
  large: { heads: 16, width: 1024 },
  so400m: { heads: 16, width: 1152 },
  huge: { heads: 16, width: 1280 },
  giant: { heads: 16, width: 1408 },
  gigantic: { heads: 16, width: 1664 },
};

/** Architecture prefixes served by the timm VisionTransformer adapter. */
const TIMM_PREFIXES = /^(vit_|deit_|deit3_|beit_|beitv2_)/;

export interface TimmName {
  arch: string;
  tag?: string;
  size?: string;
  patch?: number;
  image?: number;
}

/** Parses `vit_base_patch16_224.augreg_in21k` into its size, patch and image size. */
export function parseTimmName(name: string): TimmName {
  const [arch, tag] = name.split('.', 2);
  const parts = arch.split('_');
  const size = parts.find((p) => p in TIMM_SIZES);
  const pm = /(?:^|_)patch(\d+)(?:_|$)/.exec(arch);
  const im = /_(\d{2,4})(?:_|$)/.exec(arch.replace(/patch\d+/, ''));
  return { arch, ...(tag ? { tag } : {}), ...(size ? { size } : {}), ...(pm ? { patch: Number(pm[1]) } : {}), ...(im ? { image: Number(im[1]) } : {}) };
}

function timmActivation(name: TimmName, args: Json | undefined): Activation {
  const act = str(args, 'act_layer');
  if (act === 'quick_gelu' || name.arch.includes('quickgelu')) return 'quick_gelu';
  if (act === 'gelu_tanh' || name.arch.includes('siglip')) return 'gelu_tanh';
  return 'gelu';
}

/**
 * timm VisionTransformer checkpoints (hub repos `timm/*`: config.json with `architecture`,
 * `num_features`, `global_pool`, `pretrained_cfg`, optionally `model_args`). timm's config has
 * no head count: it comes from `--num-heads`, `model_args.num_heads`, or the size in the
 * architecture name (tiny 3, small 6, medium 8, base 12, large/huge/giant/gigantic 16).
 */
export function buildTimmVit(input: BuildInput): ReturnType<Adapter['build']> {
  const cfg = input.config ?? {};
  const notes: string[] = [];
  const archName = str(cfg, 'architecture') ?? '';
  if (input.config === null) notes.push('no config.json: a timm-layout state dict read from its tensor shapes');
  const name = parseTimmName(archName);
  const cfgFile = configFile(input);
  checkConfig(
    cfg,
    cfgFile,
    {
      num_features: RULES.width,
      'model_args.embed_dim': RULES.width,
      'model_args.num_heads': RULES.heads,
      'model_args.depth': RULES.layers,
      'model_args.patch_size': RULES.patch,
      'model_args.img_size': RULES.image,
      'pretrained_cfg.input_size': RULES.inputSize,
      'pretrained_cfg.crop_pct': RULES.fraction,
      'pretrained_cfg.mean': RULES.mean,
      'pretrained_cfg.std': RULES.std,
    },
    [HEADS_DIVIDE('model_args.embed_dim', 'model_args.num_heads')],
  );
  // The architecture name's numbers are config numbers too (vit_base_patch16_384).
  checkConfig({ patch: name.patch, image: name.image }, cfgFile, { patch: RULES.patch, image: RULES.image }, [], `architecture ${JSON.stringify(archName)}: `);
  const args = obj(cfg.model_args);
  const pcfg = obj(cfg.pretrained_cfg);
  const w = new Weights(input.source);
  const file = w.file;
  const inputSize = pcfg?.input_size;
  const imageHint: [number, number] | undefined =
    Array.isArray(inputSize) && inputSize.length === 3 ? [Number(inputSize[1]), Number(inputSize[2])] : pair(args?.img_size) ?? (name.image ? [name.image, name.image] : undefined);
  const size = name.size ? TIMM_SIZES[name.size] : undefined;
  const clip = name.arch.includes('clip');
  const eps = clip ? 1e-5 : 1e-6;
  const globalPool = str(args, 'global_pool') ?? str(cfg, 'global_pool');
  return buildTimmLike(input, w, {
    family: 'timm-vit',
    eps,
    activation: timmActivation(name, args),
    heads: (d, relHeads) => {
      const fromArgs = num(args, 'num_heads');
      if (input.numHeads === undefined && fromArgs === undefined && size && size.width !== d)
        throw new UserError(
          `${file}: architecture ${archName} is a ${name.size} model (${size.width} wide) but the weights are ${d} wide; pass --num-heads`,
        );
      const fromName = fromArgs ?? relHeads ?? size?.heads;
      if (input.config === null && input.numHeads === undefined && fromName === undefined && HEADS_BY_WIDTH[d]) {
        const g = HEADS_BY_WIDTH[d];
        return resolveHeads(input, undefined, d, notes, file, { heads: g.heads, why: `no config.json; width ${d} as in ${g.name}` });
      }
      if (input.numHeads === undefined && fromName === undefined)
        throw new UserError(
          `${file}: timm architecture ${JSON.stringify(archName)} does not say its size (tiny/small/base/large/huge/giant) and the config has no model_args.num_heads; pass --num-heads`,
        );
      return resolveHeads(input, fromName, d, notes, file);
    },
    ...(imageHint ? { imageHint } : {}),
    preprocess: (image) =>
      fromTimmPretrainedCfg(pcfg, defaultPreprocess(image, { mean: IMAGENET_MEAN, std: IMAGENET_STD, resample: 'bicubic', resizeShort: Math.floor(image[0] / 0.875) })),
    ...(globalPool !== undefined ? { globalPool } : {}),
    expected: {
      where: `config.json (${archName})`,
      ...(num(args, 'embed_dim') ?? num(cfg, 'num_features') ? { width: num(args, 'embed_dim') ?? num(cfg, 'num_features') } : {}),
      ...(num(args, 'depth') !== undefined ? { layers: num(args, 'depth') } : {}),
      ...((num(args, 'patch_size') ?? name.patch) !== undefined ? { patch: num(args, 'patch_size') ?? name.patch } : {}),
    },
    notes,
  });
}

export const timmVit: Adapter = {
  family: 'timm-vit',
  label: 'timm VisionTransformer (config.json "architecture": vit_*, deit_*, deit3_*, beit_*; e.g. timm/vit_base_patch16_224.augreg_in21k)',
  detect: ({ config, source }) => {
    if (config === null) return source.info('patch_embed.proj.weight') !== undefined && source.info('blocks.0.attn.qkv.weight') !== undefined;
    const a = typeof config.architecture === 'string' ? config.architecture : undefined;
    return a !== undefined && config.model_type === undefined && TIMM_PREFIXES.test(a);
  },
  build: buildTimmVit,
};
