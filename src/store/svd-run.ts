/**
 * An svd run directory as the rest of the project reads it: the format of `summary.json`
 * (documented in the README) and its reader. jobs/svd.ts writes it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Band } from '../analysis/types.js';
import { UserError } from '../errors.js';
import { readNpy, type NpyArray } from '../io/npy.js';
import type { ManifestHeader, ModelInfo } from './run-dir.js';

/** Per-head statistics kept in summary.json (everything but the d-length vectors). */
export interface HeadSummary {
  head: number;
  weighted_cosine: number;
  mean_cosine: number;
  weighted_band95: Band;
  weighted_band99: Band;
  sigma: number[];
  cosine: number[];
  rel_gap: number[];
  min_rel_gap: number;
  salience_norm: number;
  /** Present (true) when the head's weights held NaN/Inf (svd --allow-nonfinite): its numbers are not meaningful. */
  nonfinite?: boolean;
}

export interface LayerSummary {
  layer: number;
  depth: number;
  mean_weighted_cosine: number;
  mean_plain_cosine: number;
  heads: HeadSummary[];
}

/** The statistics of an svd run (summary.json without the manifest header). */
export interface SvdStats {
  kind: 'svd';
  dims: { layers: number; heads: number; kv_heads: number; width: number; head_dim: number };
  index_base: 0;
  sigma_scale: string;
  sign_convention: string;
  space: string;
  rel_gap_definition: string;
  chance: { d: number; mode95: Band; mode99: Band; weighted_mean_method: string };
  layers: LayerSummary[];
}

/** The content of summary.json. */
export type SvdSummary = Omit<ManifestHeader, 'model'> & { model: ModelInfo } & SvdStats & { scan?: unknown };

/** Reads a finished run's summary.json (compare, scan, serve use it). */
export function readSvdSummary(dir: string): SvdSummary {
  const p = join(dir, 'summary.json');
  if (!existsSync(p)) throw new UserError(`${dir}: no summary.json; run \`qkscope svd <model> --out ${dir}\` first (or the run was interrupted)`);
  let s: SvdSummary;
  try {
    s = JSON.parse(readFileSync(p, 'utf8'));
  } catch {
    throw new UserError(`${p}: not valid JSON; re-run qkscope svd`);
  }
  if (s?.kind !== 'svd' || !Array.isArray(s.layers)) throw new UserError(`${p}: not a qkscope svd summary`);
  return s;
}

/** A per-layer anisotropy baseline stored with a run (docs/method.md §3). */
export interface StoredBaseline {
  /** `anisotropy.json` (qkscope anisotropy --run), or `scan` (the scan's summary section). */
  source: 'anisotropy.json' | 'scan';
  layers: Map<number, { value: number; images: number | null; interval: [number, number] | null }>;
}

/**
 * The run's own anisotropy baseline, as `compare --relative` reads it: RUN/anisotropy.json when
 * present, else the per-layer values the scan wrote into summary.json (`scan.layers_detail`).
 * Null when the run has neither; a UserError when anisotropy.json is unreadable.
 */
export function readStoredBaseline(dir: string, summary: Pick<SvdSummary, 'scan'>): StoredBaseline | null {
  const p = join(dir, 'anisotropy.json');
  const layers: StoredBaseline['layers'] = new Map();
  type Row = { layer?: unknown; anisotropy?: unknown; images?: unknown; anisotropy_interval?: unknown };
  const take = (rows: unknown) => {
    for (const l of Array.isArray(rows) ? (rows as Row[]) : []) {
      if (typeof l?.layer !== 'number' || typeof l.anisotropy !== 'number' || !Number.isFinite(l.anisotropy)) continue;
      const iv = Array.isArray(l.anisotropy_interval) && l.anisotropy_interval.length === 2 ? (l.anisotropy_interval as [number, number]) : null;
      layers.set(l.layer, { value: l.anisotropy, images: typeof l.images === 'number' ? l.images : null, interval: iv });
    }
  };
  if (existsSync(p)) {
    let j: { layers?: unknown };
    try {
      j = JSON.parse(readFileSync(p, 'utf8'));
    } catch {
      throw new UserError(`${p}: not valid JSON; re-run qkscope anisotropy`);
    }
    take(j?.layers);
    if (layers.size) return { source: 'anisotropy.json', layers };
  }
  const scan = summary.scan as { layers_detail?: unknown } | undefined;
  take(scan?.layers_detail);
  return layers.size ? { source: 'scan', layers } : null;
}

/** An svd run read back: summary.json and its arrays, each read from disk when first asked for. */
export interface SvdRunArrays {
  summary: SvdSummary;
  /** [L, H, d_h] σ_n (unscaled). */
  sigma(): NpyArray;
  /** [L, H, d_h] c_n. */
  cosine(): NpyArray;
  /** [L, H, d, d_h]: column n is u_n. */
  U(): NpyArray;
  /** [L, H, d, d_h]: column n is v_n. */
  V(): NpyArray;
  /** [L, H, d] s = W_kᵀ b_q. */
  salience(): NpyArray;
}

export function readSvdRun(dir: string): SvdRunArrays {
  const summary = readSvdSummary(dir);
  const cache = new Map<string, NpyArray>();
  const get = (name: string) => () => {
    let a = cache.get(name);
    if (!a) cache.set(name, (a = readNpy(join(dir, name))));
    return a;
  };
  return { summary, sigma: get('singular_values.npy'), cosine: get('cosine.npy'), U: get('U.npy'), V: get('V.npy'), salience: get('key_salience.npy') };
}
