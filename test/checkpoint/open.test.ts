import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openModel, type OpenedModel } from '../../src/checkpoint/open.js';
import { writeSafetensors } from '../../src/checkpoint/safetensors.js';
import { orderedDict, pyObject, stateDict, torchTensor, writeTorchCheckpoint } from './torch-write.js';
import { FakeHub, sha40 } from './fake-hub.js';
import { ramp, rejectsUser, tempDir } from './tmp.js';

const root = tempDir('open');
const W = { 'blocks.0.attn.qkv.weight': { dtype: 'F32' as const, shape: [6, 2], data: ramp(12) } };
const CONFIG = { model_type: 'vit', hidden_size: 2 };

function folder(name: string, files: Record<string, string | ((p: string) => void)>): string {
  const d = join(root, name);
  mkdirSync(d, { recursive: true });
  for (const [f, v] of Object.entries(files)) {
    if (typeof v === 'string') writeFileSync(join(d, f), v);
    else v(join(d, f));
  }
  return d;
}
const st = (p: string) => writeSafetensors(p, W);
const bin = (p: string) => writeTorchCheckpoint(p, stateDict(W));

async function using(m: OpenedModel, fn: (m: OpenedModel) => Promise<void> | void): Promise<void> {
  try {
    await fn(m);
  } finally {
    await m.close();
  }
}

async function checkWeights(m: OpenedModel): Promise<void> {
  assert.deepEqual(m.source.names(), ['blocks.0.attn.qkv.weight']);
  assert.deepEqual(Array.from(await m.source.read('blocks.0.attn.qkv.weight', 2, 4)), ramp(12).slice(4, 8));
}

test('an HF directory with model.safetensors, config and preprocessor config', async () => {
  const d = folder('hf-st', { 'config.json': JSON.stringify(CONFIG), 'preprocessor_config.json': '{"image_mean":[0.5]}', 'model.safetensors': st, 'pytorch_model.bin': bin });
  await using(await openModel(d), async (m) => {
    assert.equal(m.format, 'safetensors', 'safetensors preferred over .bin');
    assert.equal(m.dir, d);
    assert.equal(m.file, join(d, 'model.safetensors'));
    assert.deepEqual(m.config, CONFIG);
    assert.deepEqual(m.preprocessorConfig, { image_mean: [0.5] });
    assert.equal(m.hubId, undefined);
    await checkWeights(m);
  });
});

test('an HF directory with sharded safetensors', async () => {
  const d = folder('hf-sharded', {
    'config.json': '{}',
    'model-00001-of-00001.safetensors': st,
    'model.safetensors.index.json': JSON.stringify({ weight_map: { 'blocks.0.attn.qkv.weight': 'model-00001-of-00001.safetensors' } }),
  });
  await using(await openModel(d), async (m) => {
    assert.equal(m.format, 'sharded-safetensors');
    assert.equal(m.file, join(d, 'model.safetensors.index.json'));
    assert.equal(m.preprocessorConfig, null);
    await checkWeights(m);
  });
  await using(await openModel(join(d, 'model.safetensors.index.json')), async (m) => assert.equal(m.format, 'sharded-safetensors'));
});

test('an HF directory with pytorch_model.bin, and a timm/open_clip one', async () => {
  const d = folder('hf-bin', { 'config.json': '{}', 'pytorch_model.bin': bin });
  await using(await openModel(d), async (m) => {
    assert.equal(m.format, 'torch');
    assert.equal(m.part, null);
    await checkWeights(m);
  });
  const c = folder('open-clip', { 'open_clip_config.json': '{}', 'open_clip_pytorch_model.bin': bin });
  await using(await openModel(c), async (m) => {
    assert.equal(m.format, 'torch');
    assert.equal(m.config, null);
  });
});

