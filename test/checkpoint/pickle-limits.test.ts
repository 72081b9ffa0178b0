// Bounded unpickling: references are never expanded (cycles and DAGs cost what their bytes cost),
// and every resource (work, objects, memo, stack, nesting depth, integer size) has a limit that
// ends in a one-line UserError naming the file and the limit. Each test has a timeout so that a
// regression shows up as a failure, not a hung run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { isDict, PICKLE_LIMITS, unpickle } from '../../src/checkpoint/pickle.js';
import { flattenTensors, TorchCheckpoint } from '../../src/checkpoint/torch.js';
import { encode } from '../../src/checkpoint/dtype.js';
import { get, glob, int, OP, pk, put, str, tensor, type Part } from './pickle-ops.js';
import { writeTorchZip } from './torch-write.js';
import { rejectsUser, tempDir } from './tmp.js';

const dir = tempDir('plimits');
const T = { timeout: 20_000 };
const load = (bytes: Uint8Array, limits?: Parameters<typeof unpickle>[1]['limits']) => unpickle(bytes, { location: 'h.pkl', limits });

test('a self-referencing dict is one object: loaded as a reference, flattened once', T, async () => {
  // d = {'w': tensor, 'self': d, 'again': d}; d[d-as-key] would be a TypeError in Python, here a short key.
  const pkl = pk(OP.PROTO2, OP.EMPTY_DICT, put(0), str('w'), tensor('0', 4, [2, 2], [2, 1]), OP.SETITEM, str('self'), get(0), OP.SETITEM, str('again'), get(0), OP.SETITEM, get(0), int(1), OP.SETITEM, OP.STOP);
  const p = join(dir, 'selfref.pt');
  writeTorchZip(p, pkl, { 0: encode([1, 2, 3, 4], 'F32') });
  const ckpt = await TorchCheckpoint.open(p);
  try {
    const root = ckpt.root as Record<string, unknown>;
    assert.equal(root.self, root, 'the cycle is kept as a reference');
    assert.equal(root.again, root);
    assert.ok('<dict>' in root || Object.keys(root).some((k) => k.startsWith('<')), 'a dict used as a key gets a short placeholder key');
    assert.deepEqual([...flattenTensors(root, p).keys()], ['w']);
  } finally {
    await ckpt.close();
  }
});

test('a dict DAG (each level references the previous twice) loads and flattens in linear time', T, async () => {
  // level_0 = {'w': t}; level_i = {'w': t, 'a': level_{i-1}, 'b': level_{i-1}}: 2^40 paths, 40 dicts.
  const levels = 40;
  const parts: Part[] = [OP.PROTO2, tensor('0', 1, [1], [1]), put(0), OP.POP, OP.EMPTY_DICT, put(1), str('w'), get(0), OP.SETITEM, OP.POP];
  for (let i = 1; i < levels; i++) {
    parts.push(OP.EMPTY_DICT, put(i + 1), str('w'), get(0), OP.SETITEM, str('a'), get(i), OP.SETITEM, str('b'), get(i), OP.SETITEM, OP.POP);
  }
  parts.push(get(levels), OP.STOP);
  const p = join(dir, 'dag.pt');
  writeTorchZip(p, pk(...parts), { 0: encode([7], 'F32') });
  const started = performance.now();
  const ckpt = await TorchCheckpoint.open(p);
  try {
    const names = [...flattenTensors(ckpt.root, p).keys()];
    // Each dict is visited once, by its first path: w, a.w, a.a.w, ... (never the 2^40 b-paths).
    assert.equal(names.length, levels);
    assert.deepEqual(names.slice(0, 3), ['w', 'a.w', 'a.a.w']);
    assert.ok(!names.some((n) => n.includes('b.')));
    assert.ok(performance.now() - started < 5000);
  } finally {
    await ckpt.close();
  }
});

test('100k-deep nesting is refused at the depth limit, one line naming the file', T, async () => {
  const n = 100_000;
  const bytes = pk(OP.PROTO2, Buffer.alloc(n, ']'), Buffer.alloc(n - 1, 'a'), OP.STOP);
  const e = await rejectsUser(async () => load(bytes), 'h.pkl', /refused/, new RegExp(`deeper than ${PICKLE_LIMITS.maxDepth} levels \\(depth limit\\)`));
  assert.ok(e.message.length < 400);
  // Through a checkpoint: the file is named.
  const p = join(dir, 'deep.pt');
  writeTorchZip(p, bytes);
  await rejectsUser(() => TorchCheckpoint.open(p), p, /depth limit/);
  // Nesting up to the limit is fine (and is far beyond any checkpoint).
  const ok = PICKLE_LIMITS.maxDepth - 1;
  const fine = load(pk(OP.PROTO2, Buffer.alloc(ok + 1, ']'), Buffer.alloc(ok, 'a'), OP.STOP));
  assert.ok(Array.isArray(fine));
});

