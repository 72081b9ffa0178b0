/**
 * What a spec allows beyond the weight analysis: whether the image forward pass can be built
 * from it (and, if not, the one reason users see), and what its logits output is. Every image
 * command asks here instead of testing spec fields itself, so a text model or a weights-only
 * layout is refused once, in the same words, before anything image-related is computed.
 */
import { UserError } from '../errors.js';
import type { VitSpec } from './spec.js';

/** Why the forward pass cannot be built from `spec`, or null when it can. */
export function forwardUnavailable(spec: VitSpec): string | null {
  if (spec.modality !== 'vision') return `this is a ${spec.modality} model (${spec.family}): weight analysis only`;
  if (spec.noForward) return spec.noForward;
  if (!spec.patchEmbed) return `the spec has no patch embedding (${spec.family})`;
  if (spec.postNorm) return 'its blocks are post-norm, and the runtime builds pre-norm blocks only';
  if (spec.blocks.some((b) => b.norm1.kind !== 'layernorm' || b.norm2.kind !== 'layernorm'))
    return 'its blocks use a normalisation other than LayerNorm, which the runtime does not build';
  return null;
}

/**
 * Throws the one-line UserError when the forward pass cannot be built, e.g. "embed: gpt2 cannot
 * be run on images: this is a text model (text-gpt2): weight analysis only; use `qkscope svd`
 * for its modes". `command` names the command when the caller knows it.
 */
export function requireForward(spec: VitSpec, command?: string): void {
  const why = forwardUnavailable(spec);
  if (why) throw new UserError(`${command ? `${command}: ` : ''}${spec.modelId} cannot be run on images: ${why}; use \`qkscope svd\` for its modes (commands that run images need a vision transformer)`);
}

/**
 * The model's final output written as logits.npy, or null when it has none: a classifier's
 * logits (`head` after the pooling; CLIP: the projected embedding), or, for an attention-pooling
 * head without a linear after it (SigLIP), the pooled embedding itself.
 */
export function logitsWidth(spec: VitSpec): number | null {
  if (spec.pooling === 'none') return null;
  if (spec.head) return spec.head.weight.shape[0];
  if (spec.pooling === 'attention' && spec.attnPool) return spec.width;
  return null;
}

/** Width of the pooled features (the head's input): 2d for 'cls+mean', d otherwise. */
export function pooledWidth(spec: VitSpec): number {
  return spec.pooling === 'cls+mean' ? 2 * spec.width : spec.width;
}
