// Checkpoints that are not a bare state dict: whole pickled nn.Modules (torch.save(model)) and
// state dicts wrapped under state_dict / model / module / model_state keys, possibly nested.
// They yield the flat tensor map state_dict() would give, read through the same lazy source.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { openModel } from '../../src/checkpoint/open.js';
import { flattenTensors, isModule, pickStateDict, stateDictParts, TorchCheckpoint } from '../../src/checkpoint/torch.js';
import { PyGlobalRef, PyReduce } from './pickle-write.js';
import { orderedDict, torchTensor, writeTorchCheckpoint, type TorchTensor } from './torch-write.js';
import { ramp, rejectsUser, tempDir } from './tmp.js';
import { encode } from '../../src/checkpoint/dtype.js';
import { PY_MODULE_NUMEL, PY_MODULE_PICKLE } from './py-modules.js';
import { writeTorchZip } from './torch-write.js';

const dir = tempDir('tmodules');

const param = (t: TorchTensor) => new PyReduce(new PyGlobalRef('torch._utils', '_rebuild_parameter'), [t, true, orderedDict({})]);
const pySet = (items: string[]) => new PyReduce(new PyGlobalRef('builtins', 'set'), [items]);

/** An nn.Module as torch.save(model) pickles it: NEWOBJ of its class, then BUILD with its __dict__. */
function mod(cls: string, parts: { params?: Record<string, unknown>; buffers?: Record<string, unknown>; nonPersistent?: string[]; modules?: Record<string, unknown> }) {
  const dot = cls.lastIndexOf('.');
  return new PyReduce(new PyGlobalRef(cls.slice(0, dot), cls.slice(dot + 1)), [], {
    newobj: true,
    state: {
      training: false,
      _parameters: orderedDict(parts.params ?? {}),
      _buffers: orderedDict(parts.buffers ?? {}),
      _non_persistent_buffers_set: pySet(parts.nonPersistent ?? []),
      _backward_hooks: orderedDict({}),
      _forward_hooks: orderedDict({}),
      _state_dict_hooks: orderedDict({}),
      _modules: orderedDict(parts.modules ?? {}),
    },
  });
}

const qkv = torchTensor('F32', [6, 2], ramp(12));
const linear = (w: TorchTensor, bias: TorchTensor | null) => mod('torch.nn.modules.linear.Linear', { params: { weight: param(w), bias: bias && param(bias) } });

/** A small timm-style ViT: cls_token, a pos_embed, blocks.0.attn.{qkv,proj}, a non-persistent buffer, a module set to None. */
function vit() {
  const attn = mod('timm.layers.attention.Attention', {
    modules: { qkv: linear(qkv, torchTensor('F32', [6], ramp(6))), q_norm: mod('torch.nn.modules.linear.Identity', {}), proj: linear(torchTensor('F32', [2, 2], [1, 2, 3, 4]), null) },
  });
  const block = mod('timm.models.vision_transformer.Block', { modules: { attn, drop_path: null } });
  return mod('timm.models.vision_transformer.VisionTransformer', {
    params: { cls_token: param(torchTensor('F32', [1, 1, 2], [5, 6])), pos_embed: param(torchTensor('F32', [1, 2, 2], ramp(4))) },
    buffers: { rel_index: torchTensor('F32', [2], [0, 1]), attn_mask_cache: torchTensor('F32', [2], [9, 9]) },
    nonPersistent: ['attn_mask_cache'],
    modules: { blocks: mod('torch.nn.modules.container.Sequential', { modules: { 0: block } }) },
  });
}

const NAMES = ['cls_token', 'pos_embed', 'rel_index', 'blocks.0.attn.qkv.weight', 'blocks.0.attn.qkv.bias', 'blocks.0.attn.proj.weight'];

test('a whole pickled module (torch.save(model)) yields state_dict() names, lazily read', async () => {
  const p = join(dir, 'model.pth');
  writeTorchCheckpoint(p, vit());
  const ckpt = await TorchCheckpoint.open(p);
  try {
    assert.ok(isModule(ckpt.root));
    assert.deepEqual([...flattenTensors(ckpt.root, p).keys()], NAMES, 'params, persistent buffers, then submodules; None params/modules skipped');
  } finally {
    await ckpt.close();
  }
  const m = await openModel(p);
  try {
    assert.equal(m.format, 'torch');
    assert.equal(m.part, null);
    assert.deepEqual(m.source.names(), NAMES);
    assert.deepEqual(Array.from(await m.source.read('blocks.0.attn.qkv.weight', 2, 4)), ramp(12).slice(4, 8));
    assert.deepEqual(Array.from(await m.source.read('cls_token')), [5, 6]);
  } finally {
    await m.close();
  }
});

