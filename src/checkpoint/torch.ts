import { open, type FileHandle } from 'node:fs/promises';
import { UserError } from '../errors.js';
import { decode } from './dtype.js';
import { isDict, placeholder, PyGlobal, pyClassOf, unpickle, type PyDict } from './pickle.js';
import { classify, legacyTorchError, lfsPointerError } from './sniff.js';
import type { DType, FloatArray, TensorInfo, TensorSource } from './types.js';
import { ZipReader, type ZipEntry } from './zip.js';

/** Storage classes named in torch's persistent ids → safetensors-style dtype and element size. */
const STORAGES: Record<string, [string, number]> = {
  FloatStorage: ['F32', 4],
  HalfStorage: ['F16', 2],
  BFloat16Storage: ['BF16', 2],
  DoubleStorage: ['F64', 8],
  LongStorage: ['I64', 8],
  IntStorage: ['I32', 4],
  ShortStorage: ['I16', 2],
  CharStorage: ['I8', 1],
  ByteStorage: ['U8', 1],
  BoolStorage: ['BOOL', 1],
  ComplexFloatStorage: ['C64', 8],
  ComplexDoubleStorage: ['C128', 16],
  UntypedStorage: ['U8', 1],
  Float8_e4m3fnStorage: ['F8_E4M3', 1],
  Float8_e5m2Storage: ['F8_E5M2', 1],
};
const FLOAT = new Set(['F32', 'F16', 'BF16', 'F64']);

/** One storage record `<archive>/data/<key>` of the checkpoint. */
export class StorageRef {
  constructor(
    readonly key: string,
    readonly dtype: string,
    readonly elementSize: number,
    readonly location: string,
    readonly numel: number,
  ) {}
}

/** A tensor inside a checkpoint, not yet read: where its elements are and how they are laid out. */
export class TensorDesc {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number, // in elements
    readonly shape: number[],
    readonly stride: number[],
  ) {}
  get dtype(): string {
    return this.storage.dtype;
  }
  get numel(): number {
    return this.shape.reduce((a, x) => a * x, 1);
  }
  get contiguous(): boolean {
    let expect = 1;
    for (let d = this.shape.length - 1; d >= 0; d--) {
      if (this.shape[d] !== 1 && this.stride[d] !== expect) return false;
      expect *= this.shape[d];
    }
    return true;
  }
}

export function isTensor(x: unknown): x is TensorDesc {
  return x instanceof TensorDesc;
}

function ints(x: unknown): number[] {
  if (!Array.isArray(x) || !x.every((v) => typeof v === 'number' && Number.isInteger(v))) throw new Error('expected a tuple of ints');
  return x as number[];
}

function rebuildTensor(args: unknown[]): TensorDesc {
  const [storage, offset, size, stride] = args;
  if (!(storage instanceof StorageRef) || typeof offset !== 'number') throw new Error('malformed _rebuild_tensor arguments');
  return new TensorDesc(storage, offset, ints(size), ints(stride));
}

const TORCH_GLOBALS: Record<string, (args: unknown[]) => unknown> = {
  'torch._utils._rebuild_tensor_v2': rebuildTensor,
  'torch._utils._rebuild_tensor': rebuildTensor,
  'torch._utils._rebuild_parameter': (a) => a[0],
  'torch._utils._rebuild_parameter_with_state': (a) => a[0],
  'torch.nn.parameter.Parameter': (a) => a[0],
  'torch.Size': (a) => (Array.isArray(a[0]) ? [...a[0]] : []),
  // Tensors of a subclass, or with Python attributes: (func, type, args, state) → func(*args).
  'torch._tensor._rebuild_from_type_v2': rebuildFromType,
  'torch._tensor._rebuild_from_type': rebuildFromType,
};

function rebuildFromType(a: unknown[]): unknown {
  const [fn, , args] = a;
  if (fn instanceof PyGlobal && fn.call && Array.isArray(args)) return fn.call(args);
  return placeholder('torch._tensor._rebuild_from_type_v2', a);
}

/**
 * A checkpoint written by torch.save (the zip format, default since torch 1.6). `root` is the
 * unpickled object tree with TensorDesc leaves; tensors are read on demand by positioned reads.
 */
export class TorchCheckpoint {
  private constructor(
    readonly path: string,
    private fh: FileHandle,
    private zip: ZipReader,
    private prefix: string,
    readonly root: unknown,
  ) {}

  /** Payload bytes read so far (data.pkl and tensor bytes), for tests of laziness. */
  get bytesRead(): number {
    return this.zip.bytesRead;
  }

