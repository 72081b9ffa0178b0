import { UserError } from '../../errors.js';
import type { Adapter, BuildInput } from '../adapter.js';
import { findPrefix, resolveHeads, Weights } from '../adapter.js';
import { IMAGENET_MEAN, IMAGENET_STD, defaultPreprocess } from '../preprocess.js';
import { buildTimmLike, HEADS_BY_WIDTH } from './timm-common.js';

const ANCHOR = 'patch_embed.proj.weight';
/** The release `.pth` holds `{model: state_dict}`; the pre-trained one prefixes the ViT with `encoder.`. */
const PREFIXES = ['', 'encoder.', 'model.', 'model.encoder.', 'state_dict.', 'state_dict.encoder.'];

function simmimPrefix(input: BuildInput): string | undefined {
  const p = findPrefix(input.source, ANCHOR, PREFIXES);
  if (p === undefined) return undefined;
  const has = (n: string) => input.source.info(p + n) !== undefined;
  // BEiT-style blocks: bias-free fused qkv with q_bias/v_bias, or gamma layer-scales, or rel-pos tables.
  return has('blocks.0.attn.qkv.weight') && (has('blocks.0.attn.q_bias') || has('blocks.0.gamma_1') || has('rel_pos_bias.relative_position_bias_table') || has('blocks.0.attn.relative_position_bias_table'))
    ? p
    : undefined;
}

/**
 * SimMIM release ViT checkpoints (microsoft/SimMIM `models/vision_transformer.py`, BEiT-style
 * blocks): `{model: ...}` with keys under `encoder.` (pre-trained, shared `rel_pos_bias`, final
 * `norm`, decoder ignored) or bare (fine-tuned: per-block `attn.relative_position_bias_table`,
 * `fc_norm` mean pooling, `head`). There is no config: width, depth and patch come from the
 * tensor shapes, the heads from the relative position tables (or 12 for width 768).
 */
export const simmim: Adapter = {
  family: 'simmim',
  label: 'SimMIM release ViT (.pth with a "model" dict; BEiT-style blocks, no config.json)',
  detect: (input) => input.config === null && simmimPrefix(input) !== undefined,
  build: (input) => {
    const prefix = simmimPrefix(input);
    if (prefix === undefined) throw new UserError(`${input.source.location}: not a SimMIM ViT checkpoint (no ${ANCHOR} with BEiT-style blocks)`);
    const w = new Weights(input.source).withPrefix(prefix);
    const notes: string[] = [];
    const pretrained = prefix.endsWith('encoder.');
    notes.push(pretrained ? 'SimMIM pre-trained encoder (decoder ignored)' : 'SimMIM fine-tuned model');
    // No config: the patch grid comes from the relative position table ((2g-1)^2 + 3 rows) or
    // the absolute position embedding, else 224 x 224.
    const patch = w.info(ANCHOR).shape[3];
    const table = ['rel_pos_bias.relative_position_bias_table', 'blocks.0.attn.relative_position_bias_table'].find((n) => w.has(n));
    let imageHint: [number, number] = [224, 224];
    if (table) {
      const g = (Math.sqrt(w.info(table).shape[0] - 3) + 1) / 2;
      if (Number.isInteger(g)) imageHint = [g * patch, g * patch];
    } else if (w.has('pos_embed')) {
      const s = w.info('pos_embed').shape;
      const g = Math.sqrt((s.length === 3 ? s[1] : s[0]) - 1);
      if (Number.isInteger(g)) imageHint = [g * patch, g * patch];
    }
    return buildTimmLike(input, w, {
      family: 'simmim',
      eps: 1e-6,
      activation: 'gelu',
      heads: (d, relHeads) => {
        const byWidth = HEADS_BY_WIDTH[d];
        return resolveHeads(
          input,
          undefined,
          d,
          notes,
          w.file,
          relHeads !== undefined
            ? { heads: relHeads, why: 'from the relative position table' }
            : byWidth
              ? { heads: byWidth.heads, why: `width ${d} as in ${byWidth.name}` }
              : undefined,
        );
      },
      imageHint,
      preprocess: (image) => defaultPreprocess(image, { mean: IMAGENET_MEAN, std: IMAGENET_STD, resample: 'bicubic', resizeShort: Math.floor((image[0] * 256) / 224) }),
      notes,
    });
  },
};
