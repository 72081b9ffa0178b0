/**
 * Writes checkpoints in torch.save's zip format (torch ≥ 1.6, as written by torch 2.x), so test
 * fixtures can stand in for real `pytorch_model.bin` / `.pth` / `.pth.tar` files without Python:
 * pickle protocol 2 with `torch._utils._rebuild_tensor_v2` and persistent ids
 * ('storage', torch.FloatStorage, key, 'cpu', numel); records `data.pkl`, `byteorder`,
 * `data/<key>` (sorted as strings, as torch sorts them), `version`, `.data/serialization_id`,
 * stored uncompressed and 64-byte aligned inside a folder named after the file.
 */
import { basename } from 'node:path';
import { encode } from '../../src/checkpoint/dtype.js';
import { Interned, Pickler, PyFloat, PyGlobalRef, PyReduce, PyTuple } from './pickle-write.js';
import type { TensorToWrite } from '../../src/checkpoint/safetensors.js';
import type { DType } from '../../src/checkpoint/types.js';
import { crc32, ZipWriter } from './zip-write.js';

export { PyFloat, PyTuple } from './pickle-write.js';

export type SaveDType = DType | 'I64';

const STORAGE_CLASS: Record<SaveDType, string> = {
  F32: 'FloatStorage',
  F16: 'HalfStorage',
  BF16: 'BFloat16Storage',
  F64: 'DoubleStorage',
  I64: 'LongStorage',
};

/** A tensor to save. With `stride`/`storageOffset`, `data` is the whole underlying storage (a view). */
export class TorchTensor {
  constructor(
    readonly dtype: SaveDType,
    readonly shape: number[],
    readonly data: ArrayLike<number>,
    readonly view?: { stride: number[]; storageOffset?: number },
  ) {
    const n = shape.reduce((a, x) => a * x, 1);
    if (!view && n !== data.length) throw new Error(`tensor of shape [${shape}] needs ${n} values, got ${data.length}`);
  }
  get stride(): number[] {
    if (this.view) return this.view.stride;
    const s = new Array<number>(this.shape.length);
    for (let d = this.shape.length - 1, acc = 1; d >= 0; d--) (s[d] = acc), (acc *= this.shape[d]);
    return s;
  }
}

/** An OrderedDict (what `model.state_dict()` returns); `attrs` become its __dict__ (e.g. `_metadata`). */
export class OrderedDictToSave {
  constructor(readonly entries: Record<string, unknown>, readonly attrs?: Record<string, unknown>) {}
}

/** An instance of some other Python class (argparse.Namespace, yacs CfgNode, …), as pickle saves it. */
export class PyObjectToSave {
  constructor(
    readonly module: string,
    readonly name: string,
    readonly opts: { items?: Record<string, unknown>; state?: unknown } = {},
  ) {}
}

export function torchTensor(dtype: SaveDType, shape: number[], data: ArrayLike<number>, view?: { stride: number[]; storageOffset?: number }): TorchTensor {
  return new TorchTensor(dtype, shape, data, view);
}

export function orderedDict(entries: Record<string, unknown>, attrs?: Record<string, unknown>): OrderedDictToSave {
  return new OrderedDictToSave(entries, attrs);
}

export function pyObject(module: string, name: string, opts?: { items?: Record<string, unknown>; state?: unknown }): PyObjectToSave {
  return new PyObjectToSave(module, name, opts);
}

export function pyFloat(x: number): PyFloat {
  return new PyFloat(x);
}

/** `model.state_dict()` of the given tensors: an OrderedDict with torch's `_metadata` attribute. */
export function stateDict(tensors: Record<string, TensorToWrite | TorchTensor>): OrderedDictToSave {
  const entries: Record<string, unknown> = {};
  for (const [k, t] of Object.entries(tensors)) entries[k] = t instanceof TorchTensor ? t : new TorchTensor(t.dtype, t.shape, t.data);
  return new OrderedDictToSave(entries, { _metadata: new OrderedDictToSave({ '': { version: 1 } }) });
}

/**
 * Writes `obj` like `torch.save(obj, path)`. Values: TorchTensor, plain objects (dict),
 * OrderedDictToSave, arrays (list), PyTuple, numbers (integral → int, else float; PyFloat for
 * 1.0), bigint, strings, booleans, null (None) and PyObjectToSave.
 */
