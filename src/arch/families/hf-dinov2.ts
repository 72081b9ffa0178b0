import type { Adapter, BuildInput } from '../adapter.js';
import { activation, agree, buildBlocks, checkConfig, HEADS_DIVIDE, configFile, findPrefix, HF_VISION_RULES, RULES, finishSpec, notesFor, num, pair, posGrid, resolveHeads, str, Weights } from '../adapter.js';
import { IMAGENET_MEAN, IMAGENET_STD, defaultPreprocess, fromHfPreprocessor } from '../preprocess.js';
import type { SpecialToken, VitSpec } from '../spec.js';
import { PATCH_ANCHOR, patchEmbed } from './hf-vit-common.js';

/**
 * DINOv2 (HF `dinov2`, `dinov2_with_registers`): `norm1`/`norm2`, layer-scales
 * `layer_scale{1,2}.lambda1`, MLP `mlp.fc1/fc2` or SwiGLU `mlp.weights_in/weights_out`.
 * Tokens: CLS, registers, patches; position rows for CLS and patches only (registers are
 * inserted after the position embedding). The position grid (518/14 = 37) is resized to the
 * preprocessing crop (224) as HF does. The image classifiers (`classifier` [classes, 2d]) read
 * [CLS, mean of the patch tokens] after the final LayerNorm ('cls+mean' pooling).
 */
export function buildDinov2(input: BuildInput, family: string, prefixes: string[]): VitSpec {
  const cfg = input.config ?? {};
  checkConfig(cfg, configFile(input), { ...HF_VISION_RULES, num_register_tokens: RULES.registers }, [HEADS_DIVIDE('hidden_size', 'num_attention_heads')]);
  const notes: string[] = [];
  const root = new Weights(input.source);
  const prefix = findPrefix(input.source, PATCH_ANCHOR, prefixes);
  if (prefix === undefined) throw root.missing(prefixes[0] + PATCH_ANCHOR);
  const w = root.withPrefix(prefix);
  const { d, channels, patch, embed } = patchEmbed(w, 'embeddings.patch_embeddings.projection', cfg);
  const heads = resolveHeads(input, num(cfg, 'num_attention_heads'), d, notes, w.file);
  const eps = num(cfg, 'layer_norm_eps') ?? 1e-6;
  const layers = w.countLayers('encoder.layer.');
  if (layers === 0) throw w.missing('encoder.layer.0.attention.attention.query.weight');
  agree(w, 'num_hidden_layers', num(cfg, 'num_hidden_layers'), layers, `encoder.layer.${layers - 1}.*`);

  const clsToken = w.ref('embeddings.cls_token', [d]);
  const tokenLayout: SpecialToken[] = ['cls'];
  let registerTokens;
  if (w.has('embeddings.register_tokens')) {
    const info = w.info('embeddings.register_tokens');
    const r = info.shape.length === 3 ? info.shape[1] : info.shape[0];
    agree(w, 'num_register_tokens', num(cfg, 'num_register_tokens'), r, 'embeddings.register_tokens');
    registerTokens = w.ref('embeddings.register_tokens', [r, d]);
    for (let i = 0; i < r; i++) tokenLayout.push('reg');
  } else if ((num(cfg, 'num_register_tokens') ?? 0) > 0) {
    throw w.missing('embeddings.register_tokens', 'the config asks for register tokens');
  }

  const configImage = pair(cfg.image_size) ?? [518, 518];
  const pe = w.info('embeddings.position_embeddings');
  const rows = pe.shape.length === 3 ? pe.shape[1] : pe.shape[0];
  const { grid, special } = posGrid(w, 'embeddings.position_embeddings', rows, [1], [Math.floor(configImage[0] / patch), Math.floor(configImage[1] / patch)]);

  const swiglu = w.has('encoder.layer.0.mlp.weights_in.weight');
  if (cfg.use_swiglu_ffn === true && !swiglu) throw w.missing('encoder.layer.0.mlp.weights_in.weight', 'the config sets use_swiglu_ffn');
  const blocks = buildBlocks(
    w,
    'encoder.layer.',
    layers,
    {
      norm1: 'norm1',
      norm2: 'norm2',
      q: 'attention.attention.query',
      k: 'attention.attention.key',
      v: 'attention.attention.value',
      o: 'attention.output.dense',
      ls1: 'layer_scale1.lambda1',
      ls2: 'layer_scale2.lambda1',
      ...(swiglu ? { w12: 'mlp.weights_in', w3: 'mlp.weights_out' } : { fc1: 'mlp.fc1', fc2: 'mlp.fc2' }),
    },
    { d, heads, eps },
  );
  // Dinov2(WithRegisters)ForImageClassification: classifier [classes, 2d] on [CLS, mean of patch tokens].
  const head = root.has('classifier.weight') ? root.linearAny('classifier', 2 * d) : undefined;
  if (head && registerTokens)
    notes.push('classifier on [CLS, mean of patch tokens]; the mean excludes the register tokens, as transformers >= 4.52 computes it (earlier versions averaged the registers in too)');

  const preprocess = fromHfPreprocessor(
    input.preprocessorConfig,
    defaultPreprocess([224, 224], { mean: IMAGENET_MEAN, std: IMAGENET_STD, resample: 'bicubic', resizeShort: 256 }),
    input.preprocessorFile,
  );
  const spec = {
    family,
    modelId: input.modelId,
    modality: 'vision' as const,
    imageSize: preprocess.crop,
    patchSize: patch,
    channels,
    width: d,
    heads,
    tokenLayout,
    patchEmbed: embed,
    clsToken,
    ...(registerTokens ? { registerTokens } : {}),
    posEmbed: { weight: w.ref('embeddings.position_embeddings', [rows, d]), grid, special },
    blocks,
    finalNorm: w.norm('layernorm', d, eps),
    pooling: head ? ('cls+mean' as const) : ('cls' as const),
    ...(head ? { head } : {}),
    activation: activation(str(cfg, 'hidden_act'), 'gelu', w.file),
    preprocess,
    notes,
  };
  notesFor(spec, notes);
  return finishSpec(spec);
}

export const hfDinov2: Adapter = {
  family: 'hf-dinov2',
  label: 'dinov2 (Dinov2Model, Dinov2ForImageClassification; facebook/dinov2-*)',
  modelTypes: ['dinov2'],
  build: (input) => buildDinov2(input, 'hf-dinov2', ['', 'dinov2.']),
};
