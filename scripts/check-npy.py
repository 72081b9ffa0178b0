#!/usr/bin/env python3
"""Dev check (not part of npm test): qkscope's .npy writer/reader against numpy itself.

Run after `npx tsc -p .`:  python3 scripts/check-npy.py
1. qkscope writes arrays (whole and streamed) -> must be byte-identical to numpy.save of the
   same array, and numpy.load must return the same values.
2. numpy.save writes arrays -> qkscope's readNpy must return the same dtype, shape and values.
"""
import json, os, subprocess, sys, tempfile
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOD = os.path.join(ROOT, 'dist', 'src', 'report', 'npy.js')
if not os.path.exists(MOD):
    sys.exit('build first: npx tsc -p .')

def arrays():
    # (name, array): deterministic contents, every supported dtype, odd shapes.
    a = []
    a.append(('f4_2x3', np.arange(6, dtype='<f4').reshape(2, 3) * 0.5 - 1))
    a.append(('f8_vec', np.linspace(-3, 7, 11, dtype='<f8')))
    a.append(('f8_scalar', np.array(np.pi, dtype='<f8')))
    a.append(('i4_3d', (np.arange(24, dtype='<i4') - 12).reshape(2, 3, 4)))
    a.append(('i8_big', np.array([-(2**62), 2**53 + 1, 0, 7], dtype='<i8')))
    a.append(('u1', np.arange(256, dtype='|u1').reshape(16, 16)))
    a.append(('f4_empty', np.zeros((0, 5), dtype='<f4')))
    a.append(('f4_vith_like', (np.arange(2 * 16 * 12 * 8, dtype='<f4') / 7).reshape(2, 16, 12, 8)))
    a.append(('f4_long_dim0', np.zeros((123456789012, 0), dtype='<f4')))  # 12-digit first dim, no data
    # Header lengths across several 64-byte boundaries (incl. one that lands exactly on it).
    for k in range(1, 30):
        for last in (0, 10, 1000, 100000):
            a.append((f'f4_ones{k}_{last}', np.full((1,) * k + (last,), 0.5, dtype='<f4')))
    return a

def main():
    tmp = tempfile.mkdtemp(prefix='qkscope-check-npy-')
    specs = []
    for name, arr in arrays():
        ref = os.path.join(tmp, f'{name}.numpy.npy')
        np.save(ref, arr)
        specs.append({'name': name, 'dtype': arr.dtype.str, 'shape': list(arr.shape),
                      'data': [str(x) if arr.dtype.kind == 'i' and arr.dtype.itemsize == 8 else float(x) if arr.dtype.kind == 'f' else int(x) for x in arr.ravel().tolist()],
                      'ref': ref})
    spec_path = os.path.join(tmp, 'specs.json')
    with open(spec_path, 'w') as f:
        json.dump({'dir': tmp, 'specs': specs}, f)
    js = r'''
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
const { writeNpy, NpyStreamWriter, readNpy } = await import(process.argv[2]);
const { dir, specs } = JSON.parse(readFileSync(process.argv[3], 'utf8'));
const out = {};
for (const s of specs) {
  const data = s.dtype === '<i8' ? BigInt64Array.from(s.data.map(BigInt)) : s.data;
  writeNpy(join(dir, s.name + '.whole.npy'), s.dtype, s.shape, data);
  const w = NpyStreamWriter.create(join(dir, s.name + '.stream.npy'), s.dtype, s.shape);
  for (let i = 0; i < data.length; i += 5) w.append(data.slice(i, i + 5));
  w.close();
  const r = readNpy(s.ref);
  out[s.name] = { dtype: r.dtype, shape: r.shape, data: Array.from(r.data, (v) => typeof v === 'bigint' ? v.toString() : v) };
}
console.log(JSON.stringify(out));
'''
    js_path = os.path.join(tmp, 'check.mjs')
    with open(js_path, 'w') as f:
        f.write(js)
    res = subprocess.run(['node', js_path, 'file://' + MOD, spec_path], capture_output=True, text=True, check=True)
    read_back = json.loads(res.stdout)
    fails = 0
    for name, arr in arrays():
        ref_bytes = open(os.path.join(tmp, f'{name}.numpy.npy'), 'rb').read()
        for kind in ('whole', 'stream'):
            p = os.path.join(tmp, f'{name}.{kind}.npy')
            got = open(p, 'rb').read()
            if got != ref_bytes:
                fails += 1
                print(f'FAIL {name} ({kind}): bytes differ from numpy.save\n  ours:  {got[:140]!r}\n  numpy: {ref_bytes[:140]!r}')
            back = np.load(p)
            if back.dtype != arr.dtype or back.shape != arr.shape or not np.array_equal(back, arr):
                fails += 1
                print(f'FAIL {name} ({kind}): numpy.load differs')
        r = read_back[name]
        if r['dtype'] != arr.dtype.str or tuple(r['shape']) != arr.shape:
            fails += 1
            print(f'FAIL {name}: readNpy gave {r["dtype"]} {r["shape"]}')
        want = [str(x) for x in arr.ravel().tolist()] if arr.dtype.str == '<i8' else arr.ravel().tolist()
        if r['data'] != want:
            fails += 1
            print(f'FAIL {name}: readNpy values differ')
    n = len(arrays())
    print(f'{n} arrays x (whole, stream, read): {"all match numpy " + np.__version__ if fails == 0 else str(fails) + " failures"}')
    sys.exit(1 if fails else 0)

main()
