/**
 * An svd run directory as the rest of the project reads it: the format of `summary.json`
 * (documented in the README) and its reader. jobs/svd.ts writes it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Band } from '../analysis/types.js';
import { UserError } from '../errors.js';
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
