/**
 * Shared plumbing for the token-level analyses (contributions, objects, pairing, anisotropy):
 * image files → the model's pixels, one head's query/key weights in float64, BEiT's relative
 * position bias for one head, and a runtime tap of the model's own pre-softmax scores.
 */
import { loadWeight, type VitSpec } from '../arch/spec.js';
import { UserError } from '../errors.js';
import { loadBatch, preprocessFor } from '../images/preprocess.js';
import type { OnnxGraph } from '../runtime/onnx-graph.js';
import type { TokenLayout } from '../runtime/tokens.js';
import type { VitTensors } from '../runtime/vit-graph.js';

/** Decodes and preprocesses image files with the model's own preprocessing: [n, 3, h, w]. */
export async function loadPixels(spec: VitSpec, paths: string[]): Promise<{ pixels: Float32Array; imageSize: [number, number]; defaulted: boolean }> {
  const { pp, defaulted, options } = preprocessFor(spec);
  return { pixels: await loadBatch(paths, pp, options), imageSize: [...pp.crop] as [number, number], defaulted };
}

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

/** Index of the patch at grid row r, column c (token index, special tokens first). */
export function patchToken(layout: TokenLayout, r: number, c: number): number {
  return layout.patchStart + r * layout.grid[1] + c;
}

/** The centre patch (raster index among patches): floor(rows/2)·cols + floor(cols/2), as `scan` uses. */
export function centrePatch(layout: TokenLayout): number {
  return Math.floor(layout.grid[0] / 2) * layout.grid[1] + Math.floor(layout.grid[1] / 2);
}
