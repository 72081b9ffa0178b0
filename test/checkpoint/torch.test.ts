import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { pickStateDict, stateDictParts, TensorDesc, TorchCheckpoint, torchStateDictSource } from '../../src/checkpoint/torch.js';
import { orderedDict, pyFloat, pyObject, stateDict, torchTensor, writeTorchCheckpoint } from './torch-write.js';
import { Pickler, PyGlobalRef, PyReduce, PyTuple } from './pickle-write.js';
import { pyClassOf, pyState } from '../../src/checkpoint/pickle.js';
import { ZipReader } from '../../src/checkpoint/zip.js';
import { decode, encode } from '../../src/checkpoint/dtype.js';
import { ramp, rejectsUser, tempDir } from './tmp.js';
import { ZipWriter } from './zip-write.js';

const dir = tempDir('torch');

async function zipListing(path: string) {
  const fh = await open(path, 'r');
  try {
    const z = await ZipReader.open(path, fh, (await fh.stat()).size);
    const starts: number[] = [];
    const texts = new Map<string, string>();
    for (const n of z.order) {
      starts.push(await z.dataStart(z.entries.get(n)!));
      texts.set(n, (await z.readAll(z.entries.get(n)!)).toString('latin1'));
    }
    return { order: z.order, starts, methods: z.order.map((n) => z.entries.get(n)!.method), text: (n: string) => texts.get(n) };
  } finally {
    await fh.close();
  }
}

test('an HF pytorch_model.bin round-trips every float dtype, and keeps torch.save\'s layout', async () => {
  const p = join(dir, 'pytorch_model.bin');
  const q = ramp(16, 0.25);
  writeTorchCheckpoint(
    p,
    stateDict({
      'embeddings.cls_token': torchTensor('F32', [1, 1, 4], [1, 2, 3, 4]),
      'encoder.layer.0.attention.attention.query.weight': torchTensor('F16', [4, 4], q),
      'encoder.layer.0.attention.attention.query.bias': { dtype: 'BF16', shape: [4], data: [0.5, -1, 2, 8] },
      'pooler.dense.weight': torchTensor('F64', [2, 3], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]),
      'embeddings.position_ids': torchTensor('I64', [1, 3], [0, 1, 2]),
    }),
  );
  const z = await zipListing(p);
  assert.deepEqual(z.order, [
    'pytorch_model/data.pkl',
    'pytorch_model/byteorder',
    'pytorch_model/data/0',
    'pytorch_model/data/1',
    'pytorch_model/data/2',
    'pytorch_model/data/3',
    'pytorch_model/data/4',
    'pytorch_model/version',
    'pytorch_model/.data/serialization_id',
  ]);
  assert.ok(z.starts.every((s) => s % 64 === 0), 'records are 64-byte aligned, as torch writes them');
  assert.ok(z.methods.every((m) => m === 0), 'stored, not compressed');
  assert.equal(z.text('pytorch_model/byteorder'), 'little');
  assert.equal(z.text('pytorch_model/version'), '3\n');
  assert.match(z.text('pytorch_model/.data/serialization_id') ?? '', /^\d{40}$/);

  const src = await torchStateDictSource(p);
  try {
    assert.equal(src.location, p);
    assert.equal(src.names().length, 5);
    assert.deepEqual(src.info('encoder.layer.0.attention.attention.query.weight'), { name: 'encoder.layer.0.attention.attention.query.weight', dtype: 'F16', shape: [4, 4] });
    assert.deepEqual(Array.from(await src.read('embeddings.cls_token')), [1, 2, 3, 4]);
    assert.deepEqual(Array.from(await src.read('encoder.layer.0.attention.attention.query.weight')), q);
    assert.deepEqual(Array.from(await src.read('encoder.layer.0.attention.attention.query.bias')), [0.5, -1, 2, 8]);
    const f64 = await src.read('pooler.dense.weight');
    assert.ok(f64 instanceof Float64Array);
    assert.deepEqual(Array.from(f64), [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]);
    assert.equal(src.info('embeddings.position_ids')?.dtype, 'I64');
    await rejectsUser(() => src.read('embeddings.position_ids'), p, /dtype I64/);
    await rejectsUser(() => src.read('nope'), p, /tensor nope is missing/);
  } finally {
    await src.close();
  }
});

