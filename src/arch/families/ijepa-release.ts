import { UserError } from '../../errors.js';
import type { Adapter, BuildInput } from '../adapter.js';
import { buildBlocks, finishSpec, posGrid, resolveHeads, Weights } from '../adapter.js';
import { IMAGENET_MEAN, IMAGENET_STD, defaultPreprocess } from '../preprocess.js';
import type { VitSpec } from '../spec.js';
import { buildTimmLike, HEADS_BY_WIDTH, timmBlockNames } from './timm-common.js';

export const IJEPA_COMPONENTS = ['encoder', 'target_encoder', 'predictor'] as const;

/**
 * Where a component's tensors are: the loader normally hands over one state dict (`--part`,
 * default `encoder`) with `module.` stripped, so names are bare; a source flattening the whole
 * release dict has them under `encoder.` / `predictor.` / `target_encoder.`.
 */
function prefixOf(input: BuildInput, component: string): string | undefined {
  const anchor = component === 'predictor' ? 'predictor_embed.weight' : 'patch_embed.proj.weight';
  return ['', 'module.', `${component}.`, `${component}.module.`].find((p) => input.source.info(p + anchor) !== undefined);
}

/** A bare I-JEPA encoder: timm-like blocks with qkv bias, patch-only `pos_embed`, no CLS token. */
function isBareEncoder(input: BuildInput): boolean {
  const has = (n: string) => input.source.info(n) !== undefined;
  return has('patch_embed.proj.weight') && has('pos_embed') && has('blocks.0.attn.qkv.bias') && !has('cls_token') && !has('blocks.0.attn.q_bias');
}

/** The part name the loader put in the location (`file [target_encoder]`), if any. */
function partFromLocation(location: string): string | undefined {
  return /\[([\w.]+)\]$/.exec(location)?.[1];
}

/** Heads of the I-JEPA encoder (the predictor uses the same count). */
function encoderHeads(input: BuildInput, encWidth: number, width: number, notes: string[], file: string): number {
  const byWidth = HEADS_BY_WIDTH[encWidth];
  return resolveHeads(input, undefined, width, notes, file, byWidth ? { heads: byWidth.heads, why: `the encoder's, width ${encWidth} as in ${byWidth.name}` } : undefined);
}

function buildPredictor(input: BuildInput, w: Weights): VitSpec {
  const notes: string[] = ['I-JEPA predictor: its heads are the encoder\'s; fed the encoder outputs of context patches plus mask tokens; weight analysis only'];
  const pe = w.info('predictor_embed.weight');
  if (pe.shape.length !== 2) throw w.shapeError('predictor_embed.weight', pe.shape, [0, 0], 'a linear map');
  const [d, encWidth] = pe.shape;
  const heads = encoderHeads(input, encWidth, d, notes, w.file);
  const layers = w.countLayers('predictor_blocks.');
  if (layers === 0) throw w.missing('predictor_blocks.0.attn.qkv.weight');
  const ps = w.info('predictor_pos_embed').shape;
  const rows = ps.length === 3 ? ps[1] : ps[0];
  const { grid } = posGrid(w, 'predictor_pos_embed', rows, [0], undefined);
  // The patch size is the encoder's, when the same file holds it.
  const root = new Weights(input.source);
  const encPrefix = ['encoder.', 'encoder.module.', 'target_encoder.', 'target_encoder.module.'].find((p) => root.has(`${p}patch_embed.proj.weight`));
  // Without the encoder, guess the release's patch from the grid: 224 px (ViT-H/14: 16, ViT-g/16: 14)
  // or 448 px (ViT-H/16-448: 28).
  const guess = 224 % grid[0] === 0 ? 224 / grid[0] : 448 % grid[0] === 0 ? 448 / grid[0] : 16;
  const patch = encPrefix ? root.info(`${encPrefix}patch_embed.proj.weight`).shape[3] : guess;
  if (!encPrefix) notes.push(`patch size ${patch} assumed from the ${grid[0]}x${grid[1]} grid (no encoder in this state dict)`);
  const image: [number, number] = [grid[0] * patch, grid[1] * patch];
  const eps = 1e-6;
  return finishSpec({
    family: 'ijepa-release',
    modelId: input.modelId,
    modality: 'vision',
    imageSize: image,
    patchSize: patch,
    channels: 3,
    width: d,
    heads,
    tokenLayout: [],
    inputProj: w.linear('predictor_embed', d, encWidth, 'optional'),
    maskToken: w.ref('mask_token', [d]),
    outputProj: w.linear('predictor_proj', encWidth, d, 'optional'),
    posEmbed: { weight: w.ref('predictor_pos_embed', [rows, d]), grid, special: 0 },
    blocks: buildBlocks(w, 'predictor_blocks.', layers, timmBlockNames(w, 'predictor_blocks.'), { d, heads, eps }),
    finalNorm: w.norm('predictor_norm', d, eps),
    pooling: 'none',
    activation: 'gelu',
    preprocess: defaultPreprocess(image, { mean: IMAGENET_MEAN, std: IMAGENET_STD, resample: 'bicubic' }),
    notes,
  });
}

