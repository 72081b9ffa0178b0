import type { BlockSpec, NormSpec, VitSpec } from '../spec.js';
import { finishSpec, type BuildInput } from '../adapter.js';

/**
 * A text transformer described for the weight analysis only: no image fields (imageSize
 * [0, 0], patchSize 0, channels 0), no tokens or position embeddings, pooling 'none'.
 */
export function textSpec(
  input: BuildInput,
  p: {
    family: string;
    width: number;
    heads: number;
    kvHeads?: number;
    headDim?: number;
    blocks: BlockSpec[];
    finalNorm?: NormSpec;
    activation: VitSpec['activation'];
    postNorm?: boolean;
    notes: string[];
  },
): VitSpec {
  return finishSpec({
    family: p.family,
    modelId: input.modelId,
    modality: 'text',
    imageSize: [0, 0],
    patchSize: 0,
    channels: 0,
    width: p.width,
    heads: p.heads,
    ...(p.kvHeads !== undefined ? { kvHeads: p.kvHeads } : {}),
    ...(p.headDim !== undefined ? { headDim: p.headDim } : {}),
    tokenLayout: [],
    blocks: p.blocks,
    ...(p.finalNorm ? { finalNorm: p.finalNorm } : {}),
    pooling: 'none',
    activation: p.activation,
    ...(p.postNorm ? { postNorm: true } : {}),
    notes: p.notes,
  });
}