test('tensors are read lazily: a row range reads only its rows', async () => {
  const p = join(dir, 'lazy.bin');
  writeTorchCheckpoint(p, { qkv: torchTensor('F32', [300, 100], ramp(30000)), other: torchTensor('F32', [1000], ramp(1000)) });
  const ckpt = await TorchCheckpoint.open(p);
  try {
    const afterOpen = ckpt.bytesRead;
    assert.ok(afterOpen < 2000, `open reads only data.pkl and byteorder (${afterOpen} bytes)`);
    const src = ckpt.source(pickStateDict(ckpt.root, p).dict);
    const rows = await src.read('qkv', 100, 102);
    assert.deepEqual(Array.from(rows), ramp(30000).slice(10000, 10200));
    assert.equal(ckpt.bytesRead - afterOpen, 2 * 100 * 4);
  } finally {
    await ckpt.close();
  }
});

test('non-contiguous views (transposed, offset) are gathered correctly, also by rows', async () => {
  const p = join(dir, 'views.pth');
  const storage = ramp(24);
  // t[r][c] = storage[2 + r + 4c]: a transposed [4,5] view starting at element 2 (touches 2..21).
  writeTorchCheckpoint(p, { t: torchTensor('F32', [4, 5], storage, { stride: [1, 4], storageOffset: 2 }), s: torchTensor('BF16', [2, 2], [1, 2, 3, 4, 5, 6], { stride: [2, 1], storageOffset: 2 }) });
  const want = (r0: number, r1: number) => {
    const o: number[] = [];
    for (let r = r0; r < r1; r++) for (let c = 0; c < 5; c++) o.push(storage[2 + r + 4 * c]);
    return o;
  };
  const src = await torchStateDictSource(p);
  try {
    const d = src.desc('t')!;
    assert.ok(d instanceof TensorDesc && !d.contiguous);
    assert.deepEqual(Array.from(await src.read('t')), want(0, 4));
    assert.deepEqual(Array.from(await src.read('t', 1, 3)), want(1, 3));
    assert.ok(src.desc('s')!.contiguous);
    assert.deepEqual(Array.from(await src.read('s')), [3, 4, 5, 6], 'a contiguous view at a storage offset');
  } finally {
    await src.close();
  }
});

test('a SimMIM release .pth: the model dict is picked, config/optimizer stay inert', async () => {
  const p = join(dir, 'simmim_pretrain__vit_base__img224__800ep.pth');
  const cfgState = { __immutable__: true, __deprecated_keys__: [], __renamed_keys__: {}, __new_allowed__: false };
  writeTorchCheckpoint(p, {
    model: orderedDict({
      'encoder.cls_token': torchTensor('F32', [1, 1, 4], ramp(4)),
      'encoder.blocks.0.attn.qkv.weight': torchTensor('F32', [12, 4], ramp(48)),
      'encoder.blocks.0.attn.q_bias': torchTensor('F32', [4], ramp(4)),
    }),
    optimizer: { state: { 0: { step: 10, exp_avg: torchTensor('F32', [1, 1, 4], ramp(4)) } }, param_groups: [{ lr: pyFloat(1), params: [0] }] },
    lr_scheduler: { base_values: [pyFloat(0.0001)] },
    max_accuracy: pyFloat(0),
    epoch: 799,
    config: pyObject('yacs.config', 'CfgNode', { items: { MODEL: pyObject('yacs.config', 'CfgNode', { items: { TYPE: 'vit' }, state: cfgState }) }, state: cfgState }),
  });
  const ckpt = await TorchCheckpoint.open(p);
  try {
    const root = ckpt.root as Record<string, unknown>;
    assert.equal(pyClassOf(root.config), 'yacs.config.CfgNode');
    assert.equal(((root.config as Record<string, Record<string, unknown>>).MODEL).TYPE, 'vit');
    assert.equal((pyState(root.config) as Record<string, unknown>).__immutable__, true);
    assert.equal(root.epoch, 799);
    assert.deepEqual(stateDictParts(root), ['model']);
    const picked = pickStateDict(root, p);
    assert.equal(picked.part, 'model');
    assert.deepEqual(Object.keys(picked.dict), ['encoder.cls_token', 'encoder.blocks.0.attn.qkv.weight', 'encoder.blocks.0.attn.q_bias']);
  } finally {
    await ckpt.close();
  }
  const src = await torchStateDictSource(p);
  assert.equal(src.location, `${p} [model]`);
  assert.deepEqual(Array.from(await src.read('encoder.blocks.0.attn.qkv.weight', 4, 8)), ramp(48).slice(16, 32));
  await src.close();
});

