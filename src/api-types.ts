/**
 * The payloads of the explorer's JSON API (`qkscope serve`, docs/API.md), defined once: the
 * server (src/server/) builds values of these types and the front-end (web/src/) reads them.
 * Types only, no code, no imports: web/src may import this file (the layering test allows it).
 *
 * Conventions: every index is 0-based (layer, head, mode, rank, patch, token); `sign` is +1 for
 * (u_n, v_n) and −1 for (−u_n, −v_n); patch maps are in raster order over the patch grid.
 */

/** Every error reply: `{ error, status }` with the HTTP status. */
export interface ApiErrorBody {
  error: string;
  status: number;
}

export interface Band {
  lo: number;
  hi: number;
}

export interface Dims {
  layers: number;
  heads: number;
  kv_heads: number;
  width: number;
  head_dim: number;
}

/** GET /api */
export interface ApiIndex {
  name: string;
  docs: string;
  index_base: 0;
  endpoints: { method: 'GET' | 'POST'; path: string; doc: string }[];
}

/** One run in GET /api/runs. */
export interface RunBrief {
  id: string;
  label: string;
  family: string;
  /** 'vision' runs have the image views; 'text' runs only the weight views. */
  modality: 'vision' | 'text';
  input: string;
  dims: Dims;
  created: string;
  has_scan: boolean;
  chance: { d: number; mode95: Band };
}

/** GET /api/runs */
export interface RunList {
  /** RUNS_DIR as given to `qkscope serve` (for the empty-state help). */
  runs_dir: string;
  runs: RunBrief[];
}

export interface Curve {
  value: number[];
  band95: { lo: number[]; hi: number[] };
}

/** One run in GET /api/models (the Models view). */
export interface ModelRun extends RunBrief {
  depth: number[];
  weighted: Curve;
  plain: Curve;
  heads: { weighted: number; plain: number }[][];
}

/** GET /api/models */
export interface ModelList {
  runs_dir: string;
  runs: ModelRun[];
}

/** GET /api/runs/RUN: the run's summary.json as svd wrote it. */
export interface RunDetail {
  id: string;
  has_scan: boolean;
  summary: Record<string, unknown>;
}

export interface ModeRow {
  mode: number;
  sigma: number;
  /** σ/√d_h */
  sigma_scaled: number;
  cosine: number;
  rel_gap: number;
  has_images: boolean;
}

/** GET /api/runs/RUN/heads/L/H */
export interface HeadDetail {
  run: string;
  model: string;
  modality: 'vision' | 'text';
  layer: number;
  head: number;
  depth: number;
  dims: Dims;
  weighted_cosine: number;
  mean_cosine: number;
  weighted_band95: Band;
  weighted_band99: Band;
  chance: { mode95: Band; mode99: Band };
  sigma_scale: string;
  salience_norm: number;
  /** s·v_n per key mode n (null when the run lacks the vectors). */
  salience_along_v: number[] | null;
  salience_note: string;
  has_scan: boolean;
  modes: ModeRow[];
}

/** One top image of a mode in the scan. */
export interface TopEntry {
  sign: 1 | -1;
  /** 0 = best. */
  rank: number;
  /** File name (or container#member): never a server path. */
  label: string;
  score: number;
  qmax: number | null;
  kmax: number | null;
  q_token: number | null;
  k_token: number | null;
}

export interface ScanInfo {
  embedding: string | null;
  top_k: number | null;
  image_count: number | null;
  status: string | null;
  layers: number[] | null;
}

/** GET /api/runs/RUN/modes/L/H/N */
export interface ModeDetail {
  run: string;
  layer: number;
  head: number;
  mode: number;
  sigma: number;
  sigma_scaled: number;
  cosine: number;
  rel_gap: number;
  chance: { mode95: Band; mode99: Band };
  has_scan: boolean;
  scan: ScanInfo | null;
  top: TopEntry[];
}

/** How maps are scaled to [0, 1] for drawing (src/report/overlay.ts, the CLI's `--normalize`). */
export type MapNormalization = 'percentile' | 'image' | 'row';

/** The query and key maps of one mode (one sign) on one image, over the patch grid. */
export interface MapPair {
  /** Q(t) = sign·x_t·u_n over the patch tokens, raster order. */
  q: number[];
  /** K(t) = sign·x_t·v_n. */
  k: number[];
  qmax: number;
  kmax: number;
  /** S = max Q × max K. */
  score: number;
}

/** One image of GET /api/runs/RUN/modes/L/H/N/maps. */
export interface TopImageMaps {
  sign: 1 | -1;
  rank: number;
  label: string;
  /** The image id for the image endpoints (null when it could not be read). */
  id: string | null;
  /** The crop the model saw, small (a URL: `data:image/jpeg;base64,…` from the server), or null. */
  thumb: string | null;
  /** What the scan stored. */
  scan: { score: number; qmax: number | null; kmax: number | null };
  /** The recomputed maps (null when the image could not be read; `error` says why). */
  maps: MapPair | null;
  error: { status: number; message: string } | null;
}

