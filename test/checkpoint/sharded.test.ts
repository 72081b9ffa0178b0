import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ShardedSource } from '../../src/checkpoint/sharded.js';
import { writeSafetensors } from '../../src/checkpoint/safetensors.js';
import { ramp, rejectsUser, tempDir } from './tmp.js';

const root = tempDir('sharded');

function shardedModel(name: string): string {
  const dir = join(root, name);
  mkdirSync(dir);
  writeSafetensors(join(dir, 'model-00001-of-00002.safetensors'), {
    'blocks.0.qkv.weight': { dtype: 'F32', shape: [6, 2], data: ramp(12) },
    'blocks.0.norm.weight': { dtype: 'BF16', shape: [2], data: [1, 2] },
  });
  writeSafetensors(join(dir, 'model-00002-of-00002.safetensors'), { 'head.weight': { dtype: 'F16', shape: [3, 2], data: ramp(6) } });
  writeFileSync(
    join(dir, 'model.safetensors.index.json'),
    JSON.stringify({
      metadata: { total_size: 64 },
      weight_map: {
        'blocks.0.qkv.weight': 'model-00001-of-00002.safetensors',
        'blocks.0.norm.weight': 'model-00001-of-00002.safetensors',
        'head.weight': 'model-00002-of-00002.safetensors',
      },
    }),
  );
  return join(dir, 'model.safetensors.index.json');
}

test('reads tensors across shards, opening each shard on first use', async () => {
  const src = await ShardedSource.open(shardedModel('ok'));
  try {
    assert.deepEqual(src.names(), ['blocks.0.qkv.weight', 'blocks.0.norm.weight', 'head.weight']);
    assert.deepEqual(src.metadata, { total_size: 64 });
    assert.deepEqual(src.openedShards(), [], 'nothing opened by open()');
    assert.deepEqual(Array.from(await src.read('head.weight', 1, 2)), ramp(6).slice(2, 4));
    assert.deepEqual(src.openedShards(), ['model-00002-of-00002.safetensors']);
    assert.deepEqual(src.info('blocks.0.norm.weight'), { name: 'blocks.0.norm.weight', dtype: 'BF16', shape: [2] });
    assert.equal(src.openedShards().length, 2);
    assert.deepEqual(Array.from(await src.read('blocks.0.qkv.weight', 0, 2)), ramp(12).slice(0, 4));
    assert.equal(src.info('absent'), undefined);
    await rejectsUser(() => src.read('absent'), 'model.safetensors.index.json', /tensor absent is missing/);
  } finally {
    await src.close();
  }
});

test('a missing shard file is a UserError naming it, before any read', async () => {
  const index = shardedModel('missing');
  const shard = join(root, 'missing', 'model-00002-of-00002.safetensors');
  rmSync(shard);
  await rejectsUser(() => ShardedSource.open(index), shard, /shard listed in .*index\.json is missing/, /download/);
});

test('an index that is not JSON, lacks weight_map, or escapes its folder is refused', async () => {
  const dir = join(root, 'bad');
  mkdirSync(dir);
  const p = join(dir, 'model.safetensors.index.json');
  writeFileSync(p, '{"weight_map": ');
  await rejectsUser(() => ShardedSource.open(p), p, /not JSON/);
  writeFileSync(p, '{"metadata": {}}');
  await rejectsUser(() => ShardedSource.open(p), p, /no weight_map/);
  writeFileSync(p, JSON.stringify({ weight_map: { a: '../../etc/passwd' } }));
  await rejectsUser(() => ShardedSource.open(p), p, /tensor a maps to/);
  await rejectsUser(() => ShardedSource.open(join(dir, 'nope.json')), 'nope.json', /cannot open/);
});

test('a tensor the index places in a shard that lacks it is reported', async () => {
  const index = shardedModel('liar');
  writeFileSync(
    index,
    JSON.stringify({ weight_map: { 'head.weight': 'model-00001-of-00002.safetensors' } }),
  );
  const src = await ShardedSource.open(index);
  try {
    await rejectsUser(() => src.read('head.weight'), 'model-00001-of-00002.safetensors', /not in this shard/);
  } finally {
    await src.close();
  }
});

test('a shard that is a directory is named at open; a tensor missing from its shard names both files', async () => {
  const index = shardedModel('dirshard');
  const shard = join(root, 'dirshard', 'model-00002-of-00002.safetensors');
  rmSync(shard);
  mkdirSync(shard);
  await rejectsUser(() => ShardedSource.open(index), shard, /is a directory, not a safetensors shard/);
  rmSync(shard, { recursive: true });
  writeSafetensors(shard, { other: { dtype: 'F32', shape: [1], data: [1] } });
  const src = await ShardedSource.open(index);
  try {
    assert.equal(src.info('blocks.0.qkv.weight')?.dtype, 'F32');
    await rejectsUser(() => src.read('head.weight'), shard, /tensor head\.weight is not in this shard although .*index\.json says so/);
  } finally {
    await src.close();
  }
});