test('an I-JEPA release .pth.tar: encoder by default, other parts by name, module. stripped, ZIP64 read', async () => {
  const p = join(dir, 'IN1K-vit.h.14-300e.pth.tar');
  const enc = orderedDict({ 'module.blocks.0.attn.qkv.weight': torchTensor('F32', [6, 2], ramp(12)), 'module.pos_embed': torchTensor('F32', [1, 4, 2], ramp(8)) });
  writeTorchCheckpoint(
    p,
    {
      encoder: enc,
      predictor: orderedDict({ 'module.predictor_embed.weight': torchTensor('F32', [2, 2], ramp(4)) }),
      target_encoder: orderedDict({ 'module.blocks.0.attn.qkv.weight': torchTensor('F32', [6, 2], ramp(12, 2)) }),
      opt: { state: {}, param_groups: [{ lr: 0.001, params: new PyTuple(0, 1) }] },
      scaler: { scale: pyFloat(65536), growth_factor: pyFloat(2), _growth_tracker: 0 },
      epoch: 300,
      loss: 0.0123,
      batch_size: 2048,
      world_size: 16,
      lr: 0.001,
    },
    { forceZip64: true },
  );
  const z = await zipListing(p);
  assert.equal(z.order[0], 'IN1K-vit.h.14-300e.pth/data.pkl', 'torch names the folder after the file, minus its last extension');
  const ckpt = await TorchCheckpoint.open(p);
  try {
    const root = ckpt.root as Record<string, unknown>;
    assert.deepEqual([root.epoch, root.loss, root.batch_size, root.world_size, root.lr], [300, 0.0123, 2048, 16, 0.001]);
    assert.deepEqual(stateDictParts(root), ['encoder', 'predictor', 'target_encoder']);
    assert.equal(pickStateDict(root, p).part, 'encoder');
    const pred = ckpt.source(pickStateDict(root, p, 'predictor').dict, { prefixStrip: 'module.' });
    assert.deepEqual(pred.names(), ['predictor_embed.weight']);
    assert.deepEqual(Array.from(await pred.read('predictor_embed.weight')), ramp(4));
    await rejectsUser(async () => pickStateDict(root, p, 'decoder'), p, /no state dict 'decoder'/, /encoder, predictor, target_encoder/);
  } finally {
    await ckpt.close();
  }
  const src = await torchStateDictSource(p, (root) => (root as Record<string, never>).target_encoder, 'module.');
  assert.deepEqual(src.names(), ['blocks.0.attn.qkv.weight']);
  assert.deepEqual(Array.from(await src.read('blocks.0.attn.qkv.weight')), ramp(12, 2));
  await src.close();
});

test('state dict choice: ambiguity lists the parts; no tensors lists the keys', async () => {
  const t = () => torchTensor('F32', [1], [1]);
  const p = join(dir, 'two.pth');
  writeTorchCheckpoint(p, { student: { w: t() }, teacher: { w: t() }, epoch: 3 });
  await rejectsUser(() => torchStateDictSource(p), p, /several state dicts; choose one with --part: student, teacher/);
  const q = join(dir, 'notensors.pth');
  writeTorchCheckpoint(q, { epoch: 3, args: pyObject('argparse', 'Namespace', { state: { lr: 0.1 } }) });
  await rejectsUser(() => torchStateDictSource(q), q, /holds no tensors .*top-level keys: epoch, args/);
  const r = join(dir, 'one.pth');
  writeTorchCheckpoint(r, { net: { w: t() }, epoch: 3 });
  const src = await torchStateDictSource(r);
  assert.equal(src.location, `${r} [net]`, 'the only dict of tensors is taken');
  await src.close();
});

