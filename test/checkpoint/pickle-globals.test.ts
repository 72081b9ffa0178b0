// The globals policy, as torch.load(weights_only=True): calls (REDUCE, INST, OBJ) only to the
// allow-list; classes only instantiated (NEWOBJ, copyreg._reconstructor) + BUILD become inert
// stand-ins; modules that run things are refused whatever the opcode. Nothing is ever executed
// in any case: these tests check that such files are refused with the global named, exit 2.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isDict, pyClassOf, pyState, unpickle } from '../../src/checkpoint/pickle.js';
import { TORCH_GLOBALS } from '../../src/checkpoint/torch.js';
import { glob, int, OP, pk, str, tuple, type Part } from './pickle-ops.js';
import { rejectsUser } from './tmp.js';

const load = (...parts: Part[]) => unpickle(pk(...parts), { location: 'evil.pkl', globals: TORCH_GLOBALS });

// [what the red team did, the pickle, the global the message must name]
const MALICIOUS: [string, Part[], string][] = [
  ['GLOBAL + REDUCE os.system', [OP.PROTO2, glob('os', 'system'), str('echo pwned'), OP.TUPLE1, OP.REDUCE, OP.STOP], 'os.system'],
  ['STACK_GLOBAL + REDUCE builtins.eval', [OP.PROTO4, str('builtins'), str('eval'), OP.STACK_GLOBAL, str('1+1'), OP.TUPLE1, OP.REDUCE, OP.STOP], 'builtins.eval'],
  ['protocol-0 name __builtin__.eval', ['c__builtin__\neval\n(S\'1\'\ntR.'], 'builtins.eval'],
  ['INST subprocess.Popen', [OP.MARK, str('ls'), 'isubprocess\nPopen\n', OP.STOP], 'subprocess.Popen'],
  ['OBJ posix.system', [OP.MARK, glob('posix', 'system'), str('ls'), 'o', OP.STOP], 'posix.system'],
  ['NEWOBJ of a class in os', [OP.PROTO2, glob('os', '_wrap_close'), OP.EMPTY_TUPLE, OP.NEWOBJ, OP.STOP], 'os._wrap_close'],
  ['REDUCE nt.system', [OP.PROTO2, glob('nt', 'system'), str('dir'), OP.TUPLE1, OP.REDUCE, OP.STOP], 'nt.system'],
  ['REDUCE builtins.getattr', [OP.PROTO2, glob('builtins', 'getattr'), glob('builtins', 'object'), str('__subclasses__'), OP.TUPLE2, OP.REDUCE, OP.STOP], 'builtins.getattr'],
  ['REDUCE builtins.__import__', [OP.PROTO2, glob('builtins', '__import__'), str('os'), OP.TUPLE1, OP.REDUCE, OP.STOP], 'builtins.__import__'],
  ['REDUCE runpy._run_code', [OP.PROTO2, glob('runpy', '_run_code'), str('x'), OP.EMPTY_DICT, OP.TUPLE2, OP.REDUCE, OP.STOP], 'runpy._run_code'],
  ['REDUCE importlib.import_module', [OP.PROTO2, glob('importlib', 'import_module'), str('os'), OP.TUPLE1, OP.REDUCE, OP.STOP], 'importlib.import_module'],
  ['REDUCE shutil.rmtree', [OP.PROTO2, glob('shutil', 'rmtree'), str('/'), OP.TUPLE1, OP.REDUCE, OP.STOP], 'shutil.rmtree'],
  ['REDUCE socket.socket', [OP.PROTO2, glob('socket', 'socket'), OP.EMPTY_TUPLE, OP.REDUCE, OP.STOP], 'socket.socket'],
  ['REDUCE pty.spawn', [OP.PROTO2, glob('pty', 'spawn'), str('sh'), OP.TUPLE1, OP.REDUCE, OP.STOP], 'pty.spawn'],
  ['REDUCE ctypes.CDLL', [OP.PROTO2, glob('ctypes', 'CDLL'), str('libc.so.6'), OP.TUPLE1, OP.REDUCE, OP.STOP], 'ctypes.CDLL'],
  ['REDUCE pickle.loads', [OP.PROTO2, glob('pickle', 'loads'), str('x'), OP.TUPLE1, OP.REDUCE, OP.STOP], 'pickle.loads'],
  ['REDUCE marshal.loads', [OP.PROTO2, glob('marshal', 'loads'), str('x'), OP.TUPLE1, OP.REDUCE, OP.STOP], 'marshal.loads'],
  ['REDUCE code.interact', [OP.PROTO2, glob('code', 'interact'), OP.EMPTY_TUPLE, OP.REDUCE, OP.STOP], 'code.interact'],
  ['REDUCE webbrowser.open', [OP.PROTO2, glob('webbrowser', 'open'), str('http://x'), OP.TUPLE1, OP.REDUCE, OP.STOP], 'webbrowser.open'],
  ['REDUCE sys.exit', [OP.PROTO2, glob('sys', 'exit'), OP.EMPTY_TUPLE, OP.REDUCE, OP.STOP], 'sys.exit'],
  ['an attribute chain torch.os.system', [OP.PROTO4, str('torch'), str('os.system'), OP.STACK_GLOBAL, str('ls'), OP.TUPLE1, OP.REDUCE, OP.STOP], 'torch.os.system'],
  ['a dunder chain', [OP.PROTO4, str('collections'), str('OrderedDict.__init__.__globals__'), OP.STACK_GLOBAL, OP.STOP], 'collections.OrderedDict.__init__.__globals__'],
  ['REDUCE of an unknown function', [OP.PROTO2, glob('mypkg.tools', 'run'), str('x'), OP.TUPLE1, OP.REDUCE, OP.STOP], 'mypkg.tools.run'],
  ['INST of an unknown class', [OP.MARK, 'imypkg\nThing\n', OP.STOP], 'mypkg.Thing'],
  ['a tensor rebuilt by an unknown function', [OP.PROTO2, glob('torch._tensor', '_rebuild_from_type_v2'), tuple(glob('mypkg', 'build'), glob('mypkg', 'T'), OP.EMPTY_TUPLE, OP.EMPTY_DICT), OP.REDUCE, OP.STOP], 'mypkg.build'],
];

