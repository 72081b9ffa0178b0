/**
 * Generators of hostile checkpoint inputs for the suite (cases.ts): pickle bombs, deflate bombs,
 * lying safetensors headers, NaN weights, FIFOs, ... Each writes under `dir` and returns the
 * path to give the CLI. Small on disk and fast to write (the 2 GiB deflate bomb is 2 MB).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { constants, deflateRawSync } from 'node:zlib';
import { encode } from '../../src/checkpoint/dtype.js';
import { makeLayoutWeights, writeModel } from '../fixtures/models.js';
import { get, glob, int, OP, pk, put, str, tensor, tuple, type Part } from '../checkpoint/pickle-ops.js';
import { torchTensor, writeTorchCheckpoint, writeTorchZip } from '../checkpoint/torch-write.js';
import { PyGlobalRef, PyReduce } from '../checkpoint/pickle-write.js';
import { SafetensorsFile } from '../../src/checkpoint/safetensors.js';

/** A small valid hf-vit directory (d 32, 2 heads, 2 layers); `opts` as writeModel's. */
export function validModel(dir: string, opts: Parameters<typeof writeModel>[3] = {}): string {
  return writeModel(join(dir, 'model'), 'hf-vit', makeLayoutWeights('hf-vit', { d: 32, heads: 2, layers: 2, patch: 4, image: 16, seed: 3 }), opts).path;
}

/** A torch zip holding `parts` as data.pkl and one float32 storage '0' of `numel` elements. */
export function torchFile(dir: string, name: string, parts: Part[], numel = 4): string {
  const p = join(dir, name);
  writeTorchZip(p, pk(...parts), { 0: encode(new Array(numel).fill(0.5), 'F32') });
  return p;
}

/** data.pkl = {'w': t, 'self': d, 'again': d}: a dict that contains itself. */
export function selfReferencingDict(dir: string): string {
  return torchFile(dir, 'selfref.bin', [OP.PROTO2, OP.EMPTY_DICT, put(0), str('w'), tensor('0', 4, [2, 2], [2, 1]), OP.SETITEM, str('self'), get(0), OP.SETITEM, str('again'), get(0), OP.SETITEM, OP.STOP]);
}

/** level_i = {'w': t, 'a': level_{i-1}, 'b': level_{i-1}}: 2^levels paths through `levels` dicts. */
export function dictDag(dir: string, levels = 60): string {
  const parts: Part[] = [OP.PROTO2, tensor('0', 4, [4], [1]), put(0), OP.POP, OP.EMPTY_DICT, put(1), str('w'), get(0), OP.SETITEM, OP.POP];
  for (let i = 1; i < levels; i++) parts.push(OP.EMPTY_DICT, put(i + 1), str('w'), get(0), OP.SETITEM, str('a'), get(i), OP.SETITEM, str('b'), get(i), OP.SETITEM, OP.POP);
  parts.push(get(levels), OP.STOP);
  return torchFile(dir, 'dag.bin', parts);
}

/** Lists nested `depth` deep. */
export function deepNesting(dir: string, depth = 100_000): string {
  return torchFile(dir, 'deep.bin', [OP.PROTO2, Buffer.alloc(depth, ']'), Buffer.alloc(depth - 1, 'a'), OP.STOP]);
}

/** 2.1M empty dicts (4 MB): past the object limit. */
export function objectBomb(dir: string): string {
  return torchFile(dir, 'objects.bin', [OP.PROTO2, Buffer.alloc(2 * 2_100_000, '}0'), OP.NONE, OP.STOP]);
}

/** list(x) of one shared 10k-element list, 5000 times (40 KB): 50M copied elements. */
export function copyBomb(dir: string): string {
  const parts: Part[] = [OP.PROTO2, OP.EMPTY_LIST, put(0), OP.MARK];
  for (let i = 0; i < 10_000; i++) parts.push(int(i % 200));
  parts.push(OP.APPENDS, OP.POP, glob('builtins', 'list'), put(1), OP.POP, OP.EMPTY_LIST);
  for (let i = 0; i < 5000; i++) parts.push(get(1), get(0), OP.TUPLE1, OP.REDUCE, OP.APPEND);
  return torchFile(dir, 'copies.bin', [...parts, OP.STOP]);
}

/** A 16 MB LONG4 integer. */
export function hugeInteger(dir: string): string {
  const n = Buffer.alloc(4);
  n.writeInt32LE(16 * 2 ** 20);
  return torchFile(dir, 'hugeint.bin', [OP.PROTO2, 0x8b, n, Buffer.alloc(16 * 2 ** 20, 0x7f), OP.STOP]);
}

/** A tensor view with a negative stride (torch cannot produce one). */
export function negativeStride(dir: string): string {
  return torchFile(dir, 'negstride.bin', [OP.PROTO2, OP.EMPTY_DICT, str('w'), tensor('0', 16, [4, 4], [-4, 1], 12), OP.SETITEM, OP.STOP], 16);
}

/** A tensor view that reaches far past its storage. */
export function viewPastStorage(dir: string): string {
  return torchFile(dir, 'pastview.bin', [OP.PROTO2, OP.EMPTY_DICT, str('w'), tensor('0', 16, [4, 4], [1_000_000, 1]), OP.SETITEM, OP.STOP], 16);
}

