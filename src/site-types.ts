/**
 * The files of a static site made by `qkscope export` (src/jobs/export.ts writes them, the
 * site's data source web/src/data-static.ts reads them) and the card of an exported ONNX model
 * (`qkscope export-onnx`). Types only, no code: web/src may import this file.
 */
import type * as A from './api-types.js';

export interface OnnxTensorInfo {
  name: string;
  dims: (number | string)[];
  about: string;
}

/** Everything a caller of the .onnx file needs to feed it and read it (written as FILE.json). */
export interface OnnxModelCard {
  format: 'qkscope-onnx/1';
  /** As every manifest has it (src/store/run-dir.ts ModelInfo). */
  model: { id: string; input: string | null; family: string; modality: string; layers: number; heads: number; kv_heads: number; width: number; head_dim: number; patch_size: number | null; notes: string[] };
  opset: number;
  /** Float32 weight bytes (the file is this plus a few kB of graph). */
  weight_bytes: number;
  inputs: OnnxTensorInfo[];
  outputs: OnnxTensorInfo[];
  /** Blocks with ln / attention / scores outputs. */
  layers: number[];
  dims: { layers: number; heads: number; width: number; head_dim: number; classes: number | null; features: number };
  layout: { tokens: number; patch_start: number; special: string[]; grid: [number, number]; image_size: [number, number]; patch_size: number };
  /** The preprocessing the Node runtime uses (images/preprocess.ts), and how the crop offset rounds. */
  preprocess: PreprocessSpecLike & { crop_rounding: 'hf' | 'torchvision'; defaulted: boolean };
  has_rel_pos: boolean;
  /** Non-standard operators (onnxruntime's com.microsoft domain) the graph uses. */
  contrib_ops: string[];
}

/** A model's preprocessing (src/arch/spec.ts PreprocessSpec), as plain data. */
export interface PreprocessSpecLike {
  resizeMode: 'shortest' | 'exact';
  resize: number;
  crop: [number, number];
  resample: 'nearest' | 'bilinear' | 'bicubic' | 'lanczos';
  rescale: number;
  mean: [number, number, number];
  std: [number, number, number];
}

/** How one run appears in the site index (beside its RunBrief / ModelRun). */
export interface SiteRunMeta {
  slug: string;
  anisotropy: A.Anisotropy;
  /** Modes per head with top images stored (0 without a scan). */
  modes_per_head: number;
  /** The model for the in-page Image view, or null (see `model_note`). */
  model: { card: OnnxModelCard; chunks: number; bytes: number } | null;
  model_note: string | null;
  /** Images offered by the Image view's picker: the stored top images. */
  gallery: { key: string; label: string }[];
}

export interface SiteIndex {
  format: 'qkscope-site/1';
  title: string;
  created: string;
  tool: { name: 'qkscope'; version: string };
  runs: A.RunList;
  models: A.ModelList;
  meta: Record<string, SiteRunMeta>;
  /** onnxruntime-web's WebAssembly binary: number of base64 chunks (0: no model in the site). */
  wasm_chunks: number;
  /** Stored image side, for the page's notes. */
  image_size: number;
  /** The Image view's definition of a mode's contribution (as `qkscope contributions`). */
  contribution_definition: string;
  notes: string[];
}

/** One layer of a run: every head's numbers and every mode's (top lists only for stored modes). */
export interface SiteLayer {
  heads: A.HeadDetail[];
  /** [head][mode] */
  modes: A.ModeDetail[][];
  /** Modes of each head whose images are stored. */
  stored_modes: number;
}

/** A mode's stored maps: A.ModeMaps with q/k as base64 float16. */
export interface SiteModeMaps extends Omit<A.ModeMaps, 'images'> {
  images: (Omit<A.TopImageMaps, 'maps'> & { maps: { q: string; k: string; qmax: number; kmax: number; score: number } | null })[];
}

export interface SiteHeadWeights {
  /** base64 little-endian float32: wq, wk [d_h, d] rows of the head (PyTorch [out, in]); bq, bk [d_h] or null. */
  heads: { wq: string; wk: string; bq: string | null; bk: string | null }[];
}