test('single files: .safetensors, .bin, .pt, and content that disagrees with its extension', async () => {
  const d = folder('single', { 'config.json': JSON.stringify(CONFIG), 'w.safetensors': st, 'w.pt': bin, 'really-safetensors.bin': st });
  await using(await openModel(join(d, 'w.safetensors')), async (m) => {
    assert.equal(m.format, 'safetensors');
    assert.deepEqual(m.config, CONFIG, 'config.json beside the file');
    await checkWeights(m);
  });
  await using(await openModel(join(d, 'w.pt')), async (m) => assert.equal(m.format, 'torch'));
  await using(await openModel(join(d, 'really-safetensors.bin')), async (m) => assert.equal(m.format, 'safetensors'));
  const lone = folder('lone', { 'x.safetensors': st });
  await using(await openModel(join(lone, 'x.safetensors')), async (m) => assert.equal(m.config, null));
});

test('a SimMIM .pth takes its model dict; an I-JEPA .pth.tar its encoder, or --part, with module. stripped', async () => {
  const d = folder('release', {});
  const simmim = join(d, 'simmim_pretrain__vit_base__img224__800ep.pth');
  writeTorchCheckpoint(simmim, {
    model: orderedDict({ 'encoder.blocks.0.attn.qkv.weight': torchTensor('F32', [6, 2], ramp(12)) }),
    optimizer: { state: {}, param_groups: [] },
    config: pyObject('yacs.config', 'CfgNode', { items: { DATA: 'x' } }),
    epoch: 799,
  });
  await using(await openModel(simmim), async (m) => {
    assert.equal(m.part, 'model');
    assert.deepEqual(m.source.names(), ['encoder.blocks.0.attn.qkv.weight']);
    assert.match(m.source.location, /\[model\]$/);
  });
  const ijepa = join(d, 'IN1K-vit.h.14-300e.pth.tar');
  const sd = (scale: number) => orderedDict({ 'module.blocks.0.attn.qkv.weight': torchTensor('F32', [6, 2], ramp(12, scale)) });
  writeTorchCheckpoint(ijepa, { encoder: sd(1), predictor: sd(2), target_encoder: sd(3), opt: {}, scaler: {}, epoch: 300, loss: 0.1, batch_size: 2048, world_size: 16, lr: 0.001 });
  await using(await openModel(ijepa), async (m) => {
    assert.equal(m.part, 'encoder');
    await checkWeights(m);
  });
  await using(await openModel(ijepa, { part: 'target_encoder' }), async (m) => {
    assert.equal(m.part, 'target_encoder');
    assert.deepEqual(Array.from(await m.source.read('blocks.0.attn.qkv.weight', 0, 1)), ramp(12, 3).slice(0, 2));
  });
  await rejectsUser(() => openModel(ijepa, { part: 'decoder' }), ijepa, /no state dict 'decoder'; choose --part from: encoder, predictor, target_encoder/);
  const two = join(d, 'two.pth');
  writeTorchCheckpoint(two, { student: sd(1), teacher: sd(2) });
  await rejectsUser(() => openModel(two), two, /choose one with --part: student, teacher/);
  await rejectsUser(() => openModel(join(folder('pst', { 'w.safetensors': st }), 'w.safetensors'), { part: 'encoder' }), /--part applies to PyTorch checkpoints .* drop --part/);
});

