/**
 * `export-onnx`: the model as one ONNX file, built by the graph builder every forward pass uses
 * (runtime/vit-graph.ts), with the outputs the explorer's decomposition needs. The same bytes
 * run in onnxruntime-node (Node) and onnxruntime-web (the exported site's Image view).
 *
 * Input `pixels` [N, C, H, W] float32, already preprocessed (the card's `preprocess`: resize,
 * centre crop, rescale, normalise). Outputs (N symbolic; layers as chosen, default all):
 *
 *   logits        [N, classes]   the classifier (CLIP: the projected embedding), when the model has one
 *   features      [N, d']        the pooled final features (the classifier's input)
 *   ln.{l}        [N, T, d]      x = LN1(h), the LayerNorm output feeding block l's attention:
 *                                the space of the singular modes (query map Q(t) = x_t·u_n)
 *   attention.{l} [N, H, T, T]   softmax probabilities of block l
 *   scores.{l}    [N, H, T, T]   the pre-softmax logits a_ij (already divided by √d_h, relative
 *                                position bias included): what the decomposition reconstructs
 *   qk.{l}        [N, H, T, T]   only for models with a relative position bias (BEiT): the
 *                                q·kᵀ/√d_h product alone, so the bias is scores − qk
 *
 * Tokens: the special tokens first (`layout.special`), then the patches in raster order.
 */
import type { VitSpec } from '../arch/spec.js';
import { requireForward, logitsWidth, pooledWidth } from '../arch/runnable.js';
import { UserError } from '../errors.js';
import { preprocessFor } from '../images/preprocess.js';
import { OPSET, type OnnxGraph } from '../runtime/onnx-graph.js';
import { buildVitGraph, resolveLayers, type LayerSelection, type VitTensors } from '../runtime/vit-graph.js';
import { RunDir, modelInfo, type ModelInfo } from '../store/run-dir.js';
import { jobContext, type JobContext } from './job.js';
import type { OnnxModelCard, OnnxTensorInfo } from '../site-types.js';

export type { OnnxModelCard, OnnxTensorInfo };
import { basename, dirname, extname, join } from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';

export interface ExportOnnxOptions {
  /** Blocks whose ln / attention / scores are outputs (default all). */
  layers?: LayerSelection;
  /** What the user passed as <model>, recorded in the card. */
  input?: string;
}

export interface OnnxExport {
  card: OnnxModelCard;
  /** The graph, weights still lazy: serialised by `onnxBytes` / `writeExportOnnx`. */
  graph: OnnxGraph;
}

/** Above this the file cannot be one protobuf (2 GiB); the weights go to FILE.onnx.data. */
export const ONNX_SINGLE_FILE_LIMIT = 1.8e9;

const TENSOR_ABOUT = {
  pixels: 'input: preprocessed image, float32, channels first (see preprocess)',
  logits: 'classifier output (CLIP: the projected embedding)',
  features: 'pooled final features (the classifier input)',
  ln: 'LayerNorm output x = LN1(h) feeding the block attention: the space of the singular modes',
  attention: 'softmax attention probabilities',
  scores: 'pre-softmax attention logits (divided by sqrt(d_h); relative position bias included)',
  qk: 'q·kᵀ/sqrt(d_h) without the relative position bias (bias = scores − qk)',
};

