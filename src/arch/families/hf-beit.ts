import type { Adapter, BuildInput } from '../adapter.js';
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
  sharedRelPos,
  str,
  Weights,
} from '../adapter.js';
import { HALF_MEAN, HALF_STD, defaultPreprocess, fromHfPreprocessor } from '../preprocess.js';
import type { VitSpec } from '../spec.js';
import { HF_VIT_BLOCK, PATCH_ANCHOR, patchEmbed } from './hf-vit-common.js';

/**
 * BEiT-style HF models (`beit`, `data2vec-vision`): the key projection has no bias; layer-scales
 * `lambda_1`/`lambda_2`; relative position bias per layer
 * (`attention.attention.relative_position_bias.relative_position_bias_table`) or shared
 * (`encoder.relative_position_bias.relative_position_bias_table`); absolute position embeddings
 * only with `use_absolute_position_embeddings`; `use_mean_pooling` (default) mean-pools the patch
 * tokens through `pooler.layernorm`, otherwise the final `layernorm` and the CLS token.
 */
export function buildBeit(input: BuildInput, family: string, prefixes: string[]): VitSpec {
  const cfg = input.config ?? {};
  checkConfig(cfg, configFile(input), HF_VISION_RULES, [HEADS_DIVIDE('hidden_size', 'num_attention_heads')]);
  const notes: string[] = [];
  const root = new Weights(input.source);
  const prefix = findPrefix(input.source, PATCH_ANCHOR, prefixes);
  if (prefix === undefined) throw root.missing(prefixes[0] + PATCH_ANCHOR);
  const w = root.withPrefix(prefix);
  const { d, channels, patch, embed } = patchEmbed(w, 'embeddings.patch_embeddings.projection', cfg);
  const eps = num(cfg, 'layer_norm_eps') ?? 1e-12;
  const layers = w.countLayers('encoder.layer.');
  if (layers === 0) throw w.missing('encoder.layer.0.attention.attention.query.weight');
  agree(w, 'num_hidden_layers', num(cfg, 'num_hidden_layers'), layers, `encoder.layer.${layers - 1}.*`);

  // The relative position tables carry the head count: use it to check (or supply) the config's.
  const sharedName = 'encoder.relative_position_bias.relative_position_bias_table';
  const layerRel = 'attention.attention.relative_position_bias.relative_position_bias_table';
  const relInfo = w.has(sharedName) ? w.info(sharedName) : w.has(`encoder.layer.0.${layerRel}`) ? w.info(`encoder.layer.0.${layerRel}`) : undefined;
  const heads = resolveHeads(input, num(cfg, 'num_attention_heads'), d, notes, w.file, relInfo ? { heads: relInfo.shape[1], why: 'from the relative position table' } : undefined);

  const configImage = pair(cfg.image_size) ?? [224, 224];
  const window: [number, number] = [Math.floor(configImage[0] / patch), Math.floor(configImage[1] / patch)];
  const shared = w.has(sharedName) ? sharedRelPos(w, sharedName, heads, window) : undefined;
  if (cfg.use_shared_relative_position_bias === true && !shared) throw w.missing(sharedName, 'the config sets use_shared_relative_position_bias');
  if (cfg.use_relative_position_bias === true && !w.has(`encoder.layer.0.${layerRel}`)) throw w.missing(`encoder.layer.0.${layerRel}`, 'the config sets use_relative_position_bias');

  let posEmbed;
  if (w.has('embeddings.position_embeddings')) {
    const pe = w.info('embeddings.position_embeddings');
    const rows = pe.shape.length === 3 ? pe.shape[1] : pe.shape[0];
    const { grid, special } = posGrid(w, 'embeddings.position_embeddings', rows, [1], window);
    posEmbed = { weight: w.ref('embeddings.position_embeddings', [rows, d]), grid, special };
  } else if (cfg.use_absolute_position_embeddings === true) {
    throw w.missing('embeddings.position_embeddings', 'the config sets use_absolute_position_embeddings');
  }

  const blocks = buildBlocks(
    w,
    'encoder.layer.',
    layers,
    { ...HF_VIT_BLOCK, ls1: 'lambda_1', ls2: 'lambda_2', relPos: layerRel },
    { d, heads, eps, window, kBias: 'none', ...(shared ? { sharedRelPos: shared } : {}) },
  );

  const meanPool = cfg.use_mean_pooling !== false;
  const fcNorm = meanPool ? w.optNorm('pooler.layernorm', d, eps) : undefined;
  if (meanPool && !fcNorm && root.has('classifier.weight')) notes.push('mean pooling without pooler.layernorm (not in the checkpoint)');
  const finalNorm = w.optNorm('layernorm', d, eps) ?? (prefix ? root.optNorm('layernorm', d, eps) : undefined);
  const head = root.has('classifier.weight') ? root.linearAny('classifier', d) : undefined;

  const preprocess = fromHfPreprocessor(input.preprocessorConfig, defaultPreprocess(configImage, { mean: HALF_MEAN, std: HALF_STD, resample: 'bicubic' }), input.preprocessorFile);
  const spec = {
    family,
    modelId: input.modelId,
    modality: 'vision' as const,
    imageSize: preprocess.crop,
    patchSize: patch,
    channels,
    width: d,
    heads,
    tokenLayout: ['cls' as const],
    patchEmbed: embed,
    clsToken: w.ref('embeddings.cls_token', [d]),
    ...(posEmbed ? { posEmbed } : {}),
    blocks,
    ...(finalNorm ? { finalNorm } : {}),
    pooling: meanPool ? ('mean' as const) : ('cls' as const),
    ...(fcNorm ? { fcNorm } : {}),
    ...(head ? { head } : {}),
    activation: activation(str(cfg, 'hidden_act'), 'gelu', w.file),
    preprocess,
    notes,
  };
  if (spec.imageSize[0] !== window[0] * patch || spec.imageSize[1] !== window[1] * patch)
    notes.push(`relative position tables are for a ${window[0]}x${window[1]} grid but inputs are ${spec.imageSize[0]}x${spec.imageSize[1]}`);
  notesFor(spec, notes);
  return finishSpec(spec);
}

export const hfBeit: Adapter = {
  family: 'hf-beit',
  label: 'beit (BeitModel, BeitForImageClassification, BeitForMaskedImageModeling; microsoft/beit-*)',
  modelTypes: ['beit'],
  build: (input) => buildBeit(input, 'hf-beit', ['beit.', '']),
};