  static async open(path: string): Promise<TorchCheckpoint> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (e) {
      throw new UserError(`${path}: cannot open (${(e as NodeJS.ErrnoException).code ?? e}); check the path`);
    }
    try {
      const size = (await fh.stat()).size;
      const head = Buffer.alloc(Math.min(512, size));
      await fh.read(head, 0, head.length, 0);
      const kind = classify(head, size);
      if (kind === 'lfs-pointer') throw lfsPointerError(path);
      if (kind === 'torch-legacy' || kind === 'tar') throw legacyTorchError(path);
      if (kind === 'empty') throw new UserError(`${path}: is empty; re-download it`);
      if (kind === 'safetensors') throw new UserError(`${path}: is a safetensors file, not a PyTorch pickle; open it as safetensors (rename it to .safetensors)`);
      if (kind !== 'zip') {
        throw new UserError(`${path}: is not a PyTorch checkpoint (no zip or torch.save signature); the file is damaged or of another format, re-download it`);
      }
      const zip = await ZipReader.open(path, fh, size);
      const first = zip.order[0] ?? '';
      const slash = first.indexOf('/');
      const prefix = slash >= 0 ? first.slice(0, slash + 1) : '';
      const pkl = zip.entries.get(`${prefix}data.pkl`);
      if (!pkl) {
        if (zip.entries.has(`${prefix}constants.pkl`) || zip.order.some((n) => n.startsWith(`${prefix}code/`))) {
          throw new UserError(`${path}: is a TorchScript archive (torch.jit.save), not a state dict; save the weights with torch.save(model.state_dict(), p)`);
        }
        throw new UserError(`${path}: is a zip file without data.pkl, not a torch.save checkpoint; give the model's weights file`);
      }
      const order = zip.entries.get(`${prefix}byteorder`);
      if (order && (await zip.readAll(order)).toString('latin1').trim() === 'big') {
        throw new UserError(`${path}: was saved on a big-endian machine; re-save it on a little-endian one (x86, ARM)`);
      }
      const root = unpickle(await zip.readAll(pkl), {
        location: path,
        globals: TORCH_GLOBALS,
        persistentLoad: (pid) => storageFromPid(pid, path),
      });
      return new TorchCheckpoint(path, fh, zip, prefix, root);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  /** Reads rows [rowStart, rowEnd) of the tensor's leading dimension as float32 (float64 for F64). */
  async read(t: TensorDesc, rowStart?: number, rowEnd?: number, name = 'tensor'): Promise<FloatArray> {
    if (!FLOAT.has(t.dtype)) throw new UserError(`${this.path}: tensor ${name} has dtype ${t.dtype}; only F32, F16, BF16 and F64 are supported`);
    const rows = t.shape.length === 0 ? 1 : t.shape[0];
    const r0 = rowStart ?? 0;
    const r1 = rowEnd ?? rows;
    if (r0 < 0 || r1 > rows || r0 > r1) throw new Error(`row range [${r0},${r1}) outside ${name} with ${rows} rows`);
    const dtype = t.dtype as DType;
    const es = t.storage.elementSize;
    const rest = t.shape.slice(1);
    const rowElems = rest.reduce((a, x) => a * x, 1);
    const count = (r1 - r0) * rowElems;
    if (count === 0) return decode(new Uint8Array(0), dtype);
    const entry = this.entry(t.storage);
    if (t.contiguous) {
      const first = t.offset + r0 * rowElems;
      return decode(await this.zip.readRange(entry, first * es, count * es), dtype);
    }
    // Non-contiguous (a transposed or sliced view): read the span the view touches, then gather.
    const s0 = t.shape.length ? t.stride[0] : 0;
    const lo = t.offset + r0 * s0;
    let hi = t.offset + (r1 - 1) * s0;
    for (let d = 1; d < t.shape.length; d++) hi += (t.shape[d] - 1) * t.stride[d];
    const span = decode(await this.zip.readRange(entry, lo * es, (hi - lo + 1) * es), dtype);
    const out = dtype === 'F64' ? new Float64Array(count) : new Float32Array(count);
    const idx = new Array<number>(rest.length).fill(0);
    for (let r = r0, o = 0; r < r1; r++) {
      const base = t.offset + r * s0 - lo;
      idx.fill(0);
      for (let k = 0; k < rowElems; k++) {
        let p = base;
        for (let d = 0; d < rest.length; d++) p += idx[d] * t.stride[d + 1];
        out[o++] = span[p];
        for (let d = rest.length - 1; d >= 0 && ++idx[d] === rest[d]; d--) idx[d] = 0;
      }
    }
    return out;
  }

  private entry(s: StorageRef): ZipEntry {
    const e = this.zip.entries.get(`${this.prefix}data/${s.key}`);
    if (!e) throw new UserError(`${this.path}: storage data/${s.key} is missing from the archive; the file is incomplete, re-download it`);
    if (e.size < s.numel * s.elementSize) {
      throw new UserError(`${this.path}: storage data/${s.key} has ${e.size} bytes but ${s.numel * s.elementSize} are expected; the file is damaged, re-download it`);
    }
    return e;
  }

  /** A TensorSource over one state dict inside this checkpoint (shares the open file). */
  source(dict: PyDict, opts: { location?: string; prefixStrip?: string; ownsFile?: boolean } = {}): TorchStateDictSource {
    return new TorchStateDictSource(this, dict, opts.location ?? this.path, opts.prefixStrip, opts.ownsFile ?? false);
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

function storageFromPid(pid: unknown, path: string): StorageRef {
  // ('storage', torch.FloatStorage, key, location, numel) — a legacy 6th item (view metadata) is ignored.
  if (!Array.isArray(pid) || pid[0] !== 'storage' || !(pid[1] instanceof PyGlobal)) {
    throw new UserError(`${path}: unexpected persistent id in data.pkl; not a torch.save checkpoint, re-save it with torch.save`);
  }
  const [dtype, size] = STORAGES[pid[1].name] ?? [`unknown(${pid[1].fullName})`, 1];
  return new StorageRef(String(pid[2]), dtype, size, String(pid[3]), Number(pid[4]));
}

/** The tensors of one state dict, by name (nested dicts are flattened with '.'). */
export class TorchStateDictSource implements TensorSource {
  private tensors = new Map<string, TensorDesc>();

  constructor(
    readonly checkpoint: TorchCheckpoint,
    dict: PyDict,
    readonly location: string,
    prefixStrip: string | undefined,
    private ownsFile: boolean,
  ) {
    const walk = (d: PyDict, prefix: string) => {
      for (const [k, v] of Object.entries(d)) {
        if (v instanceof TensorDesc) {
          const name = prefix + k;
          this.tensors.set(prefixStrip && name.startsWith(prefixStrip) ? name.slice(prefixStrip.length) : name, v);
        } else if (isDict(v) && !pyClassOf(v)) walk(v, `${prefix}${k}.`);
      }
    };
    walk(dict, '');
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  info(name: string): TensorInfo | undefined {
    const t = this.tensors.get(name);
    return t && { name, dtype: t.dtype as DType, shape: t.shape };
  }

  /** The descriptor behind a name (storage key, offset, strides). */
  desc(name: string): TensorDesc | undefined {
    return this.tensors.get(name);
  }

  async read(name: string, rowStart?: number, rowEnd?: number): Promise<FloatArray> {
    const t = this.tensors.get(name);
    if (!t) throw new UserError(`${this.location}: tensor ${name} is missing; the checkpoint is incomplete or of another architecture`);
    return this.checkpoint.read(t, rowStart, rowEnd, name);
  }

  async close(): Promise<void> {
    if (this.ownsFile) await this.checkpoint.close();
  }
}

/** How many tensors a dict holds directly (values that are tensors). */
function tensorCount(x: unknown): number {
  return isDict(x) ? Object.values(x).filter((v) => v instanceof TensorDesc).length : 0;
}

/** Top-level keys whose values are state dicts (dicts holding tensors): what `part` may name. */
export function stateDictParts(root: unknown): string[] {
  return isDict(root) ? Object.keys(root).filter((k) => tensorCount(root[k]) > 0) : [];
}

const DEFAULT_PARTS = ['model', 'state_dict', 'model_state_dict', 'module', 'encoder'];

/**
 * Picks the state dict to analyse: `part` if given (a top-level key, or a dotted path), else the
 * root when it holds tensors itself, else the first of model/state_dict/model_state_dict/module/
 * encoder present, else the only dict of tensors. Anything else is a UserError listing the parts.
 */
export function pickStateDict(root: unknown, path: string, part?: string): { dict: PyDict; part: string | null } {
  const parts = stateDictParts(root);
  const list = parts.length ? parts.join(', ') : 'none';
  if (part) {
    let v: unknown = isDict(root) ? root[part] : undefined;
    if (v === undefined && isDict(root)) {
      v = part.split('.').reduce<unknown>((o, k) => (isDict(o) ? o[k] : undefined), root);
    }
    if (tensorCount(v) === 0) throw new UserError(`${path}: has no state dict '${part}'; choose --part from: ${list}`);
    return { dict: v as PyDict, part };
  }
  if (tensorCount(root) > 0) return { dict: root as PyDict, part: null };
  for (const p of DEFAULT_PARTS) if (parts.includes(p)) return { dict: (root as PyDict)[p] as PyDict, part: p };
  if (parts.length === 1) return { dict: (root as PyDict)[parts[0]] as PyDict, part: parts[0] };
  if (parts.length === 0) {
    const keys = isDict(root) ? Object.keys(root).slice(0, 12).join(', ') || 'none' : typeof root;
    throw new UserError(`${path}: holds no tensors that could be model weights (top-level keys: ${keys}); give the model's weights file`);
  }
  throw new UserError(`${path}: holds several state dicts; choose one with --part: ${list}`);
}

/**
 * A TensorSource over one state dict of a torch checkpoint; closing it closes the file.
 * `pick` chooses the dict (default: pickStateDict's rules); names starting with `prefixStrip`
 * (e.g. 'module.' from DistributedDataParallel) lose that prefix.
 */
export async function torchStateDictSource(
  path: string,
  pick?: (root: unknown) => PyDict,
  prefixStrip?: string,
): Promise<TorchStateDictSource> {
  const ckpt = await TorchCheckpoint.open(path);
  try {
    let dict: PyDict;
    let location = path;
    if (pick) dict = pick(ckpt.root);
    else {
      const r = pickStateDict(ckpt.root, path);
      dict = r.dict;
      if (r.part) location = `${path} [${r.part}]`;
    }
    return ckpt.source(dict, { location, prefixStrip, ownsFile: true });
  } catch (e) {
    await ckpt.close();
    throw e;
  }
}
