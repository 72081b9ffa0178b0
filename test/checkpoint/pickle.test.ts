// The pickles in py-pickles.ts were written by CPython 3.11's pickle.dumps, protocols 0-5, of:
//   {'none': None, 't': True, 'f': False, 'i1': 7, 'i2': 300, 'i4': -5, 'i5': 70000, 'big': 2**70,
//    'nbig': -(2**65), 'fl': 1.5, 'nf': -0.25, 's': 'héllo ✓', 'b': b'\x00\x01\xff', 'ba': bytearray(b'ab'),
//    'tup0': (), 'tup1': (1,), 'tup2': (1, 2), 'tup3': (1, 2, 3), 'tup5': (1, 2, 3, 4, 5), 'set': {3},
//    'fs': frozenset([4]), 'od': OrderedDict([('x', 1), ('y', 2)]), 'ints': {1: 'one', 2: 'two'},
//    'sh1': shared, 'sh2': shared, 'thing': somepkg.mod.Thing() (a=1, b='two'),
//    'ml': somepkg.mod.MyList([9, 8]), 'ns': argparse.Namespace(lr=0.5), 'long_list': list(range(5))}
// so every opcode family torch checkpoints use (and the older ones) is read against the reference.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isDict, pyClassOf, pyState, PY_ITEMS, unpickle } from '../../src/checkpoint/pickle.js';
import { Pickler, PyFloat, PyGlobalRef, PyReduce, PyTuple } from './pickle-write.js';
import { NUMPY_PICKLE, PY_PICKLES } from './py-pickles.js';
import { rejectsUser } from './tmp.js';

const b64 = (s: string) => new Uint8Array(Buffer.from(s, 'base64'));

for (const proto of [0, 1, 2, 3, 4, 5]) {
  test(`reads a CPython protocol ${proto} pickle`, () => {
    const o = unpickle(b64(PY_PICKLES[proto]), { location: 'p.pkl' }) as Record<string, unknown>;
    assert.ok(isDict(o));
    assert.equal(o.none, null);
    assert.equal(o.t, true);
    assert.equal(o.f, false);
    assert.deepEqual([o.i1, o.i2, o.i4, o.i5], [7, 300, -5, 70000]);
    assert.equal(o.big, 2n ** 70n);
    assert.equal(o.nbig, -(2n ** 65n));
    assert.deepEqual([o.fl, o.nf], [1.5, -0.25]);
    assert.equal(o.s, 'héllo ✓');
    assert.deepEqual(Array.from(o.b as Uint8Array), [0, 1, 255]);
    assert.deepEqual(Array.from(o.ba as Uint8Array), [97, 98]);
    assert.deepEqual([o.tup0, o.tup1, o.tup2, o.tup3, o.tup5], [[], [1], [1, 2], [1, 2, 3], [1, 2, 3, 4, 5]]);
    assert.deepEqual([o.set, o.fs], [[3], [4]]);
    assert.deepEqual({ ...(o.od as object) }, { x: 1, y: 2 });
    assert.deepEqual({ ...(o.ints as object) }, { 1: 'one', 2: 'two' });
    assert.equal(o.sh1, o.sh2, 'a shared object stays shared (memo)');
    assert.equal(pyClassOf(o.thing), 'somepkg.mod.Thing');
    assert.deepEqual({ ...(pyState(o.thing) as object) }, { a: 1, b: 'two' });
    assert.equal(pyClassOf(o.ml), 'somepkg.mod.MyList');
    assert.deepEqual((o.ml as Record<symbol, unknown>)[PY_ITEMS], [9, 8]);
    assert.equal(pyClassOf(o.ns), 'argparse.Namespace');
    assert.deepEqual({ ...(pyState(o.ns) as object) }, { lr: 0.5 });
    assert.deepEqual(o.long_list, [0, 1, 2, 3, 4]);
  });
}

test('numpy scalars decode to numbers; arrays stay inert placeholders', () => {
  const o = unpickle(b64(NUMPY_PICKLE), { location: 'np.pkl' }) as Record<string, unknown>;
  assert.equal(o.loss, 0.25);
  assert.equal(o.epoch, 3);
  assert.equal(o.f32, 1.5);
  assert.equal(pyClassOf(o.arr), 'numpy._core.multiarray._reconstruct');
});

test('damaged pickles are UserErrors naming the file', async () => {
  const good = b64(PY_PICKLES[2]);
  await rejectsUser(async () => unpickle(good.subarray(0, good.length - 20), { location: 'x/data.pkl' }), 'x/data.pkl', /unexpected end of data|stack underflow|MARK/, /damaged/);
  await rejectsUser(async () => unpickle(new Uint8Array([0x80, 2, 0xff]), { location: 'y.pkl' }), 'y.pkl', /unknown opcode 0xff at byte 3/);
  await rejectsUser(async () => unpickle(new Uint8Array([0x80, 2, 0x68, 5, 0x2e]), { location: 'z.pkl' }), /memo entry 5 is missing/);
  await rejectsUser(async () => unpickle(new Uint8Array([0x80, 2, 0x51, 0x2e]), { location: 'z.pkl' }), /stack underflow/);
  await rejectsUser(async () => unpickle(new Uint8Array([0x80, 2, 0x4e, 0x51, 0x2e]), { location: 'z.pkl' }), /persistent id without a loader/);
});

test('an allow-listed constructor that rejects its arguments is a UserError; an unknown callable is refused', async () => {
  const bytes = new Pickler().dump(new PyReduce(new PyGlobalRef('mine', 'f'), [1]));
  await rejectsUser(async () => unpickle(bytes, { location: 'a.pkl' }), 'a.pkl', /refused/, /calls mine\.f, which is not on the allow-list/);
  await rejectsUser(async () => unpickle(bytes, { location: 'a.pkl', globals: { 'mine.f': () => { throw new Error('bad args'); } } }), /mine\.f: bad args/);
  // The same class only instantiated (NEWOBJ), then given a state: an inert stand-in.
  const inst = new Pickler().dump(new PyReduce(new PyGlobalRef('mine', 'f'), [], { newobj: true, state: { a: 1 } }));
  const o = unpickle(inst, { location: 'a.pkl' });
  assert.equal(pyClassOf(o), 'mine.f');
  assert.deepEqual({ ...(pyState(o) as object) }, { a: 1 });
});

test('the pickler round-trips through the unpickler', () => {
  const shared = { k: 1 };
  const value = {
    a: [1, 2, 3],
    b: new PyTuple('x', new PyFloat(2), null, true, false),
    c: -70000,
    d: 2n ** 64n,
    e: 0.1,
    f: shared,
    g: shared,
    ['__proto__']: 'not a prototype',
    many: Object.fromEntries(Array.from({ length: 1500 }, (_, i) => [`k${i}`, i])),
  };
  const o = unpickle(new Pickler().dump(value), { location: 'rt' }) as Record<string, unknown>;
  assert.deepEqual(o.a, [1, 2, 3]);
  assert.deepEqual(o.b, ['x', 2, null, true, false]);
  assert.equal(o.c, -70000);
  assert.equal(o.d, 2n ** 64n);
  assert.equal(o.e, 0.1);
  assert.equal(o.f, o.g);
  assert.equal(Object.getOwnPropertyDescriptor(o, '__proto__')?.value, 'not a prototype');
  assert.equal(Object.keys(o.many as object).length, 1500);
  assert.equal((o.many as Record<string, number>).k1499, 1499);
});