test('a module wrapped by DataParallel, or saved under "model" beside training state', async () => {
  const dp = join(dir, 'dp.pth');
  writeTorchCheckpoint(dp, mod('torch.nn.parallel.data_parallel.DataParallel', { modules: { module: vit() } }));
  const m = await openModel(dp);
  assert.deepEqual(m.source.names(), NAMES, "DataParallel's module. prefix is stripped");
  await m.close();

  const wrapped = join(dir, 'wrapped.pth');
  writeTorchCheckpoint(wrapped, { model: vit(), epoch: 9, args: new PyReduce(new PyGlobalRef('argparse', 'Namespace'), [], { newobj: true, state: { lr: 0.1 } }) });
  const w = await openModel(wrapped);
  assert.equal(w.part, 'model');
  assert.deepEqual(w.source.names(), NAMES);
  await w.close();
});

test('state dicts nested under wrapper keys are found; --part still chooses among several', async () => {
  const sd = () => orderedDict({ 'blocks.0.attn.qkv.weight': qkv });
  const cases: [string, unknown, string][] = [
    ['sd-model.pth', { state_dict: { model: sd() }, epoch: 1 }, 'state_dict.model'],
    ['model-state.pth', { model_state: sd(), optimizer_state: { state: {} } }, 'model_state'],
    ['module-sd.pth', { module: { state_dict: sd() } }, 'module.state_dict'],
    ['only-one.pth', { checkpoint: { state_dict: sd() }, step: 5 }, 'checkpoint.state_dict'],
  ];
  for (const [name, obj, part] of cases) {
    const p = join(dir, name);
    writeTorchCheckpoint(p, obj);
    const m = await openModel(p);
    try {
      assert.equal(m.part, part, name);
      assert.deepEqual(m.source.names(), ['blocks.0.attn.qkv.weight'], name);
      assert.deepEqual(Array.from(await m.source.read('blocks.0.attn.qkv.weight')), ramp(12), name);
    } finally {
      await m.close();
    }
  }
  const two = join(dir, 'two.pth');
  writeTorchCheckpoint(two, { student: { state_dict: sd() }, teacher: vit() });
  const ckpt = await TorchCheckpoint.open(two);
  try {
    assert.deepEqual(stateDictParts(ckpt.root), ['student', 'teacher']);
    await rejectsUser(async () => pickStateDict(ckpt.root, two), /several state dicts; choose one with --part: student, teacher/);
    assert.equal(pickStateDict(ckpt.root, two, 'student').part, 'student.state_dict');
    assert.ok(isModule(pickStateDict(ckpt.root, two, 'teacher').dict));
  } finally {
    await ckpt.close();
  }
  const m = await openModel(two, { part: 'teacher' });
  assert.deepEqual(m.source.names(), NAMES);
  await m.close();
});

test('a submodule shared by two parents is listed once (shared references are not expanded)', async () => {
  const shared = linear(torchTensor('F32', [2, 2], [1, 2, 3, 4]), null);
  const p = join(dir, 'shared.pth');
  writeTorchCheckpoint(p, mod('mypkg.Net', { modules: { a: shared, b: shared } }));
  const m = await openModel(p);
  assert.deepEqual(m.source.names(), ['a.weight']);
  await m.close();
});

test('a whole module pickled by CPython (torch 2.x attribute layout, DataParallel, partial, Namespace) reads like state_dict()', async () => {
  const p = join(dir, 'cpython-module.pth');
  const storages = Object.fromEntries(Object.entries(PY_MODULE_NUMEL).map(([k, n]) => [k, encode(ramp(n).map((x) => x + 100 * Number(k)), 'F32')]));
  writeTorchZip(p, Buffer.from(PY_MODULE_PICKLE, 'base64'), storages);
  const m = await openModel(p);
  try {
    assert.equal(m.part, 'model');
    const block = (i: number) => [`blocks.${i}.norm1.weight`, `blocks.${i}.norm1.bias`, `blocks.${i}.attn.qkv.weight`, `blocks.${i}.attn.qkv.bias`, `blocks.${i}.attn.proj.weight`, `blocks.${i}.mlp.fc1.weight`, `blocks.${i}.mlp.fc1.bias`];
    assert.deepEqual(m.source.names(), ['cls_token', 'pos_embed', 'relative_index', ...block(0), ...block(1), 'norm.weight', 'norm.bias', 'head.weight', 'head.bias']);
    assert.deepEqual(m.source.info('blocks.1.attn.qkv.weight'), { name: 'blocks.1.attn.qkv.weight', dtype: 'F32', shape: [12, 4] });
    // Storage 13 is block 1's qkv weight (pickling order); rows 4..8 are its k rows.
    assert.deepEqual(Array.from(await m.source.read('blocks.1.attn.qkv.weight', 4, 8)), ramp(48).slice(16, 32).map((x) => x + 1300));
    assert.deepEqual(Array.from(await m.source.read('head.bias')), ramp(3).map((x) => x + 2100));
  } finally {
    await m.close();
  }
});
