/**
 * `top`: the top images of one mode of a scan, with their scores (read from run.db; nothing is
 * computed or written). The result is what `qkscope top --json` prints.
 */
import { checkMode, modeInfo, scanProgress, topList, type ScanRun } from '../store/scan-run.js';

export interface TopOptions {
  layer: number;
  head: number;
  mode: number;
  sign: 1 | -1 | 'both';
}

export interface TopEntryOut {
  rank: number;
  score: number;
  qmax: number;
  kmax: number;
  q_token: number;
  k_token: number;
  q_mean: number;
  k_mean: number;
  q_top5: number;
  k_top5: number;
  image_id: number;
  path: string;
}

export interface TopResult {
  run: string;
  layer: number;
  head: number;
  mode: number;
  index_base: 0;
  sigma: number;
  cosine: number;
  anisotropy: number | null;
  relative_cosine: number | null;
  embedding: string;
  status: string;
  images: { total: number; done: number; skipped: number };
  patch_grid: [number, number];
  lists: { sign: '+' | '-'; entries: TopEntryOut[] }[];
}

export function runTop(r: ScanRun, o: TopOptions): TopResult {
  checkMode(r, o.layer, o.head, o.mode);
  const signs: (1 | -1)[] = o.sign === 'both' ? [1, -1] : [o.sign];
  const info = modeInfo(r, o.layer, o.head, o.mode);
  return {
    run: r.dir,
    layer: o.layer,
    head: o.head,
    mode: o.mode,
    index_base: 0,
    sigma: info.sigma,
    cosine: info.cosine,
    anisotropy: info.anisotropy,
    relative_cosine: info.anisotropy === null ? null : info.cosine - info.anisotropy,
    embedding: r.meta.embedding,
    status: r.meta.status,
    images: scanProgress(r),
    patch_grid: r.meta.patch_grid,
    lists: signs.map((sign) => ({
      sign: sign > 0 ? '+' : '-',
      entries: topList(r, o.layer, o.head, o.mode, sign).map((e) => ({
        rank: e.rank,
        score: e.score,
        qmax: e.qmax,
        kmax: e.kmax,
        q_token: e.qToken,
        k_token: e.kToken,
        q_mean: e.qMean,
        k_mean: e.kMean,
        q_top5: e.qTop5,
        k_top5: e.kTop5,
        image_id: e.id,
        path: e.path,
      })),
    })),
  };
}