/** GET /api/runs/RUN/modes/L/H/N/maps: every top image of a mode, both signs, one batched pass. */
export interface ModeMaps {
  run: string;
  layer: number;
  head: number;
  mode: number;
  grid: [number, number];
  image_size: [number, number];
  patch_size: number;
  /** The CLI's default map scaling, for drawing. */
  normalization: MapNormalization;
  definition: string;
  images: TopImageMaps[];
  /** Images the server may not read (outside RUNS_DIR and the allowed folders), with the fix. */
  refused: number;
  refused_hint: string | null;
  /** Milliseconds the server spent (0 when cached). */
  compute_ms: number;
}

/** GET /api/runs/RUN/images/ID/maps */
export interface Maps extends MapPair {
  layer: number;
  head: number;
  mode: number;
  sign: 1 | -1;
  sigma: number;
  cosine: number;
  grid: [number, number];
  image_size: [number, number];
  patch_size: number;
  normalization: MapNormalization;
  definition: string;
}

/** GET /api/runs/RUN/modes/L/H/N/top/SIGN/RANK */
export interface TopMaps extends Maps {
  image: { id: string; label: string };
  scan: { score: number; qmax: number | null; kmax: number | null; q_token: number | null; k_token: number | null };
}

/** POST /api/images, POST /api/gallery/KEY */
export interface UploadResult {
  id: string;
  label: string;
  width: number;
  height: number;
}

export interface GalleryImage {
  key: string;
  label: string;
  source: 'images' | 'scan';
}

/** GET /api/gallery?run=RUN */
export interface Gallery {
  images: GalleryImage[];
  /** Scan images left out because they lie outside the folders the server may read. */
  refused: number;
  refused_hint: string | null;
}

export interface ModeContribution {
  mode: number;
  sigma: number;
  cosine: number;
  /** Attention-weighted part of the logits (see the endpoint). */
  contribution: number;
  /** contribution / Σ_m |contribution_m|. */
  share: number;
  /** Rank by contribution, largest first (0-based). */
  rank: number;
}

/** GET /api/runs/RUN/images/ID/modes */
export interface ImageModes {
  layer: number;
  head: number;
  definition: string;
  /** Ranked, largest contribution first (as `qkscope contributions`). */
  modes: ModeContribution[];
  terms: { key_bias: number; query_bias: number; constant: number; relative_position: number };
  total: number;
}

export type PartKind = 'mode' | 'other_modes' | 'key_salience' | 'query_constant' | 'rel_pos_bias';

export interface Part {
  kind: PartKind;
  label: string;
  mode?: number;
  /** The part's term of logit a_ij at every key token j (length T). */
  values: number[];
  /** Σ_j A_ij values[j]. */
  weighted: number;
}

/** GET /api/runs/RUN/images/ID/decomposition */
export interface Decomposition {
  layer: number;
  head: number;
  query: { token: number; patch: number; row: number; col: number };
  tokens: { count: number; patch_start: number; grid: [number, number]; special: string[] };
  attention: number[];
  /** The model's own pre-softmax logits (the graph's Softmax input). */
  model_logit: number[];
  parts: Part[];
  reconstructed: number[];
  residual: number[];
  max_abs_residual: number;
  /** max_j |softmax(reconstructed)_j − attention_j| */
  softmax_max_abs_diff: number;
  /** Every mode, in mode order, with its attention-weighted part for this query. */
  modes: ModeContribution[];
  /** The modes shown as parts: largest |weighted| first. */
  top_modes: number[];
  scale: string;
}

/** Where an anisotropy baseline came from. */
export type AnisotropySource = 'anisotropy.json' | 'scan' | 'live';

export interface AnisotropyLayerValue {
  layer: number;
  depth: number;
  value: number | null;
  /** Images behind the value. */
  images: number | null;
  /** 95 % interval when the source has one. */
  interval: [number, number] | null;
}

/** GET /api/runs/RUN/anisotropy */
export interface Anisotropy {
  available: boolean;
  /** Why not (when `available` is false). */
  reason?: string;
  source?: AnisotropySource;
  /** A sentence for the page: which baseline, from how many images. */
  description?: string;
  /** Images behind the baseline (the most over its layers). */
  images?: number;
  definition?: string;
  layers?: AnisotropyLayerValue[];
  /** Relative curves (cosine − baseline), computed as `qkscope compare --relative` does. */
  relative?: { weighted: Curve; plain: Curve };
}
