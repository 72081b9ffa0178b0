// Torch zip checkpoints that lie: tensor views outside their storage, storages with impossible
// sizes, data.pkl deflate bombs (honest and lying about their size), zip directories that claim
// more than the file holds. Each is a one-line UserError naming the file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { constants, deflateRawSync } from 'node:zlib';
import { TorchCheckpoint, torchStateDictSource, MAX_PICKLE_BYTES } from '../../src/checkpoint/torch.js';
import { encode } from '../../src/checkpoint/dtype.js';
import { glob, int, OP, pk, str, tensor, tuple } from './pickle-ops.js';
import { stateDict, torchTensor, writeTorchCheckpoint, writeTorchZip } from './torch-write.js';
import { ramp, rejectsUser, tempDir } from './tmp.js';

const dir = tempDir('thostile');

/** {'w': tensor} with the given view on a float32 storage of `numel` elements. */
function viewFile(name: string, numel: number, shape: number[], stride: number[], offset = 0): string {
  const p = join(dir, name);
  writeTorchZip(p, pk(OP.PROTO2, OP.EMPTY_DICT, str('w'), tensor('0', numel, shape, stride, offset), OP.SETITEM, OP.STOP), { 0: encode(ramp(numel), 'F32') });
  return p;
}

test('a valid strided view still loads (the checks do not refuse real views)', async () => {
  const p = viewFile('ok.pt', 12, [3, 2], [1, 3], 2); // transposed view inside the storage: reaches 2 + 2 + 3 = 7
  const src = await torchStateDictSource(p);
  try {
    const s = ramp(12);
    assert.deepEqual(Array.from(await src.read('w')), [s[2], s[5], s[3], s[6], s[4], s[7]]);
  } finally {
    await src.close();
  }
  // Expanded rows (stride 0), as HF's position_ids buffer and expand()ed tensors are saved.
  const q = viewFile('expand.pt', 4, [1, 4], [0, 1]);
  const src2 = await torchStateDictSource(q);
  assert.deepEqual(Array.from(await src2.read('w')), ramp(4));
  await src2.close();
  const r = viewFile('expand3.pt', 4, [3, 4], [0, 1]);
  const src3 = await torchStateDictSource(r);
  assert.deepEqual(Array.from(await src3.read('w', 1, 3)), [...ramp(4), ...ramp(4)]);
  await src3.close();
});

test('views that torch itself could not have written are refused at open', async () => {
  const cases: [string, number, number[], number[], number, RegExp][] = [
    ['negstride.pt', 16, [4, 4], [-1, 1], 0, /negative stride in \[-1,1\]/],
    ['negoffset.pt', 16, [4], [1], -3, /invalid storage offset -3/],
    ['past.pt', 16, [4, 4], [4, 1], 1, /reaches element 16 but its storage has 16 elements/],
    ['farstride.pt', 16, [2, 2], [1000, 1], 0, /reaches element 1001/],
    ['rank.pt', 16, [4, 4], [4], 0, /shape \[4,4\] but stride \[4\]/],
    ['negsize.pt', 16, [-4], [1], 0, /negative size/],
  ];
  for (const [name, numel, shape, stride, offset, re] of cases) {
    const p = viewFile(name, numel, shape, stride, offset);
    await rejectsUser(() => TorchCheckpoint.open(p), p, /cannot read the pickled data/, re);
  }
});

test('storage records with impossible sizes or keys are refused', async () => {
  const pid = (key: string, numel: Parameters<typeof pk>[number]) =>
    pk(OP.PROTO2, OP.EMPTY_DICT, str('w'), glob('torch._utils', '_rebuild_tensor_v2'), tuple(tuple(str('storage'), glob('torch', 'FloatStorage'), str(key), str('cpu'), numel), 'Q', int(0), tuple(int(1)), tuple(int(1)), 0x89), OP.REDUCE, OP.SETITEM, OP.STOP);
  const neg = Buffer.alloc(4);
  neg.writeInt32LE(-5);
  for (const [name, bytes, re] of [
    ['negnumel.pt', pid('0', pk('J', neg)), /storage with key "0" and -5 elements/],
    ['strnumel.pt', pid('0', str('many')), /and many elements/],
    ['pathkey.pt', pid('../../etc/passwd', int(1)), /storage with key "..\/..\/etc\/passwd"/],
  ] as const) {
    const p = join(dir, name);
    writeTorchZip(p, bytes, { 0: encode([1], 'F32') });
    await rejectsUser(() => TorchCheckpoint.open(p), p, re, /damaged/);
  }
  // A storage record shorter than the storage it claims: refused at the read, naming it.
  const short = join(dir, 'shortstorage.pt');
  writeTorchZip(short, pk(OP.PROTO2, OP.EMPTY_DICT, str('w'), tensor('0', 1000, [1000], [1]), OP.SETITEM, OP.STOP), { 0: encode([1, 2], 'F32') });
  const src = await torchStateDictSource(short);
  await rejectsUser(() => src.read('w'), short, /storage data\/0 has 8 bytes but 4000 are expected/);
  await src.close();
});

