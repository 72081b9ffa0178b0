import { UserError } from '../../errors.js';
import type { PreprocessSpec, SpecialToken, VitSpec, WeightRef } from '../spec.js';
import {
  activation,
  agree,
  buildBlocks,
  checkConfig,
  configFile,
  HEADS_DIVIDE,
  HF_VISION_RULES,
  findPrefix,
  finishSpec,
  notesFor,
  num,
  pair,
  posGrid,
  resolveHeads,
  str,
  Weights,
  type BuildInput,
} from '../adapter.js';
import { defaultPreprocess, fromHfPreprocessor } from '../preprocess.js';

/** What distinguishes the HF families built on `ViTLayer` (vit, vit_msn, vit_mae, deit, ijepa). */
export interface HfVitFamily {
  family: string;
  /** Candidate prefixes of the backbone (bare model first or wrapped, e.g. `vit.`). */
  prefixes: string[];
  /** HF default `layer_norm_eps` of the config class. */
  eps: number;
  /** Classifier head names at the top level (ViT `classifier`, DeiT `cls_classifier`). */
  head?: string[];
  distHead?: string;
  pooling: 'cls' | 'mean';
  preprocess: (image: [number, number]) => PreprocessSpec;
  notes?: string[];
}

export const PATCH_ANCHOR = 'embeddings.patch_embeddings.projection.weight';

/** The HF ViT layer naming (ViTLayer, and DeiT/ViTMAE/ViTMSN/IJepa copies of it). */
export const HF_VIT_BLOCK = {
  norm1: 'layernorm_before',
  norm2: 'layernorm_after',
  q: 'attention.attention.query',
  k: 'attention.attention.key',
  v: 'attention.attention.value',
  o: 'attention.output.dense',
  fc1: 'intermediate.dense',
  fc2: 'output.dense',
};

export function hfDefaultPreprocess(mean: [number, number, number], std: [number, number, number], resample: PreprocessSpec['resample'] = 'bilinear') {
  return (image: [number, number]) => defaultPreprocess(image, { mean, std, resample });
}

/** Reads patch embedding [d, C, p, p] and checks it against the config. */
export function patchEmbed(w: Weights, name: string, cfg: Record<string, unknown>, bias: 'optional' | 'none' = 'optional') {
  const info = w.info(`${name}.weight`);
  if (info.shape.length !== 4 || info.shape[2] !== info.shape[3])
    throw new UserError(`${w.file}: tensor ${w.prefix}${name}.weight has shape [${info.shape.join(', ')}], not a square-patch convolution [d, C, p, p]`);
  const [d, channels, patch] = info.shape;
  agree(w, 'hidden_size', num(cfg, 'hidden_size'), d, `${name}.weight`);
  agree(w, 'patch_size', pair(cfg.patch_size)?.[0], patch, `${name}.weight`);
  agree(w, 'num_channels', num(cfg, 'num_channels'), channels, `${name}.weight`);
  const weight = w.ref(`${name}.weight`);
  const b = bias === 'optional' ? w.opt(`${name}.bias`, [d]) : undefined;
  return { d, channels, patch, embed: { kind: 'conv' as const, weight, ...(b ? { bias: b } : {}) } };
}

export function buildHfVit(input: BuildInput, fam: HfVitFamily): VitSpec {
  const cfg = input.config ?? {};
  checkConfig(cfg, configFile(input), HF_VISION_RULES, [HEADS_DIVIDE('hidden_size', 'num_attention_heads')]);
  const notes: string[] = [...(fam.notes ?? [])];
  const root = new Weights(input.source);
  const prefix = findPrefix(input.source, PATCH_ANCHOR, fam.prefixes);
  if (prefix === undefined) throw root.missing(fam.prefixes[0] + PATCH_ANCHOR);
  const w = root.withPrefix(prefix);
  const { d, channels, patch, embed } = patchEmbed(w, 'embeddings.patch_embeddings.projection', cfg);
  const heads = resolveHeads(input, num(cfg, 'num_attention_heads'), d, notes, w.file);
  const eps = num(cfg, 'layer_norm_eps') ?? fam.eps;
  const layers = w.countLayers('encoder.layer.');
  if (layers === 0) throw w.missing('encoder.layer.0.attention.attention.query.weight');
  agree(w, 'num_hidden_layers', num(cfg, 'num_hidden_layers'), layers, `encoder.layer.${layers - 1}.*`);

  const tokenLayout: SpecialToken[] = [];
  const clsToken = w.opt('embeddings.cls_token', [d]);
  if (clsToken) tokenLayout.push('cls');
  const distToken = w.opt('embeddings.distillation_token', [d]);
  if (distToken) tokenLayout.push('dist');

  const configImage = pair(cfg.image_size) ?? [224, 224];
  const pe = w.info('embeddings.position_embeddings');
  const rows = pe.shape.length === 3 ? pe.shape[1] : pe.shape[0];
  const { grid, special } = posGrid(w, 'embeddings.position_embeddings', rows, [tokenLayout.length], [Math.floor(configImage[0] / patch), Math.floor(configImage[1] / patch)]);
  const posWeight: WeightRef = w.ref('embeddings.position_embeddings', [rows, d]);

  const preprocess = fromHfPreprocessor(input.preprocessorConfig, fam.preprocess(configImage), input.preprocessorFile);
  const blocks = buildBlocks(w, 'encoder.layer.', layers, HF_VIT_BLOCK, { d, heads, eps });

  let head;
  for (const h of fam.head ?? []) if (root.has(`${h}.weight`)) head = root.linearAny(h, d);
  const distHead = fam.distHead && root.has(`${fam.distHead}.weight`) ? root.linearAny(fam.distHead, d) : undefined;

  const spec = {
    family: fam.family,
    modelId: input.modelId,
    modality: 'vision' as const,
    imageSize: preprocess.crop,
    patchSize: patch,
    channels,
    width: d,
    heads,
    tokenLayout,
    patchEmbed: embed,
    ...(clsToken ? { clsToken } : {}),
    ...(distToken ? { distToken } : {}),
    posEmbed: { weight: posWeight, grid, special },
    blocks,
    finalNorm: w.optNorm('layernorm', d, eps),
    pooling: fam.pooling,
    ...(head ? { head } : {}),
    ...(distHead ? { distHead } : {}),
    activation: activation(str(cfg, 'hidden_act'), 'gelu', w.file),
    preprocess,
    notes,
  };
  notesFor(spec, notes);
  return finishSpec(spec);
}
