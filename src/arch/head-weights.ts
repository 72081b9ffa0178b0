/** One head's query/key weights as the analyses use them (grouped-query heads mapped to their key head). */
import { UserError } from '../errors.js';
import { loadWeight, type VitSpec } from './spec.js';

/** Checks a 0-based layer / head index against the model. */
export function checkLayerHead(spec: VitSpec, layer: number, head?: number): void {
  if (!Number.isInteger(layer) || layer < 0 || layer >= spec.blocks.length) {
    throw new UserError(`--layer ${layer}: ${spec.modelId} has layers 0..${spec.blocks.length - 1} (0-based)`);
  }
  if (head !== undefined && (!Number.isInteger(head) || head < 0 || head >= spec.heads)) {
    throw new UserError(`--head ${head}: ${spec.modelId} has heads 0..${spec.heads - 1} (0-based)`);
  }
}

export interface HeadWeights {
  d: number;
  dh: number;
  /** [d_h, d] row-major (PyTorch [out, in] rows of this head). */
  wq: Float64Array;
  wk: Float64Array;
  bq: Float64Array | null;
  bk: Float64Array | null;
}

/** Head `h` of block `l`: its query/key rows and biases (grouped-query: the key head of its group). */
export async function headWeights(spec: VitSpec, l: number, h: number): Promise<HeadWeights> {
  const d = spec.width, dh = spec.headDim;
  const kvH = spec.kvHeads || spec.heads;
  const kv = Math.floor(h / (spec.heads / kvH));
  const blk = spec.blocks[l];
  const [wq, wk, bq, bk] = await Promise.all([
    loadWeight(blk.q.weight),
    loadWeight(blk.k.weight),
    blk.q.bias ? loadWeight(blk.q.bias) : null,
    blk.k.bias ? loadWeight(blk.k.bias) : null,
  ]);
  return {
    d,
    dh,
    wq: Float64Array.from(wq.subarray(h * dh * d, (h + 1) * dh * d)),
    wk: Float64Array.from(wk.subarray(kv * dh * d, (kv + 1) * dh * d)),
    bq: bq ? Float64Array.from(bq.subarray(h * dh, (h + 1) * dh)) : null,
    bk: bk ? Float64Array.from(bk.subarray(kv * dh, (kv + 1) * dh)) : null,
  };
}
