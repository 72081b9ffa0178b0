import { UserError } from '../../errors.js';
import type { BuildInput, BlockNames } from '../adapter.js';
import { agree, buildBlocks, finishSpec, notesFor, posGrid, sharedRelPos, Weights } from '../adapter.js';
import type { Activation, PreprocessSpec, SpecialToken, VitSpec, WeightRef } from '../spec.js';

/** Head counts of the common ViT sizes, by width (head width 64, except the H/g/G sizes: 16 heads). */
export const HEADS_BY_WIDTH: Record<number, { heads: number; name: string }> = {
  192: { heads: 3, name: 'ViT-Ti' },
  384: { heads: 6, name: 'ViT-S' },
  512: { heads: 8, name: 'ViT-M' },
  768: { heads: 12, name: 'ViT-B' },
  1024: { heads: 16, name: 'ViT-L' },
  1152: { heads: 16, name: 'ViT-So400m' },
  1280: { heads: 16, name: 'ViT-H' },
  1408: { heads: 16, name: 'ViT-g' },
  1664: { heads: 16, name: 'ViT-G' },
};

/** timm-style block names (timm VisionTransformer, BEiT-style `gamma_1`, I-JEPA, SimMIM). */
export function timmBlockNames(w: Weights, blockHead: string): BlockNames {
  const b0 = `${blockHead}0.`;
  if (w.has(`${b0}attn.q_norm.weight`) || w.has(`${b0}attn.k_norm.weight`))
    throw new UserError(`${w.file}: blocks normalise q and k (attn.q_norm/k_norm); such models are not supported yet`);
  if (w.has(`${b0}mlp.fc1_g.weight`) || w.has(`${b0}mlp.norm.weight`))
    throw new UserError(`${w.file}: blocks use a gated (SwiGLU) MLP in timm layout; not supported yet`);
  const gammaStyle = w.has(`${b0}gamma_1`);
  return {
    norm1: 'norm1',
    norm2: 'norm2',
    qkv: 'attn.qkv',
    qBias: 'attn.q_bias',
    vBias: 'attn.v_bias',
    o: 'attn.proj',
    ls1: gammaStyle ? 'gamma_1' : 'ls1.gamma',
    ls2: gammaStyle ? 'gamma_2' : 'ls2.gamma',
    fc1: 'mlp.fc1',
    fc2: 'mlp.fc2',
    relPos: 'attn.relative_position_bias_table',
  };
}

export interface TimmLikeOptions {
  family: string;
  eps: number;
  activation: Activation;
  /** Head count once the width is known (may read relative position tables via `relPosHeads`). */
  heads: (d: number, relPosHeads: number | undefined) => number;
  /** Configured input resolution (timm `input_size`, model_args `img_size`). */
  imageHint?: [number, number];
  preprocess: (image: [number, number]) => PreprocessSpec;
  /** timm `global_pool` when the config gives it. */
  globalPool?: string;
  expected?: { width?: number; layers?: number; patch?: number; where: string };
  notes: string[];
  /** Where the classifier head lives (default: beside the blocks). */
  headWeights?: Weights;
}

/**
 * A timm-layout ViT (`patch_embed.proj`, `cls_token`, `dist_token`, `reg_token`, `pos_embed`,
 * `norm_pre`, `blocks.{i}` with fused `attn.qkv`, `norm`, `fc_norm`, `head`, `head_dist`), also
 * BEiT-style blocks (q_bias/v_bias, gamma_1/gamma_2, relative position tables) as in SimMIM.
 */
