import { existsSync, readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { UserError } from '../errors.js';
import { readRegularFile, statOrNull } from './files.js';
import { HubRepoNotFound, parseHubId, resolveHubModel, type HubOptions } from './hub.js';
import { SafetensorsFile } from './safetensors.js';
import { ShardedSource } from './sharded.js';
import { legacyTorchError, lfsPointerError, sniffFile } from './sniff.js';
import { pickStateDict, TorchCheckpoint } from './torch.js';
import type { TensorSource } from './types.js';

export type CheckpointFormat = 'safetensors' | 'sharded-safetensors' | 'torch';

export interface OpenedModel {
  /** The model directory (HF layout, hub snapshot, or the folder of a single file). */
  dir: string | null;
  /** The weights file (the index for sharded weights). */
  file: string | null;
  config: Record<string, unknown> | null;
  preprocessorConfig: Record<string, unknown> | null;
  source: TensorSource;
  format: CheckpointFormat;
  /** For hub models: org/name, and the revision and commit served. */
  hubId?: string;
  revision?: string;
  commit?: string;
  /** For torch checkpoints: which state dict was taken (null: the root itself). */
  part?: string | null;
  close(): Promise<void>;
}

export interface OpenOptions {
  offline?: boolean;
  revision?: string;
  /** A state dict inside a torch checkpoint: encoder, predictor, target_encoder, model, … */
  part?: string;
  /** Cache, endpoint, token and environment overrides for hub ids (tests, tools). */
  hub?: Omit<HubOptions, 'offline' | 'revision'>;
}

/** Weight files of a model directory, in order of preference. */
const DIR_WEIGHTS = ['model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin', 'open_clip_pytorch_model.bin'];

/**
 * Opens a model given as a directory (HF or timm layout), a single checkpoint file
 * (.safetensors, .bin, .pth, .pth.tar, .pt, or a safetensors index), or a Hugging Face id
 * `org/name[@revision]` (only when no such local path exists).
 */
export async function openModel(input: string, opts: OpenOptions = {}): Promise<OpenedModel> {
  const st = statOrNull(input);
  if (!st) {
    if (!parseHubId(input)) throw new UserError(`${input}: no such file or directory; give a model directory, a checkpoint file or a Hugging Face id org/name`);
    let snap;
    try {
      snap = await resolveHubModel(input, { ...opts.hub, offline: opts.offline, revision: opts.revision });
    } catch (e) {
      if (e instanceof HubRepoNotFound) {
        throw new UserError(`${input}: no such file or directory, and ${e.message}; give a model directory, a checkpoint file or a Hugging Face id org/name`);
      }
      throw e;
    }
    const m = await openDir(snap.dir, opts.part);
    return { ...m, hubId: snap.repoId, revision: snap.revision, commit: snap.commit };
  }
  if (opts.revision) throw new UserError(`${input}: --revision applies to Hugging Face ids only, not to local paths; drop it`);
  return st.isDirectory() ? openDir(input, opts.part) : openFile(input, opts.part, true);
}

/** Cap on config.json / preprocessor_config.json: real ones are a few kilobytes. */
const MAX_CONFIG_BYTES = 16 * 2 ** 20;

function readJson(path: string): Record<string, unknown> | null {
  if (!statOrNull(path)) return null;
  const text = readRegularFile(path, MAX_CONFIG_BYTES, 'JSON config').toString('utf8');
  try {
    const v = JSON.parse(text);
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    if (text.startsWith('version https://git-lfs')) throw lfsPointerError(path);
  }
  throw new UserError(`${path}: is not a JSON object; re-download it or fix the file`);
}

async function openDir(dir: string, part: string | undefined): Promise<OpenedModel> {
  const weights = DIR_WEIGHTS.find((w) => existsSync(join(dir, w)));
  if (!weights) {
    const found = readdirSync(dir).sort();
    if (found.includes('pytorch_model.bin.index.json')) {
      throw new UserError(`${dir}: weights sharded as .bin files are not supported; download the model's safetensors files, or convert them to safetensors`);
    }
    const list = found.length ? found.slice(0, 20).join(', ') + (found.length > 20 ? ', …' : '') : 'nothing';
    throw new UserError(
      `${dir}: no model weights found (it has: ${list}); expected model.safetensors, model.safetensors.index.json or pytorch_model.bin, or give a checkpoint file`,
    );
  }
  return openFile(join(dir, weights), part, false);
}

async function openFile(file: string, part: string | undefined, single: boolean): Promise<OpenedModel> {
  const dir = dirname(file);
  // A lone checkpoint takes the config beside it if there is one (HF layout read file by file).
  const config = readJson(join(dir, 'config.json'));
  const preprocessorConfig = readJson(join(dir, 'preprocessor_config.json'));
  const base = { dir, file, config, preprocessorConfig };
  const noPart = (what: string) => {
    if (part) throw new UserError(`${file}: --part applies to PyTorch checkpoints (.bin, .pth) only, and this is ${what}; drop --part`);
  };
  if (basename(file).endsWith('.index.json')) {
    noPart('a safetensors index');
    const source = await ShardedSource.open(file);
    return { ...base, source, format: 'sharded-safetensors', close: () => source.close() };
  }
  const kind = sniffFile(file);
  if (kind === 'zip') {
    const ckpt = await TorchCheckpoint.open(file);
    try {
      const picked = pickStateDict(ckpt.root, file, part);
      const location = picked.part ? `${file} [${picked.part}]` : file;
      // DistributedDataParallel saves names as 'module.<name>'.
      const source = ckpt.source(picked.dict, { location, prefixStrip: 'module.', ownsFile: true });
      return { ...base, source, format: 'torch', part: picked.part, close: () => source.close() };
    } catch (e) {
      await ckpt.close();
      throw e;
    }
  }
  if (kind === 'safetensors' || (kind === 'unknown' && file.endsWith('.safetensors'))) {
    noPart('a safetensors file');
    const source = await SafetensorsFile.open(file);
    return { ...base, source, format: 'safetensors', close: () => source.close() };
  }
  if (kind === 'lfs-pointer') throw lfsPointerError(file);
  if (kind === 'torch-legacy' || kind === 'tar') throw legacyTorchError(file);
  if (kind === 'empty') throw new UserError(`${file}: is empty; re-download it`);
  if (kind === 'pickle') throw new UserError(`${file}: is a plain pickle, not a torch.save checkpoint; re-save the weights with torch.save(state_dict, p)`);
  throw new UserError(
    `${file}: is neither a safetensors file nor a PyTorch checkpoint${single ? '' : ' (damaged download?)'}; re-download it or give another file`,
  );
}
