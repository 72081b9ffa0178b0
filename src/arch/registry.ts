import { UserError } from '../errors.js';
import type { Adapter, BuildInput } from './adapter.js';
import type { VitSpec } from './spec.js';
import { hfBeit } from './families/hf-beit.js';
import { hfClip, hfClipVision } from './families/hf-clip.js';
import { hfData2vecVision } from './families/hf-data2vec-vision.js';
import { hfDeit } from './families/hf-deit.js';
import { hfDinov2 } from './families/hf-dinov2.js';
import { hfDinov2Registers } from './families/hf-dinov2-registers.js';
import { hfIjepa } from './families/hf-ijepa.js';
import { hfSiglip, hfSiglipVision } from './families/hf-siglip.js';
import { hfVit } from './families/hf-vit.js';
import { hfVitMae } from './families/hf-vit-mae.js';
import { hfVitMsn } from './families/hf-vit-msn.js';
import { ijepaRelease } from './families/ijepa-release.js';
import { simmim } from './families/simmim.js';
import { timmVit } from './families/timm-vit.js';
import { textBert, textRoberta } from './families/text-bert.js';
import { textGpt2 } from './families/text-gpt2.js';
import { textLlama } from './families/text-llama.js';
import { buildWithLayout, LAYOUT_ADAPTERS } from './layout/presets.js';

export type { BuildInput } from './adapter.js';

/**
 * Every family adapter. HF checkpoints are matched by `model_type`; the rest by `detect`, tried
 * in this order (release dicts before the generic timm layout). Adding a family = one adapter
 * file + one line here + its fixture layout + its test.
 */
export const ADAPTERS: readonly Adapter[] = [
  hfVit,
  hfVitMsn,
  hfVitMae,
  hfDeit,
  hfIjepa,
  hfDinov2,
  hfDinov2Registers,
  hfBeit,
  hfData2vecVision,
  hfClip,
  hfClipVision,
  hfSiglip,
  hfSiglipVision,
  ijepaRelease,
  simmim,
  timmVit,
  // Layout presets (plain PyTorch state dicts: torch.nn.TransformerEncoder, vit-pytorch).
  ...LAYOUT_ADAPTERS,
  // Text transformers, for the modality-agnostic weight analysis only.
  textGpt2,
  textBert,
  textRoberta,
  textLlama,
];

const BY_MODEL_TYPE: ReadonlyMap<string, Adapter> = new Map(ADAPTERS.flatMap((a) => (a.modelTypes ?? []).map((t) => [t, a] as const)));

/** Every HF `model_type` with an adapter. */
export function supportedModelTypes(): string[] {
  return [...BY_MODEL_TYPE.keys()];
}

/** One line per adapter (for `--help` and error messages). */
export function supportedFamilies(): string[] {
  return ADAPTERS.map((a) => a.label);
}

/** The adapter for a checkpoint, or a UserError listing what is supported. */
export function findAdapter(input: BuildInput): Adapter {
  const mt = input.config?.model_type;
  if (typeof mt === 'string') {
    const a = BY_MODEL_TYPE.get(mt);
    if (a) return a;
  }
  for (const a of ADAPTERS) if (a.detect?.(input)) return a;
  const where = input.source.location;
  const supported =
    `supported model_type values: ${supportedModelTypes().join(', ')}; also timm VisionTransformer configs ("architecture": vit_*, deit_*, deit3_*, beit_*), SimMIM / I-JEPA release checkpoints, ` +
    'torch.nn.TransformerEncoder and vit-pytorch state dicts, and any other PyTorch transformer with --layout FILE.json';
  if (typeof mt === 'string') throw new UserError(`${where}: config.json has model_type ${JSON.stringify(mt)}, which is not supported (${supported})`);
  if (input.config && typeof input.config.architecture === 'string')
    throw new UserError(`${where}: timm architecture ${JSON.stringify(input.config.architecture)} is not supported (${supported})`);
  if (input.config) throw new UserError(`${where}: config.json has no model_type or architecture key (${supported})`);
  throw new UserError(
    `${where}: no config.json and the tensor names match no known layout (${supported}); put the model's config.json beside the weights, or for a timm-layout state dict pass --num-heads`,
  );
}

/** Maps a checkpoint (config + tensor names) to the one canonical VitSpec. */
export function buildSpec(input: BuildInput): VitSpec {
  // An explicit --layout wins over config.json and detection.
  if (input.layout !== undefined) return buildWithLayout(input, input.layout);
  return findAdapter(input).build(input);
}