test('copy work is charged: list(x) of a shared 10k list repeated 3000 times hits the work limit', T, async () => {
  const copies = (n: number) => {
    const parts: Part[] = [OP.PROTO2, OP.EMPTY_LIST, put(0), OP.MARK];
    for (let i = 0; i < 10_000; i++) parts.push(int(i % 200));
    parts.push(OP.APPENDS, OP.POP, glob('builtins', 'list'), put(1), OP.POP, OP.EMPTY_LIST);
    for (let i = 0; i < n; i++) parts.push(get(1), get(0), OP.TUPLE1, OP.REDUCE, OP.APPEND);
    return pk(...parts, OP.STOP);
  };
  const bomb = copies(3000);
  assert.ok(bomb.length < 60_000, 'a small file');
  await rejectsUser(async () => load(bomb), 'h.pkl', new RegExp(`more than ${PICKLE_LIMITS.maxWork} steps to unpickle \\(work limit\\)`));
  // 100 copies are 1M steps: fine, and the copies are independent lists.
  const o = load(copies(100)) as unknown[][];
  assert.equal(o.length, 100);
  assert.equal(o[0].length, 10_000);
  assert.notEqual(o[0], o[1]);
});

test('opcode work, objects, memo entries, stack size and integer size each have a limit', T, async () => {
  const many = (unit: Part[], n: number): Part[] => Array.from({ length: n }, () => unit).flat();
  await rejectsUser(async () => load(pk(OP.PROTO2, ...many([OP.NONE, OP.POP], 600), OP.NONE, OP.STOP), { maxWork: 1000 }), /more than 1000 steps to unpickle \(work limit\)/);
  await rejectsUser(async () => load(pk(OP.PROTO2, ...many([OP.EMPTY_DICT, OP.POP], 200), OP.NONE, OP.STOP), { maxObjects: 100 }), /more than 100 objects \(object limit\)/);
  await rejectsUser(async () => load(pk(OP.PROTO2, OP.NONE, ...Array.from({ length: 200 }, (_, i) => put(i)), OP.STOP), { maxMemo: 100 }), /more than 100 values \(memo limit\)/);
  await rejectsUser(async () => load(pk(OP.PROTO2, ...many([OP.NONE], 200), OP.STOP), { maxStack: 100 }), /past 100 values \(stack limit\)/);
  // The default object limit, reached by a 4 MB file of empty dicts.
  const dicts = pk(OP.PROTO2, Buffer.alloc(2 * (PICKLE_LIMITS.maxObjects + 1), '}0'), OP.NONE, OP.STOP);
  await rejectsUser(async () => load(dicts), new RegExp(`more than ${PICKLE_LIMITS.maxObjects} objects`));
  // Integers: a 1 MB LONG4 and a 10k-digit text INT (parsing them would be quadratic).
  const long4 = Buffer.alloc(4);
  long4.writeInt32LE(1_000_000);
  await rejectsUser(async () => load(pk(OP.PROTO2, 0x8b, long4, Buffer.alloc(1_000_000, 1), OP.STOP)), /integer of 1000000 bytes \(integer limit/);
  await rejectsUser(async () => load(pk('I', '9'.repeat(10_000), '\n', OP.STOP)), /integer of 10000 digits/);
  // Python's own bounds are accepted.
  assert.equal(load(pk('I', '9'.repeat(4000), '\n', OP.STOP)), BigInt('9'.repeat(4000)));
});

test('lengths that point past the data and names with newlines give one-line messages', T, async () => {
  const huge = Buffer.alloc(8);
  huge.writeBigUInt64LE(2n ** 62n);
  await rejectsUser(async () => load(pk(OP.PROTO4, 0x8d, huge, OP.STOP)), /unexpected end of data/);
  await rejectsUser(async () => load(pk(OP.PROTO4, 0x8e, huge, OP.STOP)), /unexpected end of data/);
  const e = await rejectsUser(async () => load(pk(OP.PROTO4, str('evil\nmod'), str('x\ny'), OP.STACK_GLOBAL, OP.EMPTY_TUPLE, OP.REDUCE, OP.STOP)), /evil\\x0amod\.x\\x0ay/);
  assert.ok(!e.message.includes('\n'));
  assert.ok(isDict(load(pk(OP.PROTO2, OP.EMPTY_DICT, OP.STOP))));
});