export function buildTimmLike(input: BuildInput, w: Weights, o: TimmLikeOptions): VitSpec {
  const notes = o.notes;
  const pinfo = w.info('patch_embed.proj.weight');
  if (pinfo.shape.length !== 4 || pinfo.shape[2] !== pinfo.shape[3])
    throw new UserError(`${w.file}: tensor ${w.prefix}patch_embed.proj.weight has shape [${pinfo.shape.join(', ')}], not a square-patch convolution [d, C, p, p]`);
  const [d, channels, patch] = pinfo.shape;
  if (o.expected) {
    agree(w, `${o.expected.where} width`, o.expected.width, d, 'patch_embed.proj.weight');
    agree(w, `${o.expected.where} patch size`, o.expected.patch, patch, 'patch_embed.proj.weight');
  }
  const patchBias = w.opt('patch_embed.proj.bias', [d]);

  const layers = w.countLayers('blocks.');
  if (layers === 0) throw w.missing('blocks.0.attn.qkv.weight');
  if (o.expected) agree(w, `${o.expected.where} depth`, o.expected.layers, layers, `blocks.${layers - 1}.*`);
  const names = timmBlockNames(w, 'blocks.');

  const sharedName = 'rel_pos_bias.relative_position_bias_table';
  const relInfo = w.has(sharedName) ? w.info(sharedName) : w.has(`blocks.0.${names.relPos}`) ? w.info(`blocks.0.${names.relPos}`) : undefined;
  const heads = o.heads(d, relInfo?.shape[1]);

  const tokenLayout: SpecialToken[] = [];
  const clsToken = w.opt('cls_token', [d]);
  if (clsToken) tokenLayout.push('cls');
  const distToken = w.opt('dist_token', [d]);
  if (distToken) tokenLayout.push('dist');
  let registerTokens: WeightRef | undefined;
  if (w.has('reg_token')) {
    const s = w.info('reg_token').shape;
    const r = s.length === 3 ? s[1] : s[0];
    registerTokens = w.ref('reg_token', [r, d]);
    for (let i = 0; i < r; i++) tokenLayout.push('reg');
  }

  const hintGrid: [number, number] | undefined = o.imageHint ? [Math.floor(o.imageHint[0] / patch), Math.floor(o.imageHint[1] / patch)] : undefined;
  let posEmbed: VitSpec['posEmbed'];
  if (w.has('pos_embed')) {
    const s = w.info('pos_embed').shape;
    const rows = s.length === 3 ? s[1] : s[0];
    // `no_embed_class` models (DeiT-3, reg/gap models) have no rows for the special tokens.
    const { grid, special } = posGrid(w, 'pos_embed', rows, [...new Set([tokenLayout.length, 0])], hintGrid);
    posEmbed = { weight: w.ref('pos_embed', [rows, d]), grid, special };
  }
  const window = hintGrid ?? posEmbed?.grid;
  let shared: WeightRef | undefined;
  if (relInfo) {
    if (!window) throw new UserError(`${w.file}: relative position tables but no image size to place them; the checkpoint needs a config`);
    if (w.has(sharedName)) shared = sharedRelPos(w, sharedName, heads, window);
  }

  const blocks = buildBlocks(w, 'blocks.', layers, names, { d, heads, eps: o.eps, ...(window ? { window } : {}), ...(shared ? { sharedRelPos: shared } : {}) });
  for (const [i, b] of blocks.entries()) {
    if (b.mlp.kind === 'mlp' && b.mlp.fc2.weight.shape[1] !== b.mlp.fc1.weight.shape[0])
      throw new UserError(`${w.file}: block ${i} has a packed gated MLP (fc1 ${b.mlp.fc1.weight.shape[0]} wide, fc2 takes ${b.mlp.fc2.weight.shape[1]}); not supported yet`);
  }

  const hw = o.headWeights ?? w;
  const finalNorm = w.optNorm('norm', d, o.eps);
  const fcNorm = w.optNorm('fc_norm', d, o.eps);
  const head = hw.has('head.weight') ? hw.linearAny('head', d) : undefined;
  const distHead = hw.has('head_dist.weight') ? hw.linearAny('head_dist', d) : undefined;
  let pooling: VitSpec['pooling'];
  if (w.has('attn_pool.latent')) {
    pooling = 'none';
    notes.push('attention-pooling head (attn_pool) not included');
  } else if (o.globalPool === 'token') pooling = 'cls';
  else if (o.globalPool === 'avg') pooling = 'mean';
  else if (o.globalPool === '') pooling = 'none';
  else if (o.globalPool !== undefined) throw new UserError(`${w.file}: global_pool ${JSON.stringify(o.globalPool)} is not supported (token, avg)`);
  else pooling = fcNorm || !clsToken ? 'mean' : 'cls';
  if (pooling === 'cls' && !clsToken) throw w.missing('cls_token', 'global_pool "token" needs a class token');

  const image = o.imageHint ?? (posEmbed ? ([posEmbed.grid[0] * patch, posEmbed.grid[1] * patch] as [number, number]) : [224, 224]);
  const preprocess = o.preprocess(image);
  const spec = {
    family: o.family,
    modelId: input.modelId,
    modality: 'vision' as const,
    imageSize: preprocess.crop,
    patchSize: patch,
    channels,
    width: d,
    heads,
    tokenLayout,
    patchEmbed: { kind: 'conv' as const, weight: w.ref('patch_embed.proj.weight'), ...(patchBias ? { bias: patchBias } : {}) },
    ...(clsToken ? { clsToken } : {}),
    ...(distToken ? { distToken } : {}),
    ...(registerTokens ? { registerTokens } : {}),
    ...(posEmbed ? { posEmbed } : {}),
    ...(w.has('norm_pre.weight') ? { preNorm: w.norm('norm_pre', d, o.eps) } : {}),
    blocks,
    ...(finalNorm ? { finalNorm } : {}),
    pooling,
    ...(fcNorm ? { fcNorm } : {}),
    ...(head ? { head } : {}),
    ...(distHead ? { distHead } : {}),
    activation: o.activation,
    preprocess,
    notes,
  };
  notesFor(spec, notes);
  return finishSpec(spec);
}