test('a deflated data.pkl loads; one that declares more than the cap is refused before inflating', async () => {
  const pkl = pk(OP.PROTO2, OP.EMPTY_DICT, str('w'), tensor('0', 4, [4], [1]), OP.SETITEM, OP.STOP);
  const good = join(dir, 'deflated.pt');
  writeTorchZip(good, pkl, { 0: encode([1, 2, 3, 4], 'F32') }, { deflated: { data: deflateRawSync(pkl), size: pkl.length } });
  const src = await torchStateDictSource(good);
  assert.deepEqual(Array.from(await src.read('w')), [1, 2, 3, 4]);
  await src.close();

  // 256 MiB of zeros deflate to ~256 KB; the directory says so honestly.
  const zeros = deflateRawSync(Buffer.alloc(2 ** 28));
  const honest = join(dir, 'honest-bomb.pt');
  writeTorchZip(honest, pkl, {}, { deflated: { data: zeros, size: 2 ** 28 } });
  await rejectsUser(() => TorchCheckpoint.open(honest), honest, `data.pkl would be ${2 ** 28} bytes, over the ${MAX_PICKLE_BYTES}-byte limit`);
});

test('a deflate bomb that lies about its size stops at the declared size', async () => {
  // The directory says 1 MiB; the stream inflates to 256 MiB: refused after 1 MiB + 1 byte of output.
  const chunk = deflateRawSync(Buffer.alloc(2 ** 26), { finishFlush: constants.Z_SYNC_FLUSH });
  const bomb = Buffer.concat([chunk, chunk, chunk, chunk, deflateRawSync(Buffer.alloc(0))]);
  const p = join(dir, 'liar.pt');
  writeTorchZip(p, Buffer.alloc(0), {}, { deflated: { data: bomb, size: 2 ** 20 } });
  const rss0 = process.memoryUsage().rss;
  await rejectsUser(() => TorchCheckpoint.open(p), p, /data\.pkl is damaged \(it inflates to more than the 1048576 bytes the zip directory says\)/);
  assert.ok(process.memoryUsage().rss - rss0 < 96 * 2 ** 20, 'the 256 MiB were never produced');
  // Declared 1000 bytes in 260 KB of deflate: refused before inflating.
  const p2 = join(dir, 'liar2.pt');
  writeTorchZip(p2, Buffer.alloc(0), {}, { deflated: { data: bomb, size: 1000 } });
  await rejectsUser(() => TorchCheckpoint.open(p2), p2, /compressed bytes cannot hold the 1000 bytes the zip directory says/);
  // Declared 1000, actually 10: damaged too (the other direction).
  const q = join(dir, 'short.pt');
  writeTorchZip(q, Buffer.alloc(0), {}, { deflated: { data: deflateRawSync(Buffer.alloc(10)), size: 1000 } });
  await rejectsUser(() => TorchCheckpoint.open(q), q, /inflates to 10 bytes but the zip directory says 1000/);
  // Not deflate at all.
  const r = join(dir, 'garbage.pt');
  writeTorchZip(r, Buffer.alloc(0), {}, { deflated: { data: Buffer.from('this is not deflate data at all'), size: 50 } });
  await rejectsUser(() => TorchCheckpoint.open(r), r, /data\.pkl is damaged \(cannot inflate/);
});

test('a zip directory that claims more entries than it holds is refused', async () => {
  const good = join(dir, 'good.pt');
  writeTorchCheckpoint(good, stateDict({ w: torchTensor('F32', [2], [1, 2]) }));
  const bytes = Buffer.from(readFileSync(good));
  // The ZIP64 end record sits 98 bytes from the end (56 + 20 + 22): its entry count at +32.
  const eocd64 = bytes.length - 98;
  assert.equal(bytes.readUInt32LE(eocd64), 0x06064b50);
  bytes.writeBigUInt64LE(10n ** 12n, eocd64 + 32);
  const p = join(dir, 'lying-count.pt');
  writeFileSync(p, bytes);
  await rejectsUser(() => TorchCheckpoint.open(p), p, /damaged zip directory \(1000000000000 entries cannot fit/);
});