/** Pickles that call (or name) what no checkpoint needs. */
export const MALICIOUS_PICKLES: Record<string, Part[]> = {
  'os.system': [OP.PROTO2, glob('os', 'system'), str('touch /tmp/qkscope-pwned'), OP.TUPLE1, OP.REDUCE, OP.STOP],
  'builtins.eval': [OP.PROTO4, str('builtins'), str('eval'), OP.STACK_GLOBAL, str('1+1'), OP.TUPLE1, OP.REDUCE, OP.STOP],
  'builtins.exec': ["c__builtin__\nexec\n(S'print(1)'\ntR."],
  'subprocess.Popen': [OP.MARK, str('touch /tmp/qkscope-pwned'), 'isubprocess\nPopen\n', OP.STOP],
  'posix.system': [OP.MARK, glob('posix', 'system'), str('touch /tmp/qkscope-pwned'), 'o', OP.STOP],
  'os._wrap_close': [OP.PROTO2, glob('os', '_wrap_close'), OP.EMPTY_TUPLE, OP.NEWOBJ, OP.STOP],
  'mypkg.run': [OP.PROTO2, OP.EMPTY_DICT, str('w'), tensor('0', 4, [4], [1]), OP.SETITEM, str('cfg'), glob('mypkg', 'run'), str('x'), OP.TUPLE1, OP.REDUCE, OP.SETITEM, OP.STOP],
  'mypkg.build': [OP.PROTO2, glob('torch._tensor', '_rebuild_from_type_v2'), tuple(glob('mypkg', 'build'), glob('mypkg', 'T'), OP.EMPTY_TUPLE, OP.EMPTY_DICT), OP.REDUCE, OP.STOP],
};

/**
 * A torch zip whose data.pkl inflates to `inflated` bytes of zeros from ~inflated/1032 bytes of
 * deflate, while the zip directory declares `declared` bytes. Built by repeating one compressed
 * 64 MiB chunk, so writing a 2 GiB bomb takes a fraction of a second.
 */
export function deflateBomb(dir: string, name: string, inflated: number, declared: number): string {
  const chunkBytes = 2 ** 26;
  const chunk = deflateRawSync(Buffer.alloc(chunkBytes), { finishFlush: constants.Z_SYNC_FLUSH });
  const parts = Array.from({ length: Math.ceil(inflated / chunkBytes) }, () => chunk);
  const p = join(dir, name);
  writeTorchZip(p, Buffer.alloc(0), {}, { deflated: { data: Buffer.concat([...parts, deflateRawSync(Buffer.alloc(0))]), size: declared } });
  return p;
}

/** A named FIFO (mkfifo). */
export function fifo(p: string): string {
  execFileSync('mkfifo', [p]);
  return p;
}

/** Rewrites `file`'s safetensors header through `edit` (same data bytes). */
export function editSafetensors(file: string, edit: (header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>) => void, extraData = 0): void {
  const b = readFileSync(file);
  const n = Number(b.readBigUInt64LE(0));
  const header = JSON.parse(b.subarray(8, 8 + n).toString('utf8'));
  edit(header);
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(file, Buffer.concat([len, json, b.subarray(8 + n), Buffer.alloc(extraData)]));
}

export const Q0 = 'encoder.layer.0.attention.attention.query.weight';
export const K0 = 'encoder.layer.0.attention.attention.key.weight';

/** Writes NaN (or ±Inf) into `count` values of layer 0's query weight. */
export function poisonModel(dir: string, value: number, count = 3): string {
  const model = validModel(dir);
  const file = join(model, 'model.safetensors');
  const b = readFileSync(file);
  const n = Number(b.readBigUInt64LE(0));
  const header = JSON.parse(b.subarray(8, 8 + n).toString('utf8'));
  const at = 8 + n + header[Q0].data_offsets[0];
  for (let i = 0; i < count; i++) b.writeFloatLE(value, at + (20 * 32 + i) * 4);
  writeFileSync(file, b);
  return model;
}

/** A sharded model whose index sends a tensor to a shard that lacks it, or lists a missing shard. */
export function badShards(dir: string, how: 'missing-shard' | 'wrong-shard'): string {
  const model = writeModel(join(dir, 'model'), 'hf-vit', makeLayoutWeights('hf-vit', { d: 32, heads: 2, layers: 2, patch: 4, image: 16, seed: 3 }), { shards: 2 }).path;
  const index = join(model, 'model.safetensors.index.json');
  const idx = JSON.parse(readFileSync(index, 'utf8')) as { weight_map: Record<string, string> };
  const shards = [...new Set(Object.values(idx.weight_map))].sort();
  if (how === 'missing-shard') rmSync(join(model, shards[1]));
  else idx.weight_map[K0] = shards.find((s) => s !== idx.weight_map[K0])!;
  writeFileSync(index, JSON.stringify(idx));
  return model;
}

/** A model directory whose weights file is a directory. */
export function weightsDirectory(dir: string, name = 'model.safetensors'): string {
  const model = validModel(dir);
  rmSync(join(model, 'model.safetensors'));
  mkdirSync(join(model, name));
  return model;
}

/**
 * A complete, loadable hf-vit pytorch_model.bin whose state dict also holds an
 * `os.system(...)` call: the red team's form (before the fix, svd ran and exited 0).
 */
export async function maliciousValidBin(dir: string, fn: [string, string] = ['os', 'system']): Promise<string> {
  const model = validModel(dir);
  const st = await SafetensorsFile.open(join(model, 'model.safetensors'));
  const tensors: Record<string, unknown> = {};
  for (const name of st.names()) tensors[name] = torchTensor('F32', st.info(name)!.shape, await st.read(name));
  await st.close();
  tensors['zz_payload'] = new PyReduce(new PyGlobalRef(fn[0], fn[1]), ['touch /tmp/qkscope-pwned']);
  rmSync(join(model, 'model.safetensors'));
  writeTorchCheckpoint(join(model, 'pytorch_model.bin'), tensors);
  return model;
}
