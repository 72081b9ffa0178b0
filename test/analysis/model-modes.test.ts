import { test } from 'node:test';
import assert from 'node:assert/strict';
import { analyzeModel } from '../../src/analysis/model-modes.js';
import { headModes } from '../../src/analysis/modes.js';
import { syntheticSpec } from '../../src/analysis/synthetic.js';
import type { HeadModes } from '../../src/analysis/types.js';
import type { VitSpec } from '../../src/arch/spec.js';
import type { MemorySource } from '../../src/checkpoint/memory.js';

interface ReadLog {
  name: string;
  r0?: number;
  r1?: number;
}

/** Records every read() of the source (name and row range). */
function spy(source: MemorySource): ReadLog[] {
  const log: ReadLog[] = [];
  const orig = source.read.bind(source);
  source.read = (name: string, r0?: number, r1?: number) => {
    log.push({ name, r0, r1 });
    return orig(name, r0, r1);
  };
  return log;
}

async function collect(spec: VitSpec, threads: number, layers?: number[]) {
  const got: { layer: number; heads: HeadModes[] }[] = [];
  const summary = await analyzeModel(spec, { threads, layers, onLayer: (layer, heads) => void got.push({ layer, heads }) });
  return { got, summary };
}

test('analyzeModel: same results with 1 and 2 threads, equal to headModes per head, in layer order', async () => {
  const { spec, source } = syntheticSpec({ layers: 4, heads: 3, headDim: 8, width: 40, seed: 3, full: true });
  const log = spy(source);
  const a = await collect(spec, 1);
  const b = await collect(spec, 2);
  assert.deepEqual(a.got.map((x) => x.layer), [0, 1, 2, 3]);
  assert.deepEqual(b.got.map((x) => x.layer), [0, 1, 2, 3]);
  for (let i = 0; i < 4; i++) {
    assert.deepEqual(b.got[i].heads.map((h) => h.head), [0, 1, 2]);
    for (let h = 0; h < 3; h++) {
      const x = a.got[i].heads[h], y = b.got[i].heads[h];
      assert.deepEqual(y.sigma, x.sigma);
      assert.deepEqual(y.U, x.U);
      assert.deepEqual(y.V, x.V);
      assert.deepEqual(y.cosine, x.cosine);
      assert.deepEqual(y.salience, x.salience);
      assert.equal(y.layer, i);
    }
  }
  // summaries carry no vectors
  assert.equal(b.summary.length, 4);
  assert.equal('U' in b.summary[0].heads[0], false);
  assert.deepEqual(b.summary[2].heads[1].sigma, b.got[2].heads[1].sigma);
  // the same as computing a head directly from the checkpoint's rows
  const q = await source.read('blocks.2.attn.q.weight', 8, 16);
  const k = await source.read('blocks.2.attn.k.weight', 8, 16);
  const bq = (await source.read('blocks.2.attn.q.bias')).slice(8, 16);
  const direct = headModes(q, k, bq, 40, 8, 2, 1);
  assert.deepEqual(a.got[2].heads[1].U, direct.U);
  assert.deepEqual(a.got[2].heads[1].salience, direct.salience);
  // only q/k weights and the q bias were read
  const allowed = /^blocks\.\d+\.attn\.(q\.weight|k\.weight|q\.bias)$/;
  for (const r of log) assert.match(r.name, allowed);
  assert.ok(source.names().some((n) => n.includes('mlp.fc1')), 'the spy test needs real v/o/MLP tensors present');
});

test('fused qkv: only the q and k row ranges are read; grouped-query heads share key heads', async () => {
  const H = 4, KV = 2, dh = 6, d = 30;
  const { spec, source } = syntheticSpec({ layers: 2, heads: H, kvHeads: KV, headDim: dh, width: d, fused: true, seed: 4, full: true });
  const log = spy(source);
  const { got } = await collect(spec, 2);
  for (const r of log) {
    assert.match(r.name, /^blocks\.\d+\.attn\.qkv\.(weight|bias)$/);
    assert.ok(r.r1 !== undefined && r.r1 <= (H + KV) * dh, `read rows ${r.r0}..${r.r1} of ${r.name} reach v`);
  }
  assert.ok(!log.some((r) => r.name.endsWith('bias') && r.r0 !== 0), 'only the q part of the bias');
  const w = await source.read('blocks.1.attn.qkv.weight');
  for (let h = 0; h < H; h++) {
    const kv = Math.floor(h / (H / KV));
    const q = w.slice(h * dh * d, (h + 1) * dh * d);
    const k = w.slice((H + kv) * dh * d, (H + kv + 1) * dh * d);
    const ref = headModes(q, k, null, d, dh, 1, h);
    assert.deepEqual(got[1].heads[h].sigma, ref.sigma);
    assert.deepEqual(got[1].heads[h].V, ref.V);
  }
});

test('layer subsets in the order given; streaming: layer l is delivered before layer l+2 is read', async () => {
  const { spec, source } = syntheticSpec({ layers: 6, heads: 2, headDim: 4, width: 16, seed: 5 });
  const log = spy(source);
  const readAtDelivery: number[] = [];
  const seen: number[] = [];
  await analyzeModel(spec, {
    threads: 2,
    onLayer: async (l) => {
      seen.push(l);
      const maxRead = Math.max(...log.map((r) => Number(r.name.split('.')[1])));
      readAtDelivery.push(maxRead);
      await new Promise((r) => setTimeout(r, 5)); // a slow consumer
    },
  });
  assert.deepEqual(seen, [0, 1, 2, 3, 4, 5]);
  readAtDelivery.forEach((m, l) => assert.ok(m <= l + 1, `layer ${l} delivered after layer ${m} was read`));
  const { got } = await collect(spec, 2, [4, 1]);
  assert.deepEqual(got.map((x) => x.layer), [4, 1]);
  await assert.rejects(analyzeModel(spec, { layers: [6] }), RangeError);
});