for (const [what, parts, name] of MALICIOUS) {
  test(`refused, naming the global: ${what}`, async () => {
    const e = await rejectsUser(async () => load(...parts), 'evil.pkl', /refused to load the pickled data/, name, /unsafe, damaged or not a weights file/);
    assert.ok(!/\n/.test(e.message));
  });
}

test('a call of something that is not a global (OBJ on a dict) is refused', async () => {
  await rejectsUser(async () => load(OP.MARK, OP.EMPTY_DICT, int(1), 'o', OP.STOP), /calls a value that is not a global/);
});

test('the allow-list still loads what real checkpoints hold', () => {
  const o = load(
    OP.PROTO2,
    OP.EMPTY_DICT,
    str('counter'), glob('collections', 'Counter'), OP.EMPTY_DICT, str('a'), int(2), OP.SETITEM, OP.TUPLE1, OP.REDUCE, OP.SETITEM,
    str('fs'), glob('builtins', 'frozenset'), OP.EMPTY_LIST, int(4), OP.APPEND, OP.TUPLE1, OP.REDUCE, OP.SETITEM,
    str('slice'), glob('builtins', 'slice'), int(1), int(5), OP.NONE, OP.TUPLE3, OP.REDUCE, OP.SETITEM,
    str('complex'), glob('builtins', 'complex'), int(1), int(2), OP.TUPLE2, OP.REDUCE, OP.SETITEM,
    str('size'), glob('torch', 'Size'), int(3), int(4), OP.TUPLE2, OP.TUPLE1, OP.REDUCE, OP.SETITEM,
    str('device'), glob('torch', 'device'), str('cuda'), int(0), OP.TUPLE2, OP.REDUCE, OP.SETITEM,
    str('path'), glob('pathlib', 'PosixPath'), str('runs'), str('a'), OP.TUPLE2, OP.REDUCE, OP.SETITEM,
    str('ns'), glob('types', 'SimpleNamespace'), OP.EMPTY_TUPLE, OP.REDUCE, OP.EMPTY_DICT, str('lr'), int(1), OP.SETITEM, OP.BUILD, OP.SETITEM,
    str('args'), glob('argparse', 'Namespace'), OP.EMPTY_TUPLE, OP.NEWOBJ, OP.EMPTY_DICT, str('model'), str('deit_tiny'), OP.SETITEM, OP.BUILD, OP.SETITEM,
    str('net'), glob('__main__', 'Net'), OP.EMPTY_TUPLE, OP.NEWOBJ, OP.EMPTY_DICT, str('_modules'), OP.EMPTY_DICT, OP.SETITEM, OP.BUILD, OP.SETITEM,
    str('partial'), glob('functools', 'partial'), glob('torch.nn', 'LayerNorm'), OP.TUPLE1, OP.REDUCE, OP.SETITEM,
    OP.STOP,
  ) as Record<string, unknown>;
  assert.deepEqual({ ...(o.counter as object) }, { a: 2 });
  assert.deepEqual(o.fs, [4]);
  assert.equal(pyClassOf(o.slice), 'builtins.slice');
  assert.equal(pyClassOf(o.complex), 'builtins.complex');
  assert.deepEqual(o.size, [3, 4]);
  assert.equal(o.device, 'cuda:0');
  assert.equal(o.path, 'runs/a');
  assert.equal(pyClassOf(o.ns), 'types.SimpleNamespace');
  assert.deepEqual({ ...(pyState(o.args) as object) }, { model: 'deit_tiny' });
  assert.equal(pyClassOf(o.net), '__main__.Net', 'a class of the training script: inert, nothing called');
  assert.ok(isDict(pyState(o.net)));
  assert.equal(pyClassOf(o.partial), 'functools.partial', 'inert: never called');
});
