/**
 * Reading what the model computes inside attention: BEiT's relative position bias of one head,
 * and a tap on the model's own pre-softmax scores (the Softmax's input).
 */
import type { VitSpec } from '../arch/spec.js';
import type { OnnxGraph } from './onnx-graph.js';
import type { TokenLayout } from '../arch/tokens.js';
import { relPosBias, type VitTensors } from './vit-graph.js';

/**
 * BEiT's relative position bias of head `h` in block `l` for `layout`, [T, T] (null when the
 * block has none): head h of the runtime's own table (vit-graph.ts relPosBias).
 */
export async function relPosBiasHead(spec: VitSpec, l: number, h: number, layout: TokenLayout): Promise<Float64Array | null> {
  const rp = spec.blocks[l].relPosBias;
  if (!rp) return null;
  const T = layout.tokens;
  const all = await relPosBias(spec, rp, layout);
  return Float64Array.from(all.subarray(h * T * T, (h + 1) * T * T));
}

/**
 * An `extend` callback that exposes block `l`'s pre-softmax scores (the Softmax node's input,
 * [N, H, T, T], already divided by sqrt(d_h), relative position bias included) as output
 * `scores.{l}`. Returns false from `found()` when the graph has no such node.
 */
export function scoresTap(layers: number[]): { extend: (g: OnnxGraph, t: VitTensors) => void; found: () => boolean } {
  let ok = false;
  return {
    extend: (g, t) => {
      let all = true;
      for (const l of layers) {
        const node = g.nodes.find((nd) => nd.opType === 'Softmax' && nd.output?.[0] === t.attention[l]);
        if (!node?.input?.[0]) {
          all = false;
          continue;
        }
        g.output(`scores.${l}`, node.input[0]);
      }
      ok = all;
    },
    found: () => ok,
  };
}