test('errors reject (both modes) and the workers are shut down', async () => {
  const { spec } = syntheticSpec({ layers: 3, heads: 2, headDim: 4, width: 16, seed: 6 });
  const bad: VitSpec = { ...spec, headDim: 5 };
  await assert.rejects(analyzeModel(bad, { threads: 2 }), /query weight/);
  await assert.rejects(analyzeModel(bad, { threads: 1 }), /query weight/);
  await assert.rejects(
    analyzeModel(spec, {
      threads: 2,
      onLayer: (l) => {
        if (l === 1) throw new Error('consumer failed');
      },
    }),
    /consumer failed/,
  );
  // an empty selection is fine
  assert.deepEqual(await analyzeModel(spec, { layers: [] }), []);
});

/** The spec with every weight read from `source` instead (same tensor names). */
function rebind<T>(x: T, source: import('../../src/checkpoint/types.js').TensorSource): T {
  if (Array.isArray(x)) return x.map((v) => rebind(v, source)) as T;
  if (x && typeof x === 'object') {
    if ('source' in x && 'name' in x) return { ...x, source } as T;
    return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, rebind(v, source)])) as T;
  }
  return x;
}

test('vectors straight into [L, H, d, d_h] arrays (shared or not, 1 or 2 threads) = the rows, transposed; false keeps none', async () => {
  const L = 3, H = 2, dh = 6, d = 20;
  const { spec } = syntheticSpec({ layers: L, heads: H, headDim: dh, width: d, seed: 5, full: true });
  const rows = await collect(spec, 1);
  const size = L * H * d * dh;
  for (const threads of [1, 2]) {
    for (const kind of ['shared f32', 'plain f64'] as const) {
      const make = () => (kind === 'shared f32' ? new Float32Array(new SharedArrayBuffer(4 * size)) : new Float64Array(size));
      const U = make(), V = make();
      const got: HeadModes[][] = [];
      await analyzeModel(spec, { threads, vectors: { U, V }, onLayer: (_l, heads) => void got.push(heads) });
      for (let l = 0; l < L; l++) {
        for (let h = 0; h < H; h++) {
          const want = rows.got[l].heads[h];
          assert.equal(got[l][h].U.length, 0, 'no per-head copy');
          assert.deepEqual(got[l][h].sigma, want.sigma);
          const base = (l * H + h) * d * dh;
          for (let i = 0; i < d; i++) {
            for (let n = 0; n < dh; n++) {
              assert.equal(U[base + i * dh + n], kind === 'shared f32' ? Math.fround(want.U[n * d + i]) : want.U[n * d + i], `${kind} ${threads}: U l${l} h${h} i${i} n${n}`);
              assert.equal(V[base + i * dh + n], kind === 'shared f32' ? Math.fround(want.V[n * d + i]) : want.V[n * d + i]);
            }
          }
        }
      }
    }
    const none: HeadModes[][] = [];
    await analyzeModel(spec, { threads, vectors: false, onLayer: (_l, heads) => void none.push(heads) });
    assert.equal(none[1][1].U.length + none[1][1].V.length, 0);
    assert.deepEqual(none[1][1].cosine, rows.got[1].heads[1].cosine);
  }
  await assert.rejects(analyzeModel(spec, { vectors: { U: new Float32Array(10), V: new Float32Array(10) } }), /vectors need/);
});

test('weights read in place from a safetensors file (reused buffers) give the same modes as reads of fresh arrays', async () => {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const { SafetensorsFile, writeSafetensors } = await import('../../src/checkpoint/safetensors.js');
  const { spec, source } = syntheticSpec({ layers: 4, heads: 3, headDim: 8, width: 40, seed: 9, full: true });
  const dir = mkdtempSync(join(tmpdir(), 'qkscope-modes-'));
  try {
    const tensors: Record<string, { dtype: 'F32'; shape: number[]; data: ArrayLike<number> }> = {};
    for (const name of source.names()) tensors[name] = { dtype: 'F32', shape: source.info(name)!.shape, data: await source.read(name) };
    writeSafetensors(join(dir, 'm.safetensors'), tensors);
    const file = await SafetensorsFile.open(join(dir, 'm.safetensors'));
    let inPlace = 0;
    const readInto = file.readInto.bind(file);
    file.readInto = async (...a: Parameters<typeof readInto>) => {
      const r = await readInto(...a);
      if (r) inPlace++;
      return r;
    };
    const fromFile = rebind(spec, file);
    const want = await collect(spec, 1);
    for (const threads of [1, 2]) {
      inPlace = 0;
      const got = await collect(fromFile, threads);
      assert.equal(inPlace, 4 * 3, `threads ${threads}: q, k and q-bias of every layer read in place`);
      for (let l = 0; l < 4; l++) for (let h = 0; h < 3; h++) {
        assert.deepEqual(got.got[l].heads[h].sigma, want.got[l].heads[h].sigma);
        assert.deepEqual(got.got[l].heads[h].U, want.got[l].heads[h].U);
        assert.deepEqual(got.got[l].heads[h].salience, want.got[l].heads[h].salience);
      }
    }
    await file.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