export function writeTorchCheckpoint(path: string, obj: unknown, opts: { archiveName?: string; forceZip64?: boolean } = {}): void {
  const storages = new Map<TorchTensor, string>();
  const rebuild = new PyGlobalRef('torch._utils', '_rebuild_tensor_v2');
  const odict = new PyGlobalRef('collections', 'OrderedDict');
  const pickler = new Pickler({
    // The storage is a separate object from its tensor; we key it by the tensor that owns it.
    persistentId(o) {
      if (!(o instanceof StorageMarker)) return undefined;
      let key = storages.get(o.t);
      if (key === undefined) storages.set(o.t, (key = String(storages.size)));
      return new PyTuple(new Interned('storage'), new PyGlobalRef('torch', STORAGE_CLASS[o.t.dtype]), key, new Interned('cpu'), o.t.data.length);
    },
    reduce(o) {
      if (o instanceof TorchTensor) {
        // torch's Tensor.__reduce_ex__: (_rebuild_tensor_v2, (storage, offset, size, stride, requires_grad, OrderedDict()))
        const hooks = new PyReduce(odict, []);
        return new PyReduce(rebuild, [new StorageMarker(o), o.view?.storageOffset ?? 0, new PyTuple(...o.shape), new PyTuple(...o.stride), false, hooks]);
      }
      if (o instanceof OrderedDictToSave) {
        return new PyReduce(odict, [], { dictItems: Object.entries(o.entries), state: o.attrs ? { ...o.attrs } : undefined });
      }
      if (o instanceof PyObjectToSave) {
        const items = o.opts.items ? Object.entries(o.opts.items) : undefined;
        return new PyReduce(new PyGlobalRef(o.module, o.name), [], { newobj: true, dictItems: items, state: o.opts.state });
      }
      return undefined;
    },
  });
  const pkl = pickler.dump(obj);
  const stem = basename(path).replace(/\.[^.]*$/, '') || 'archive';
  const dir = `${opts.archiveName ?? stem}/`;
  const zip = new ZipWriter(path, { forceZip64: opts.forceZip64 });
  zip.add(`${dir}data.pkl`, pkl);
  zip.add(`${dir}byteorder`, Buffer.from('little'));
  const keys = [...storages.entries()].sort((a, b) => (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  let id = crc32(pkl);
  for (const [t, key] of keys) {
    const bytes = t.dtype === 'I64' ? new Uint8Array(BigInt64Array.from(Array.from(t.data, (v) => BigInt(Math.round(v)))).buffer) : encode(t.data, t.dtype);
    zip.add(`${dir}data/${key}`, bytes);
    id = crc32(bytes, id);
  }
  zip.add(`${dir}version`, Buffer.from('3\n'));
  // torch writes a 40-digit id here (used to match checkpoints); any stable digits do.
  zip.add(`${dir}.data/serialization_id`, Buffer.from(String(id).padStart(20, '0').repeat(2)));
  zip.finish();
}

class StorageMarker {
  constructor(readonly t: TorchTensor) {}
}

/**
 * A torch.save-style archive around a hand-assembled data.pkl (hostile fixtures): `storages`
 * become `data/<key>`. With `deflated`, data.pkl is stored as those raw-deflate bytes and the
 * zip directory declares `size` (a deflate bomb may declare anything).
 */
export function writeTorchZip(
  path: string,
  pkl: Uint8Array,
  storages: Record<string, Uint8Array> = {},
  opts: { archiveName?: string; deflated?: { data: Uint8Array; size: number } } = {},
): void {
  const dir = `${opts.archiveName ?? 'archive'}/`;
  const zip = new ZipWriter(path);
  if (opts.deflated) zip.add(`${dir}data.pkl`, opts.deflated.data, { method: 8, size: opts.deflated.size });
  else zip.add(`${dir}data.pkl`, pkl);
  zip.add(`${dir}byteorder`, Buffer.from('little'));
  for (const [k, v] of Object.entries(storages)) zip.add(`${dir}data/${k}`, v);
  zip.add(`${dir}version`, Buffer.from('3\n'));
  zip.finish();
}
