/**
 * Reading what the model computes inside attention: BEiT's relative position bias of one head,
 * and a tap on the model's own pre-softmax scores (the Softmax's input).
 */
import { loadWeight, type VitSpec } from '../arch/spec.js';
import type { OnnxGraph } from './onnx-graph.js';
import type { TokenLayout } from '../arch/tokens.js';
import type { VitTensors } from './vit-graph.js';

/**
 * BEiT's relative position bias of head `h` in block `l` for `layout`, [T, T] (null when the
 * block has none). Same indexing as the runtime (src/runtime/vit-graph.ts relPosBias).
 */
export async function relPosBiasHead(spec: VitSpec, l: number, h: number, layout: TokenLayout): Promise<Float64Array | null> {
  const rp = spec.blocks[l].relPosBias;
  if (!rp) return null;
  const [, ww] = rp.window;
  const table = await loadWeight(rp.table);
  const H = spec.heads;
  const n = table.length / H;
  const T = layout.tokens;
  const s = layout.patchStart;
  const wh = rp.window[0];
  const out = new Float64Array(T * T);
  for (let i = 0; i < T; i++) {
    for (let j = 0; j < T; j++) {
      let idx: number;
      if (s === 1 && i === 0 && j === 0) idx = n - 1;
      else if (s === 1 && i === 0) idx = n - 3;
      else if (s === 1 && j === 0) idx = n - 2;
      else {
        const pi = i - s, pj = j - s;
        const dr = Math.floor(pi / ww) - Math.floor(pj / ww) + wh - 1;
        const dc = (pi % ww) - (pj % ww) + ww - 1;
        idx = dr * (2 * ww - 1) + dc;
      }
      out[i * T + j] = table[idx * H + h];
    }
  }
  return out;
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
