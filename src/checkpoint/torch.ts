import type { FileHandle } from 'node:fs/promises';
import { UserError } from '../errors.js';
import { decode } from './dtype.js';
import { openRegular } from './files.js';
import { printable } from './printable.js';
import { isDict, placeholder, PyGlobal, pyClassOf, pyState, unpickle, UnsafePickle, type PyDict } from './pickle.js';
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

function ints(x: unknown, what: string): number[] {
  if (!Array.isArray(x) || !x.every((v) => typeof v === 'number' && Number.isSafeInteger(v))) throw new Error(`a tensor's ${what} is not a tuple of integers`);
  return x as number[];
}

/**
 * torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...): the view is checked
 * against its storage here, once, so reads never index outside it (torch would refuse these
 * views too: negative strides do not exist, and a view cannot reach past its storage).
 * Overlapping views (stride 0: `expand`ed buffers) stay valid: they are inside their storage.
 */
function rebuildTensor(args: unknown[]): TensorDesc {
  const [storage, offset, size, stride] = args;
  if (!(storage instanceof StorageRef)) throw new Error('malformed _rebuild_tensor arguments');
  const where = `a tensor on storage data/${storage.key}`;
  const shape = ints(size, 'shape');
  const strides = ints(stride, 'stride');
  if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) throw new Error(`${where} has an invalid storage offset ${String(offset)}`);
  if (shape.length !== strides.length) throw new Error(`${where} has shape [${shape}] but stride [${strides}]`);
  if (shape.some((x) => x < 0)) throw new Error(`${where} has a negative size in shape [${shape}]`);
  if (strides.some((x) => x < 0)) throw new Error(`${where} has a negative stride in [${strides}]`);
  let numel = 1;
  let last = offset;
  for (let d = 0; d < shape.length; d++) {
    numel *= shape[d];
    if (shape[d] > 0) last += (shape[d] - 1) * strides[d];
  }
  if (!Number.isSafeInteger(numel) || !Number.isSafeInteger(last)) throw new Error(`${where} has an impossible shape [${shape}] / stride [${strides}]`);
  if (numel > 0 && last >= storage.numel) {
    throw new Error(`${where} reaches element ${last} but its storage has ${storage.numel} elements`);
  }
  return new TensorDesc(storage, offset, shape, strides);
}

/** Allow-listed torch callables (with those in pickle.ts, the whole list of what may be called). */
export const TORCH_GLOBALS: Record<string, (args: unknown[]) => unknown> = {
  'torch._utils._rebuild_tensor_v2': rebuildTensor,
  'torch._utils._rebuild_tensor': rebuildTensor,
  'torch._utils._rebuild_parameter': (a) => a[0],
  'torch._utils._rebuild_parameter_with_state': (a) => a[0],
  'torch.nn.parameter.Parameter': (a) => a[0],
  'torch.Size': (a) => (Array.isArray(a[0]) ? [...a[0]] : []),
  'torch.device': (a) => a.filter((x) => typeof x === 'string' || typeof x === 'number').join(':'),
  // Tensors of a subclass, or with Python attributes: (func, type, args, state) → func(*args).
  'torch._tensor._rebuild_from_type_v2': rebuildFromType,
  'torch._tensor._rebuild_from_type': rebuildFromType,
};
// Tensors we do not read as weights (quantized, sparse, meta, numpy-backed, ...) stay inert.
for (const f of ['_rebuild_tensor_v3', '_rebuild_qtensor', '_rebuild_sparse_tensor', '_rebuild_meta_tensor_no_storage', '_rebuild_wrapper_subclass', '_rebuild_device_tensor_from_numpy', '_rebuild_device_tensor_from_cpu_tensor']) {
  TORCH_GLOBALS[`torch._utils.${f}`] = (a) => placeholder(`torch._utils.${f}`, a);
}
TORCH_GLOBALS['torch.serialization._get_layout'] = (a) => placeholder('torch.serialization._get_layout', a);