/** Builds the export graph and its card (weights are read when serialised). */
export async function runExportOnnx(spec: VitSpec, opts: ExportOnnxOptions = {}, context?: Partial<JobContext>): Promise<OnnxExport> {
  const ctx = jobContext(context);
  requireForward(spec, 'export-onnx');
  const layers = resolveLayers(opts.layers ?? 'all', spec.layers);
  if (layers.length === 0) throw new UserError('--layers: give at least one layer (or all)');
  const hasRelPos = layers.some((l) => !!spec.blocks[l].relPosBias);
  const missing: number[] = [];
  const tap = (g: OnnxGraph, t: VitTensors) => {
    for (const l of layers) {
      const sm = g.nodes.find((n) => n.opType === 'Softmax' && n.output?.[0] === t.attention[l]);
      const scores = sm?.input?.[0];
      if (!scores) {
        missing.push(l);
        continue;
      }
      g.output(`scores.${l}`, scores);
      if (hasRelPos) {
        // The Softmax's producer is the Add of the bias (when the block has one), else the q·k MatMul.
        const add = g.nodes.find((n) => n.output?.[0] === scores);
        g.output(`qk.${l}`, add?.opType === 'Add' && spec.blocks[l].relPosBias ? add.input![0] : scores);
      }
    }
  };
  const built = await buildVitGraph(spec, { outputs: { ln: layers, attention: layers, logits: true, features: true }, extend: tap });
  if (missing.length) throw new Error(`export-onnx: no attention Softmax found for block(s) ${missing.join(', ')}`);
  const { pp, options, defaulted } = preprocessFor(spec);
  const lay = built.layout;
  const T = lay.tokens;
  const d = spec.width;
  const H = spec.heads;
  const classes = logitsWidth(spec);
  const outputs: OnnxTensorInfo[] = [];
  const names = new Set(built.graph.outputs.map((o) => o.name));
  if (names.has('logits')) outputs.push({ name: 'logits', dims: ['batch', classes ?? d], about: TENSOR_ABOUT.logits });
  if (names.has('features')) outputs.push({ name: 'features', dims: ['batch', pooledWidth(spec)], about: TENSOR_ABOUT.features });
  for (const l of layers) {
    outputs.push({ name: `ln.${l}`, dims: ['batch', T, d], about: `block ${l}: ${TENSOR_ABOUT.ln}` });
    outputs.push({ name: `attention.${l}`, dims: ['batch', H, T, T], about: `block ${l}: ${TENSOR_ABOUT.attention}` });
    outputs.push({ name: `scores.${l}`, dims: ['batch', H, T, T], about: `block ${l}: ${TENSOR_ABOUT.scores}` });
    if (hasRelPos) outputs.push({ name: `qk.${l}`, dims: ['batch', H, T, T], about: `block ${l}: ${TENSOR_ABOUT.qk}` });
  }
  const contrib = [...new Set(built.graph.nodes.filter((n) => n.domain === 'com.microsoft').map((n) => n.opType!))].sort();
  const card: OnnxModelCard = {
    format: 'qkscope-onnx/1',
    model: modelInfo(spec, opts.input ?? spec.modelId),
    opset: OPSET,
    weight_bytes: built.graph.weightBytes(),
    inputs: [{ name: built.input.name, dims: ['batch', ...built.input.dims], about: TENSOR_ABOUT.pixels }],
    outputs,
    layers,
    dims: { layers: spec.layers, heads: H, width: d, head_dim: spec.headDim, classes, features: pooledWidth(spec) },
    layout: { tokens: T, patch_start: lay.patchStart, special: lay.special.map(String), grid: lay.grid, image_size: lay.imageSize, patch_size: lay.patchSize },
    preprocess: { ...pp, crop_rounding: options.cropRounding ?? 'hf', defaulted },
    has_rel_pos: hasRelPos,
    contrib_ops: contrib,
  };
  return { card, graph: built.graph };
}

/** The .onnx bytes in one buffer (models under ONNX_SINGLE_FILE_LIMIT). Releases the weights. */
export async function onnxBytes(r: OnnxExport): Promise<Uint8Array> {
  if (r.card.weight_bytes > ONNX_SINGLE_FILE_LIMIT) {
    throw new UserError(`${r.card.model.id}: ${(r.card.weight_bytes / 1e9).toFixed(2)} GB of weights do not fit one ONNX buffer (2 GiB protobuf limit)`);
  }
  return r.graph.encode({ release: true });
}

/** `--out` must name a .onnx file (checked before the model loads). */
export function checkOnnxOut(outFile: string): void {
  if (extname(outFile).toLowerCase() !== '.onnx') throw new UserError(`--out ${outFile}: give a file name ending in .onnx`);
}

/**
 * Writes FILE.onnx and its card FILE.json (and, over the single-file limit, the weights as ONNX
 * external data FILE.onnx.data beside it). Returns the files written.
 */
export async function writeExportOnnx(r: OnnxExport, outFile: string, opts: { singleFileLimit?: number } = {}): Promise<string[]> {
  checkOnnxOut(outFile);
  const limit = opts.singleFileLimit ?? ONNX_SINGLE_FILE_LIMIT;
  const dir = dirname(outFile) || '.';
  const base = basename(outFile);
  const stem = base.slice(0, -'.onnx'.length);
  const out = new RunDir(dir, 'export-onnx', { manifest: `${stem}.json` });
  const written = [join(dir, base)];
  try {
    if (r.card.weight_bytes <= limit) {
      out.bytes(base, await r.graph.encode({ release: true }), 'the model: ONNX, float32 weights inside');
    } else {
      const tmp = mkdtempSync(join(dir, `.${stem}-onnx-`));
      try {
        await r.graph.writeExternal(tmp, { model: base, data: `${base}.data` });
        out.adopt(base, join(tmp, base), 'the model graph: ONNX, float32 weights in the external-data file beside it');
        out.adopt(`${base}.data`, join(tmp, `${base}.data`), 'ONNX external data: the float32 weights (4 KiB aligned)');
      } finally {
        // adopt() moved the files out; what is left is an empty folder or a failed write.
        rmSync(tmp, { recursive: true, force: true });
      }
      written.push(join(dir, `${base}.data`));
    }
    const c = r.card;
    out.commit(out.header(c.model, { layers: c.layers }, { model: c.model.input }), { ...c, file: base });
  } catch (e) {
    out.abort();
    throw e;
  }
  written.push(join(dir, `${stem}.json`));
  return written;
}