/**
 * I-JEPA release checkpoints (facebookresearch/ijepa, `IN1K-vit.h.14-300e.pth.tar`): a dict of
 * `encoder`, `predictor` and `target_encoder` state dicts. The encoders are timm-like ViTs
 * without a CLS token (`pos_embed` covers the patches; qkv with bias; final `norm`); the
 * predictor (`predictor_embed`, `mask_token`, `predictor_pos_embed`, `predictor_blocks.{i}`,
 * `predictor_norm`, `predictor_proj`) is analysed as its own model with the encoder's head
 * count (16 for ViT-H/14: d_h = 384 / 16 = 24). Pick one with `component` (default encoder).
 */
export const ijepaRelease: Adapter = {
  family: 'ijepa-release',
  label: 'I-JEPA release (.pth.tar with encoder / predictor / target_encoder dicts, --part; no config.json)',
  detect: (input) =>
    input.config === null &&
    (input.source.names().some((n) => /(^|\.)predictor_embed\.weight$/.test(n) || n.startsWith('target_encoder.')) || isBareEncoder(input)),
  build: (input) => {
    const requested = input.component;
    if (requested !== undefined && !(IJEPA_COMPONENTS as readonly string[]).includes(requested))
      throw new UserError(`${input.source.location}: I-JEPA has no component ${JSON.stringify(requested)}; choose one of ${IJEPA_COMPONENTS.join(', ')}`);
    const encPrefix = prefixOf(input, requested && requested !== 'predictor' ? requested : 'encoder');
    const predPrefix = prefixOf(input, 'predictor');
    const component = requested ?? (encPrefix === undefined && predPrefix !== undefined ? 'predictor' : 'encoder');
    const prefix = component === 'predictor' ? predPrefix : encPrefix;
    if (prefix === undefined) {
      const found = IJEPA_COMPONENTS.filter((c) => prefixOf(input, c) !== undefined);
      throw new UserError(`${input.source.location}: I-JEPA component ${component} is not in this file; choose one of ${found.join(', ') || '(none found)'}`);
    }
    const w = new Weights(input.source).withPrefix(prefix);
    if (component === 'predictor') return buildPredictor(input, w);
    const label = partFromLocation(input.source.location) ?? component;
    const notes = [`I-JEPA ${label.replace('_', ' ')}`];
    return buildTimmLike(input, w, {
      family: 'ijepa-release',
      eps: 1e-6,
      activation: 'gelu',
      heads: (d) => encoderHeads(input, d, d, notes, w.file),
      preprocess: (image) => defaultPreprocess(image, { mean: IMAGENET_MEAN, std: IMAGENET_STD, resample: 'bicubic' }),
      globalPool: 'avg',
      notes,
    });
  },
};