test('legacy, truncated, foreign and damaged files give clear UserErrors', async () => {
  const good = join(dir, 'good.bin');
  writeTorchCheckpoint(good, { w: torchTensor('F32', [64], ramp(64)) });
  const bytes = readFileSync(good);
  const cases: [string, Uint8Array | string, RegExp][] = [
    ['legacy.pth', Buffer.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e, 0x80, 0x02, 0x4d, 0xe9, 0x03, 0x2e]), /legacy \(pre-1\.6\) format.*torch\.save\(torch\.load\(p/],
    ['truncated.bin', bytes.subarray(0, bytes.length - 100), /truncated or damaged.*re-download/],
    ['garbage.bin', Buffer.from('<html>404 Not Found</html>'.padEnd(600, ' ')), /not a PyTorch checkpoint/],
    ['empty.bin', Buffer.alloc(0), /is empty/],
    ['lfs.bin', 'version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n', /Git LFS pointer/],
    ['st.bin', Buffer.concat([Buffer.from([16, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{"__metadata__":{}}'.slice(0, 16))]), /safetensors file, not a PyTorch pickle/],
  ];
  const tar = Buffer.alloc(1024);
  tar.write('ustar', 257, 'latin1');
  cases.push(['old.tar', tar, /legacy/]);
  for (const [name, data, re] of cases) {
    const p = join(dir, name);
    writeFileSync(p, data);
    await rejectsUser(() => TorchCheckpoint.open(p), p, re);
  }
  await rejectsUser(() => TorchCheckpoint.open(join(dir, 'absent.pth')), 'absent.pth', /cannot open \(ENOENT\)/);
});

test('zips that are not torch.save checkpoints, or lack their storages, are named as such', async () => {
  const ts = join(dir, 'scripted.pt');
  let z = new ZipWriter(ts);
  z.add('scripted/constants.pkl', new Pickler().dump([]));
  z.add('scripted/code/__torch__.py', Buffer.from('x'));
  z.finish();
  await rejectsUser(() => TorchCheckpoint.open(ts), ts, /TorchScript archive/, /state_dict/);

  const plain = join(dir, 'plain.zip.pth');
  z = new ZipWriter(plain);
  z.add('stuff/readme.txt', Buffer.from('hi'));
  z.finish();
  await rejectsUser(() => TorchCheckpoint.open(plain), plain, /without data\.pkl/);

  // A checkpoint whose storage record is missing, and one whose storage is short.
  const good = join(dir, 'src.pth');
  writeTorchCheckpoint(good, { w: torchTensor('F32', [4], [1, 2, 3, 4]) });
  const ckpt = await TorchCheckpoint.open(good);
  const pkl = await (async () => {
    const fh = await open(good, 'r');
    const zr = await ZipReader.open(good, fh, (await fh.stat()).size);
    const b = await zr.readAll(zr.entries.get('src/data.pkl')!);
    await fh.close();
    return b;
  })();
  await ckpt.close();
  for (const [name, storage, re] of [
    ['nostorage.pth', null, /storage data\/0 is missing/],
    ['short.pth', encode([1, 2], 'F32'), /storage data\/0 has 8 bytes but 16 are expected/],
  ] as const) {
    const p = join(dir, name);
    z = new ZipWriter(p);
    z.add('x/data.pkl', pkl);
    if (storage) z.add('x/data/0', storage);
    z.add('x/version', Buffer.from('3\n'));
    z.finish();
    const src = await torchStateDictSource(p);
    await rejectsUser(() => src.read('w'), p, re, /re-download/);
    await src.close();
  }

  const be = join(dir, 'bigendian.pth');
  z = new ZipWriter(be);
  z.add('be/data.pkl', pkl);
  z.add('be/byteorder', Buffer.from('big'));
  z.finish();
  await rejectsUser(() => TorchCheckpoint.open(be), be, /big-endian/);

  const broken = join(dir, 'brokenpickle.pth');
  z = new ZipWriter(broken);
  z.add('b/data.pkl', pkl.subarray(0, 20));
  z.finish();
  await rejectsUser(() => TorchCheckpoint.open(broken), broken, /cannot read the pickled data/);
});

test('the writer refuses tensors whose data does not fit their shape', () => {
  assert.throws(() => torchTensor('F32', [2, 2], [1, 2, 3]), /needs 4 values, got 3/);
  assert.deepEqual(Array.from(decode(encode([1.5], 'BF16'), 'BF16')), [1.5]);
});

test('parameters and tensor subclasses (as torch pickles them) rebuild to plain tensors', async () => {
  const marker = { storage: true };
  const rebuild = new PyGlobalRef('torch._utils', '_rebuild_tensor_v2');
  const odict = () => new PyReduce(new PyGlobalRef('collections', 'OrderedDict'), []);
  const tensorArgs = () => [marker, 0, new PyTuple(2, 2), new PyTuple(2, 1), false, odict()];
  const pkl = new Pickler({
    persistentId: (o) => (o === marker ? new PyTuple('storage', new PyGlobalRef('torch', 'FloatStorage'), '0', 'cpu', 4) : undefined),
  }).dump({
    param: new PyReduce(new PyGlobalRef('torch._utils', '_rebuild_parameter'), [new PyReduce(rebuild, tensorArgs()), true, odict()]),
    sub: new PyReduce(new PyGlobalRef('torch._tensor', '_rebuild_from_type_v2'), [rebuild, new PyGlobalRef('mypkg', 'MyTensor'), new PyTuple(...tensorArgs()), {}]),
  });
  const p = join(dir, 'params.pt');
  const z = new ZipWriter(p);
  z.add('params/data.pkl', pkl);
  z.add('params/data/0', encode([1, 2, 3, 4], 'F32'));
  z.add('params/version', Buffer.from('3\n'));
  z.finish();
  const src = await torchStateDictSource(p);
  try {
    assert.deepEqual(src.names(), ['param', 'sub']);
    assert.deepEqual(Array.from(await src.read('param')), [1, 2, 3, 4]);
    assert.deepEqual(Array.from(await src.read('sub', 1)), [3, 4]);
  } finally {
    await src.close();
  }
});
