/**
 * Built-in layouts: plain data in the `--layout FILE.json` format (parsed by the same code), each
 * registered as an adapter that recognises its tensor names, and selectable by name with
 * `--layout NAME`. Adding a preset = one entry here (and its fixture and test).
 */
import { readFileSync } from 'node:fs';
import { UserError } from '../../errors.js';
import { withFsErrors } from '../../io/fs.js';
import type { Adapter, BuildInput } from '../adapter.js';
import { buildFromLayout, layoutPrefixes } from './build.js';
import { parseLayout, type LayoutDef } from './format.js';

/** torch.nn.TransformerEncoder (nn.TransformerEncoderLayer, nn.MultiheadAttention's fused in_proj). */
const torchEncoder = (placement: 'pre' | 'post') => ({
  name: placement === 'post' ? 'torch-transformer-encoder' : 'torch-transformer-encoder-prenorm',
  description: `torch.nn.TransformerEncoder, ${placement === 'post' ? 'norm_first=False (PyTorch’s default, post-norm)' : 'norm_first=True (pre-norm)'}`,
  prefix: ['', 'encoder.', 'transformer.', 'transformer_encoder.', 'model.', 'model.encoder.'],
  attention: { qkv: 'layers.{i}.self_attn.in_proj_weight', split: ['q', 'k', 'v'], out: 'layers.{i}.self_attn.out_proj.weight' },
  placement,
  norms: { attention: 'layers.{i}.norm1.weight', mlp: 'layers.{i}.norm2.weight', final: 'norm.weight', eps: 1e-5 },
  mlp: { fc1: 'layers.{i}.linear1.weight', fc2: 'layers.{i}.linear2.weight' },
  activation: 'relu',
  noForward: 'a torch.nn.TransformerEncoder has no patch embedding; describe the model’s embedding in a --layout FILE.json to run images (docs/layouts.md)',
  notes:
    placement === 'post'
      ? ['norm_first is not stored in a state dict: read as post-norm (PyTorch’s default); pass --layout torch-transformer-encoder-prenorm for norm_first=True']
      : [],
});

/** lucidrains/vit-pytorch `ViT` (vit_pytorch/vit.py): heads and dim_head are not in the state dict. */
const vitPytorch = {
  name: 'vit-pytorch',
  description: 'lucidrains vit-pytorch ViT (transformer.layers.{i}.0 = Attention, .1 = FeedForward)',
  prefix: ['', 'model.', 'vit.', 'module.'],
  attention: { qkv: { weight: 'transformer.layers.{i}.0.to_qkv.weight', bias: null }, split: ['q', 'k', 'v'], out: 'transformer.layers.{i}.0.to_out.0.weight' },
  placement: 'pre',
  norms: { attention: 'transformer.layers.{i}.0.norm.weight', mlp: 'transformer.layers.{i}.1.net.0.weight', final: 'transformer.norm.weight', eps: 1e-5 },
  mlp: { fc1: 'transformer.layers.{i}.1.net.1.weight', fc2: 'transformer.layers.{i}.1.net.4.weight' },
  activation: 'gelu',
  noForward: 'vit-pytorch’s patch embedding (LayerNorm, Linear, LayerNorm over flattened patches) is not a convolution the runtime builds',
};

/** Every preset, in detection order (the pre-norm encoder is chosen by name only: same tensor names). */
export const PRESETS: readonly { def: LayoutDef; detect: boolean }[] = [
  { def: parseLayout(torchEncoder('post'), 'preset torch-transformer-encoder'), detect: true },
  { def: parseLayout(torchEncoder('pre'), 'preset torch-transformer-encoder-prenorm'), detect: false },
  { def: parseLayout(vitPytorch, 'preset vit-pytorch'), detect: true },
];

/** A preset as a family adapter: recognised by its tensor names when no config names a family. */
export function layoutAdapter(def: LayoutDef, detect: boolean): Adapter {
  return {
    family: `layout:${def.name}`,
    label: `${def.description ?? def.name} (layout preset; --layout ${def.name})`,
    ...(detect
      ? { detect: (input: BuildInput) => !input.config?.model_type && !input.config?.architecture && layoutPrefixes(def, input.source.names()).length > 0 }
      : {}),
    build: (input) => buildFromLayout(input, def, def.name),
  };
}

export const LAYOUT_ADAPTERS: readonly Adapter[] = PRESETS.map((p) => layoutAdapter(p.def, p.detect));

/** `--layout NAME` (a preset) or `--layout FILE.json`: the layout and what to call it in messages. */
export function resolveLayout(arg: string): { def: LayoutDef; file: string } {
  const preset = PRESETS.find((p) => p.def.name === arg);
  if (preset) return { def: preset.def, file: arg };
  let text: string;
  try {
    text = withFsErrors(arg, () => readFileSync(arg, 'utf8'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e instanceof UserError && /no such file/.test(e.message)))
      throw new UserError(`--layout ${arg}: no such preset (${PRESETS.map((p) => p.def.name).join(', ')}) and no such file; give a preset name or a layout JSON file`);
    throw e;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${arg}: is not valid JSON (${(e as Error).message}); a layout is a JSON object (docs/layouts.md)`);
  }
  return { def: parseLayout(value, arg), file: arg };
}

/** Builds the spec with an explicit layout (it wins over config.json and detection). */
export function buildWithLayout(input: BuildInput, layout: string): ReturnType<typeof buildFromLayout> {
  const { def, file } = resolveLayout(layout);
  return buildFromLayout(input, def, file);
}