function rebuildFromType(a: unknown[]): unknown {
  const [fn, , args] = a;
  if (!(fn instanceof PyGlobal) || !fn.call) {
    throw new UnsafePickle(`it rebuilds a tensor by calling ${fn instanceof PyGlobal ? fn.fullName : 'a value that is not a global'}, which is not on the allow-list`);
  }
  return fn.call(Array.isArray(args) ? args : []);
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
    const { fh, size } = await openRegular(path);
    try {
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
      if (order && (await zip.readAll(order, 64)).toString('latin1').trim() === 'big') {
        throw new UserError(`${path}: was saved on a big-endian machine; re-save it on a little-endian one (x86, ARM)`);
      }
      const root = unpickle(await zip.readAll(pkl, MAX_PICKLE_BYTES), {
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
  const key = pid[2];
  const numel = pid[4];
  if ((typeof key !== 'string' && typeof key !== 'number') || !/^[\w.-]{1,64}$/.test(String(key)) || typeof numel !== 'number' || !Number.isSafeInteger(numel) || numel < 0) {
    throw new UserError(`${path}: data.pkl names a storage with key ${JSON.stringify(String(key).slice(0, 40))} and ${String(numel).slice(0, 40)} elements; the file is damaged, re-download it`);
  }
  const [dtype, size] = STORAGES[pid[1].name] ?? [`unknown(${pid[1].fullName})`, 1];
  return new StorageRef(String(key), dtype, size, String(pid[3]), numel);
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
    for (const [name, t] of flattenTensors(dict, location)) {
      this.tensors.set(prefixStrip && name.startsWith(prefixStrip) ? name.slice(prefixStrip.length) : name, t);
    }
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

/** Cap on data.pkl once inflated: real ones are kilobytes (a few MB with inline numpy arrays). */
export const MAX_PICKLE_BYTES = 64 * 2 ** 20;
/** Nesting of tensor names (a.b.c...) and how many there may be: far beyond any real model. */
const MAX_NAME_DEPTH = 64;
const MAX_TENSORS = 1_000_000;

/** The BUILD state of a pickled `nn.Module` stand-in (its `__dict__`), or undefined. */
function moduleState(x: unknown): PyDict | undefined {
  if (!pyClassOf(x)) return undefined;
  let st = pyState(x);
  if (Array.isArray(st)) st = st[0]; // (state, slotstate)
  return isDict(st) && (isDict(st._parameters) || isDict(st._modules)) ? st : undefined;
}

/** True for a whole pickled `nn.Module` (an inert stand-in with `_parameters` / `_modules`). */
export function isModule(x: unknown): boolean {
  return moduleState(x) !== undefined;
}

/**
 * The tensors under `root`, named as `state_dict()` names them: plain nested dicts are joined
 * with '.', and a whole pickled module contributes its `_parameters`, its persistent `_buffers`
 * and those of its `_modules`, recursively. Each container is visited once (a shared or cyclic
 * reference is not expanded again), names nest at most MAX_NAME_DEPTH deep.
 */
export function flattenTensors(root: unknown, location: string): Map<string, TensorDesc> {
  const out = new Map<string, TensorDesc>();
  const seen = new Set<unknown>();
  const add = (name: string, v: unknown) => {
    if (!(v instanceof TensorDesc)) return;
    if (out.size >= MAX_TENSORS) throw new UserError(`${location}: holds more than ${MAX_TENSORS} tensors; the file is damaged or crafted`);
    out.set(name, v);
  };
  const walk = (x: unknown, prefix: string, depth: number): void => {
    if (seen.has(x)) return;
    seen.add(x);
    if (depth > MAX_NAME_DEPTH) {
      throw new UserError(`${location}: tensor names nest deeper than ${MAX_NAME_DEPTH} levels (at ${prefix.slice(0, 60)}…); the file is damaged or crafted`);
    }
    const st = moduleState(x);
    if (st) {
      const skip = new Set(Array.isArray(st._non_persistent_buffers_set) ? st._non_persistent_buffers_set : []);
      if (isDict(st._parameters)) for (const [k, v] of Object.entries(st._parameters)) add(prefix + k, v);
      if (isDict(st._buffers)) for (const [k, v] of Object.entries(st._buffers)) if (!skip.has(k)) add(prefix + k, v);
      if (isDict(st._modules)) for (const [k, v] of Object.entries(st._modules)) if (v !== null) walk(v, `${prefix}${k}.`, depth + 1);
      return;
    }
    if (!isDict(x) || pyClassOf(x)) return;
    for (const [k, v] of Object.entries(x)) {
      if (v instanceof TensorDesc) add(prefix + k, v);
      else if (isDict(v) && (!pyClassOf(v) || isModule(v))) walk(v, `${prefix}${k}.`, depth + 1);
    }
  };
  walk(root, '', 0);
  return out;
}

/** How many tensors a dict holds directly (values that are tensors). */
function tensorCount(x: unknown): number {
  return isDict(x) ? Object.values(x).filter((v) => v instanceof TensorDesc).length : 0;
}

/** Keys under which checkpoints wrap their weights, in order of preference (also the default part). */
const DEFAULT_PARTS = ['model', 'state_dict', 'model_state_dict', 'model_state', 'module', 'encoder'];

/**
 * The path of keys from `v` to its weights: [] when `v` is itself a state dict (it holds
 * tensors) or a whole pickled module; through wrapper keys (state_dict, model, module, ...)
 * when it wraps one, possibly nested ({'state_dict': {'model': {...}}}); null when neither.
 */
function weightsPath(v: unknown, depth = 0): string[] | null {
  if (tensorCount(v) > 0 || isModule(v)) return [];
  if (!isDict(v) || pyClassOf(v) || depth >= 8) return null;
  for (const p of DEFAULT_PARTS) {
    if (!(p in v)) continue;
    const r = weightsPath(v[p], depth + 1);
    if (r) return [p, ...r];
  }
  return null;
}

function at(root: unknown, path: string[]): PyDict {
  return path.reduce<unknown>((o, k) => (o as PyDict)[k], root) as PyDict;
}

/** Top-level keys whose values are (or wrap) state dicts or whole modules: what `part` may name. */
export function stateDictParts(root: unknown): string[] {
  return isDict(root) && !pyClassOf(root) ? Object.keys(root).filter((k) => weightsPath(root[k]) !== null) : [];
}

/**
 * Picks the state dict to analyse: `part` if given (a top-level key, or a dotted path), else the
 * root when it holds tensors itself or is a whole module, else the first of model/state_dict/
 * model_state_dict/model_state/module/encoder that holds (or, nested, wraps) weights, else the
 * only top-level entry that does. Anything else is a UserError listing the parts.
 */
export function pickStateDict(root: unknown, path: string, part?: string): { dict: PyDict; part: string | null } {
  const parts = stateDictParts(root);
  const list = parts.length ? parts.map((p) => printable(p, 40)).join(', ') : 'none';
  if (part) {
    let v: unknown = isDict(root) ? root[part] : undefined;
    if (v === undefined && isDict(root)) {
      v = part.split('.').reduce<unknown>((o, k) => (isDict(o) ? o[k] : undefined), root);
    }
    const inner = weightsPath(v);
    if (!inner) throw new UserError(`${path}: has no state dict '${printable(part)}'; choose --part from: ${list}`);
    return { dict: at(v, inner), part: [part, ...inner].join('.') };
  }
  const direct = weightsPath(root);
  if (direct) return { dict: at(root, direct), part: direct.length ? direct.join('.') : null };
  if (parts.length === 1) {
    const inner = weightsPath((root as PyDict)[parts[0]])!;
    return { dict: at((root as PyDict)[parts[0]], inner), part: [parts[0], ...inner].join('.') };
  }
  if (parts.length === 0) {
    const keys = isDict(root) ? Object.keys(root).slice(0, 12).map((k) => printable(k, 40)).join(', ') || 'none' : root === null ? 'None' : Array.isArray(root) ? 'a list' : typeof root;
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
