import { dirname, isAbsolute, join, normalize } from 'node:path';
import { UserError } from '../errors.js';
import { notRegularError, readRegularFile, statOrNull } from './files.js';
import { printable } from './printable.js';
import { SafetensorsFile } from './safetensors.js';
import type { FloatArray, TensorInfo, TensorSource } from './types.js';

/** Cap on the index JSON: one of 100k tensors is ~10 MB. */
const MAX_INDEX_BYTES = 64 * 2 ** 20;

/**
 * Weights split over several safetensors files by a `model.safetensors.index.json`
 * (`weight_map`: tensor name → shard file beside the index). Shards are opened on first use:
 * the weight-only analysis of a large model may touch only some of them.
 */
export class ShardedSource implements TensorSource {
  private shards = new Map<string, SafetensorsFile>();

  private constructor(
    readonly location: string,
    private dir: string,
    private weightMap: Map<string, string>,
    readonly metadata: Record<string, unknown>,
  ) {}

  static async open(indexPath: string): Promise<ShardedSource> {
    const text = readRegularFile(indexPath, MAX_INDEX_BYTES, 'safetensors index').toString('utf8');
    const bad = (why: string) => new UserError(`${indexPath}: not a valid safetensors index (${why}); re-download the model`);
    let index: { weight_map?: unknown; metadata?: unknown };
    try {
      index = JSON.parse(text);
    } catch {
      if (text.startsWith('version https://git-lfs')) throw new UserError(`${indexPath}: is a Git LFS pointer; run \`git lfs pull\` in the clone`);
      throw bad('not JSON');
    }
    const wm = index?.weight_map;
    if (!wm || typeof wm !== 'object' || Array.isArray(wm)) throw bad('no weight_map');
    const dir = dirname(indexPath);
    const weightMap = new Map<string, string>();
    for (const [name, file] of Object.entries(wm as Record<string, unknown>)) {
      if (typeof file !== 'string' || isAbsolute(file) || normalize(file).startsWith('..')) throw bad(`tensor ${printable(name, 60)} maps to ${printable(JSON.stringify(file) ?? String(file), 60)}`);
      weightMap.set(name, file);
    }
    // Fail now, not an hour into an analysis, if a shard never arrived.
    for (const file of new Set(weightMap.values())) {
      const st = statOrNull(join(dir, file));
      if (!st) throw new UserError(`${join(dir, file)}: shard listed in ${indexPath} is missing; download it (or the whole model) again`);
      if (!st.isFile()) throw notRegularError(join(dir, file), st, 'safetensors shard');
    }
    const metadata = (index.metadata && typeof index.metadata === 'object' ? index.metadata : {}) as Record<string, unknown>;
    return new ShardedSource(indexPath, dir, weightMap, metadata);
  }

  /** Shard files opened so far (tests check laziness). */
  openedShards(): string[] {
    return [...this.shards.keys()];
  }

  private shard(name: string): SafetensorsFile | undefined {
    const file = this.weightMap.get(name);
    if (file === undefined) return undefined;
    let s = this.shards.get(file);
    if (!s) {
      const path = join(this.dir, file);
      if (!statOrNull(path)) throw new UserError(`${path}: shard listed in ${this.location} is missing; download it (or the whole model) again`);
      s = SafetensorsFile.openSync(path);
      this.shards.set(file, s);
    }
    if (!s.info(name)) throw new UserError(`${s.location}: tensor ${name} is not in this shard although ${this.location} says so; re-download the model`);
    return s;
  }

  names(): string[] {
    return [...this.weightMap.keys()];
  }

  info(name: string): TensorInfo | undefined {
    return this.shard(name)?.info(name);
  }

  async read(name: string, rowStart?: number, rowEnd?: number): Promise<FloatArray> {
    const s = this.shard(name);
    if (!s) throw new UserError(`${this.location}: tensor ${name} is missing; the checkpoint is incomplete or of another architecture`);
    return s.read(name, rowStart, rowEnd);
  }

  async close(): Promise<void> {
    for (const s of this.shards.values()) await s.close();
    this.shards.clear();
  }
}