test('wrong paths, empty folders and bad files are one-line UserErrors', async () => {
  const missing = join(root, 'nope', 'model');
  await rejectsUser(() => openModel(missing), `${missing}: no such file or directory; give a model directory, a checkpoint file or a Hugging Face id org/name`);
  await rejectsUser(() => openModel('./typo.safetensors'), './typo.safetensors: no such file or directory');
  const d = folder('noweights', { 'config.json': '{}', 'README.md': '#', 'notes.txt': '' });
  await rejectsUser(() => openModel(d), d, /no model weights found \(it has: README\.md, config\.json, notes\.txt\)/, /expected model\.safetensors/);
  const e = folder('emptydir', {});
  await rejectsUser(() => openModel(e), /it has: nothing/);
  const sb = folder('shardedbin', { 'pytorch_model.bin.index.json': '{}' });
  await rejectsUser(() => openModel(sb), sb, /sharded as \.bin files are not supported/);
  const bc = folder('badconfig', { 'config.json': '{"model_type": ', 'model.safetensors': st });
  await rejectsUser(() => openModel(bc), join(bc, 'config.json'), /not a JSON object/);
  const f = folder('files', {
    'lfs.bin': 'version https://git-lfs.github.com/spec/v1\noid sha256:1\nsize 9\n',
    'legacy.pth': (p) => writeFileSync(p, Buffer.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e])),
    'empty.pt': '',
    'junk.pth': 'this is not a checkpoint at all, just some text that is long enough',
    'pickle.pkl': (p) => writeFileSync(p, Buffer.from([0x80, 0x04, 0x4e, 0x2e])),
    'bad.safetensors': (p) => writeFileSync(p, Buffer.from([200, 0, 0, 0, 0, 0, 0, 0, 0x7b])),
  });
  await rejectsUser(() => openModel(join(f, 'lfs.bin')), /Git LFS pointer/);
  await rejectsUser(() => openModel(join(f, 'legacy.pth')), /legacy \(pre-1\.6\) format/);
  await rejectsUser(() => openModel(join(f, 'empty.pt')), /is empty/);
  await rejectsUser(() => openModel(join(f, 'junk.pth')), join(f, 'junk.pth'), /neither a safetensors file nor a PyTorch checkpoint/);
  await rejectsUser(() => openModel(join(f, 'pickle.pkl')), /plain pickle/);
  await rejectsUser(() => openModel(join(f, 'bad.safetensors')), /not a valid safetensors file/);
  const truncated = join(f, 'truncated.bin');
  bin(join(f, 'full.bin'));
  const full = readFileSync(join(f, 'full.bin'));
  writeFileSync(truncated, full.subarray(0, full.length >> 1));
  await rejectsUser(() => openModel(truncated), truncated, /truncated/);
  await rejectsUser(() => openModel(join(folder('rev', { 'model.safetensors': st }), 'model.safetensors'), { revision: 'main' }), /--revision applies to Hugging Face ids only/);
});

test('a Hugging Face id is fetched into the cache, then opened like a directory (also offline)', async () => {
  const C = sha40('c');
  const model = join(root, 'hubmodel.safetensors');
  st(model);
  const hub = await new FakeHub({
    'google/vit-tiny': { commits: { [C]: { 'config.json': JSON.stringify(CONFIG), 'model.safetensors': readFileSync(model) } }, refs: { main: C } },
  }).start();
  const env = { HF_HOME: join(root, 'hfhome'), HF_ENDPOINT: hub.url };
  try {
    await using(await openModel('google/vit-tiny', { hub: { env, progress: false } }), async (m) => {
      assert.equal(m.hubId, 'google/vit-tiny');
      assert.equal(m.commit, C);
      assert.equal(m.revision, 'main');
      assert.equal(m.format, 'safetensors');
      assert.deepEqual(m.config, CONFIG);
      assert.equal(m.dir, join(root, 'hfhome', 'hub', 'models--google--vit-tiny', 'snapshots', C));
      await checkWeights(m);
    });
    await rejectsUser(() => openModel('google/vit-nope', { hub: { env, progress: false } }), /google\/vit-nope: no such file or directory, and google\/vit-nope is not found or not accessible/);
  } finally {
    await hub.stop();
  }
  await using(await openModel(`google/vit-tiny@${C}`, { offline: true, hub: { env } }), async (m) => assert.equal(m.commit, C));
  await rejectsUser(() => openModel('google/other', { offline: true, hub: { env } }), /google\/other: revision main is not in the Hugging Face cache/, /drop --offline/);
  // A local folder that happens to look like an id wins over the hub.
  const local = folder('org/name', { 'model.safetensors': st });
  copyFileSync(model, join(local, 'model.safetensors'));
  const cwd = process.cwd();
  process.chdir(root);
  try {
    await using(await openModel('org/name', { offline: true }), async (m) => assert.equal(m.hubId, undefined));
  } finally {
    process.chdir(cwd);
  }
});
