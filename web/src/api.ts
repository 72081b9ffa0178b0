/** Typed access to the JSON API (docs/API.md). Every path is relative to the page. */

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
export interface RunBrief {
  id: string;
  label: string;
  family: string;
  input: string;
  dims: Dims;
  created: string;
  has_scan: boolean;
  chance: { d: number; mode95: Band };
}
export interface ModelRun extends RunBrief {
  depth: number[];
  weighted: { value: number[]; band95: { lo: number[]; hi: number[] } };
  plain: { value: number[]; band95: { lo: number[]; hi: number[] } };
  heads: { weighted: number; plain: number }[][];
}
export interface ModeRow {
  mode: number;
  sigma: number;
  sigma_scaled: number;
  cosine: number;
  rel_gap: number;
  has_images: boolean;
}
export interface HeadDetail {
  run: string;
  model: string;
  layer: number;
  head: number;
  depth: number;
  dims: Dims;
  weighted_cosine: number;
  mean_cosine: number;
  weighted_band95: Band;
  weighted_band99: Band;
  chance: { mode95: Band; mode99: Band };
  salience_norm: number;
  salience_along_v: number[] | null;
  has_scan: boolean;
  modes: ModeRow[];
}
export interface TopEntry {
  sign: 1 | -1;
  rank: number;
  label: string;
  score: number;
  qmax: number | null;
  kmax: number | null;
}
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
  scan: { embedding: string | null; top_k: number | null; image_count: number | null; status: string | null; layers: number[] | null } | null;
  top: TopEntry[];
}
export interface Maps {
  layer: number;
  head: number;
  mode: number;
  sign: 1 | -1;
  sigma: number;
  cosine: number;
  grid: [number, number];
  image_size: [number, number];
  patch_size: number;
  q: number[];
  k: number[];
  qmax: number;
  kmax: number;
  score: number;
}
export interface TopMaps extends Maps {
  image: { id: string; label: string };
}
export interface UploadResult {
  id: string;
  label: string;
  width: number;
  height: number;
}
export interface ModeContribution {
  mode: number;
  sigma: number;
  cosine: number;
  contribution: number;
}
export interface Part {
  kind: 'mode' | 'other_modes' | 'key_salience' | 'query_constant' | 'rel_pos_bias';
  label: string;
  mode?: number;
  values: number[];
  weighted: number;
}
export interface Decomposition {
  layer: number;
  head: number;
  query: { token: number; patch: number; row: number; col: number };
  tokens: { count: number; patch_start: number; grid: [number, number]; special: string[] };
  attention: number[];
  model_logit: number[];
  parts: Part[];
  reconstructed: number[];
  residual: number[];
  max_abs_residual: number;
  softmax_max_abs_diff: number;
  modes: ModeContribution[];
  top_modes: number[];
}
export interface Anisotropy {
  available: boolean;
  reason?: string;
  source?: string;
  images?: number;
  layers?: { layer: number; depth: number; value: number | null }[];
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function request<T>(path: string, init?: RequestInit): Promise<T> {
  let r: Response;
  try {
    r = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'cannot reach the qkscope server (is `qkscope serve` still running?)');
  }
  const text = await r.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new ApiError(r.status, `unexpected reply from ${path} (${r.status})`);
  }
  if (!r.ok) throw new ApiError(r.status, (body as { error?: string }).error ?? `HTTP ${r.status}`);
  return body as T;
}

export const enc = encodeURIComponent;
const run = (id: string) => `api/runs/${enc(id)}`;

export const api = {
  runs: () => request<{ runs: RunBrief[] }>('api/runs'),
  models: () => request<{ runs: ModelRun[] }>('api/models'),
  head: (id: string, l: number, h: number) => request<HeadDetail>(`${run(id)}/heads/${l}/${h}`),
  mode: (id: string, l: number, h: number, n: number) => request<ModeDetail>(`${run(id)}/modes/${l}/${h}/${n}`),
  topMaps: (id: string, l: number, h: number, n: number, sign: 1 | -1, rank: number) =>
    request<TopMaps>(`${run(id)}/modes/${l}/${h}/${n}/top/${sign > 0 ? 'pos' : 'neg'}/${rank}`),
  anisotropy: (id: string) => request<Anisotropy>(`${run(id)}/anisotropy`),
  upload: (file: Blob, name: string) =>
    request<UploadResult>('api/images', { method: 'POST', body: file, headers: { 'content-type': file.type || 'application/octet-stream', 'x-filename': name.replace(/[^\w .()-]/g, '') } }),
  gallery: (id: string) => request<{ images: { key: string; label: string; source: string }[] }>(`api/gallery?run=${enc(id)}`),
  pick: (id: string, key: string) => request<UploadResult>(`api/gallery/${enc(key)}?run=${enc(id)}`, { method: 'POST' }),
  inputUrl: (id: string, img: string) => `${run(id)}/images/${enc(img)}/input.png`,
  maps: (id: string, img: string, l: number, h: number, n: number, sign: 1 | -1) =>
    request<Maps>(`${run(id)}/images/${enc(img)}/maps?layer=${l}&head=${h}&mode=${n}&sign=${sign > 0 ? 'pos' : 'neg'}`),
  imageModes: (id: string, img: string, l: number, h: number) => request<{ modes: ModeContribution[] }>(`${run(id)}/images/${enc(img)}/modes?layer=${l}&head=${h}`),
  decomposition: (id: string, img: string, l: number, h: number, patch: number, top = 5) =>
    request<Decomposition>(`${run(id)}/images/${enc(img)}/decomposition?layer=${l}&head=${h}&patch=${patch}&top=${top}`),
};
