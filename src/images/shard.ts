/**
 * `--shard i/N`: which part of the image list this process scans. Shard i of N covers the ids
 * [⌊i·n/N⌋, ⌊(i+1)·n/N⌋) of the n images (contiguous, so a shard reads whole tar shards and
 * Parquet row groups in order). `--shard auto/N` (or just `N`) takes i from the job array:
 * SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN (Slurm `--array`), else JOB_COMPLETION_INDEX
 * (Kubernetes Indexed Jobs).
 */
import { UserError } from '../errors.js';

export interface Shard {
  index: number;
  count: number;
}

export function parseShard(value: string | undefined, env: NodeJS.ProcessEnv = process.env): Shard {
  if (value === undefined) return { index: 0, count: 1 };
  const v = value.trim();
  const m = /^(?:(\d+|auto)\/)?(\d+)$/.exec(v);
  if (!m) throw new UserError(`--shard ${value}: expected i/N (0-based shard i of N), auto/N or N (index from SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX)`);
  const count = Number(m[2]);
  if (!Number.isInteger(count) || count < 1) throw new UserError(`--shard ${value}: the number of shards must be at least 1`);
  let index: number;
  if (m[1] === undefined || m[1] === 'auto') {
    if (env.SLURM_ARRAY_TASK_ID !== undefined && env.SLURM_ARRAY_TASK_ID !== '') {
      index = Number(env.SLURM_ARRAY_TASK_ID) - Number(env.SLURM_ARRAY_TASK_MIN ?? 0);
      if (!Number.isInteger(index)) throw new UserError(`--shard ${value}: SLURM_ARRAY_TASK_ID=${env.SLURM_ARRAY_TASK_ID} is not a whole number`);
    } else if (env.JOB_COMPLETION_INDEX !== undefined && env.JOB_COMPLETION_INDEX !== '') {
      index = Number(env.JOB_COMPLETION_INDEX);
      if (!Number.isInteger(index)) throw new UserError(`--shard ${value}: JOB_COMPLETION_INDEX=${env.JOB_COMPLETION_INDEX} is not a whole number`);
    } else {
      throw new UserError(`--shard ${value}: no shard index; give i/${count}, or run inside a Slurm job array (SLURM_ARRAY_TASK_ID) or a Kubernetes Indexed Job (JOB_COMPLETION_INDEX)`);
    }
  } else index = Number(m[1]);
  if (index < 0 || index >= count) throw new UserError(`--shard ${value}: shard index ${index} is outside 0..${count - 1}`);
  return { index, count };
}

/** The ids [start, end) of shard `s` of `n` images. */
export function shardRange(s: Shard, n: number): [number, number] {
  return [Math.floor((s.index * n) / s.count), Math.floor(((s.index + 1) * n) / s.count)];
}

/** Replaces `{shard}` in an output path with the zero-padded shard index. */
export function shardPath(out: string, s: Shard): string {
  const width = String(Math.max(0, s.count - 1)).length;
  return out.replace(/\{shard\}/g, String(s.index).padStart(width, '0'));
}
