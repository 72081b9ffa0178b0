import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VitRuntime } from '../../src/runtime/vit-runtime.js';
import { transpose2 } from '../../src/runtime/vit-graph.js';
import { tokenLayout } from '../../src/arch/tokens.js';
import { logitsWidth } from '../../src/arch/runnable.js';
import { naiveForward, type NaiveResult } from './naive-forward.js';
import { familySpecs, tinyPixels, tinySpec } from './tiny-specs.js';
import type { VitSpec } from '../../src/arch/spec.js';
import { MemorySource } from '../../src/checkpoint/memory.js';
import { loadWeight } from '../../src/arch/spec.js';

/** max |a - b| <= rtol * max |b| over the whole array. */
function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, what: string, rtol = 1e-4): void {
  assert.equal(got.length, want.length, `${what}: length`);
  let maxAbs = 0;
  let maxDiff = 0;
  let at = -1;
  for (let i = 0; i < want.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(want[i]));
    const dd = Math.abs(got[i] - want[i]);
    if (!(dd <= maxDiff)) {
      maxDiff = dd;
      at = i;
    }
  }
  assert.ok(maxDiff <= rtol * maxAbs, `${what}: max diff ${maxDiff} at ${at} (got ${got[at]}, want ${want[at]}) > ${rtol} x ${maxAbs}`);
}

function cat(parts: Float64Array[]): Float64Array {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const o = new Float64Array(n);
  let off = 0;
  for (const p of parts) {
    o.set(p, off);
    off += p.length;
  }
  return o;
}

async function naiveBatch(spec: VitSpec, pixels: Float32Array, n: number, size: [number, number]): Promise<NaiveResult[]> {
  const per = 3 * size[0] * size[1];
  const out: NaiveResult[] = [];
  for (let i = 0; i < n; i++) out.push(await naiveForward(spec, pixels.subarray(i * per, (i + 1) * per), size));
  return out;
}

async function checkAgainstNaive(spec: VitSpec, size: [number, number] = spec.imageSize, n = 2): Promise<void> {
  const rt = await VitRuntime.create(spec, {
    outputs: { ln: 'all', residual: 'all', attention: 'all', logits: true, features: true, final: true },
    imageSize: size,
    threads: 1,
  });
  try {
    const pixels = tinyPixels(n, size[0], size[1]);
    const r = await rt.run(pixels, n);
    const ref = await naiveBatch(spec, pixels, n, size);
    assert.equal(rt.layout.tokens, ref[0].tokens, 'token count');
    assertClose(r.ln!, cat(ref.flatMap((x) => x.ln)), `${spec.modelId} ln`);
    assertClose(r.residual!, cat(ref.flatMap((x) => x.residual)), `${spec.modelId} residual`);
    assertClose(r.attention!, cat(ref.flatMap((x) => x.attention)), `${spec.modelId} attention`);
    assertClose(r.final!, cat(ref.map((x) => x.final)), `${spec.modelId} final`);
    assertClose(r.features!, cat(ref.map((x) => x.features!)), `${spec.modelId} features`);
    if (logitsWidth(spec) !== null) {
      assert.ok(r.logits, 'logits present');
      assertClose(r.logits!, cat(ref.map((x) => x.logits!)), `${spec.modelId} logits`);
    } else {
      assert.equal(r.logits, undefined);
    }
  } finally {
    await rt.close();
  }
}

for (const [name, spec] of Object.entries(familySpecs())) {
  test(`graph matches the naive float64 forward: ${name}`, async () => {
    await checkAgainstNaive(spec);
  });
}

/** Runs `spec` with the given graph options and returns ln, residual, final, features, logits (no attention: fusable). */
async function forwardOutputs(spec: VitSpec, extra: { unfused?: 'all' | number[]; qkProjections?: 'all' | number[] }, pixels: Float32Array, n: number) {
  const rt = await VitRuntime.create(spec, { outputs: { ln: 'all', residual: 'all', logits: true, features: true, final: true }, threads: 1, ...extra });
  try {
    return { fused: [...rt.tensors.fused], r: await rt.run(pixels, n) };
  } finally {
    await rt.close();
  }
}

// The fused attention kernels (com.microsoft Attention; MultiHeadAttention behind separate q/k/v
// projections) against the independent float64 forward and against the plain-node graph, for
// every family: biases, no k bias (BEiT), relative position bias, layer-scale, quick-GELU,
// tanh-GELU, SwiGLU, registers, distillation token.
for (const [name, spec] of Object.entries(familySpecs())) {
  test(`fused attention = MultiHeadAttention = plain nodes = naive float64 forward: ${name}`, async () => {
    const n = 2;
    const pixels = tinyPixels(n, spec.imageSize[0], spec.imageSize[1], 5);
    const fused = await forwardOutputs(spec, {}, pixels, n);
    const mha = await forwardOutputs(spec, { unfused: [], qkProjections: 'all' }, pixels, n);
    const plain = await forwardOutputs(spec, { unfused: 'all' }, pixels, n);
    assert.deepEqual(fused.fused, Array(spec.layers).fill(true), 'every block fused without attention outputs or extensions');
    assert.deepEqual(mha.fused, Array(spec.layers).fill(true));
    assert.deepEqual(plain.fused, Array(spec.layers).fill(false));
    const ref = await naiveBatch(spec, pixels, n, spec.imageSize);
    const want: Record<string, Float64Array> = {
      ln: cat(ref.flatMap((x) => x.ln)),
      residual: cat(ref.flatMap((x) => x.residual)),
      final: cat(ref.map((x) => x.final)),
      features: cat(ref.map((x) => x.features!)),
    };
    if (logitsWidth(spec) !== null) want.logits = cat(ref.map((x) => x.logits!));
    for (const [k, w] of Object.entries(want)) {
      const f = fused.r[k as 'ln'] as Float32Array;
      const p = plain.r[k as 'ln'] as Float32Array;
      assertClose(f, w, `${name} fused ${k} vs naive`);
      assertClose(f, p, `${name} fused ${k} vs plain nodes`);
      assertClose(mha.r[k as 'ln'] as Float32Array, w, `${name} MultiHeadAttention ${k} vs naive`);
    }
  });
}

test('fused attention: the graph holds Attention nodes only where allowed', async () => {
  const { buildVitGraph } = await import('../../src/runtime/vit-graph.js');
  const spec = tinySpec({ family: 'hf-vit', layers: 4, classes: 3, seed: 51 });
  const attentionNodes = (g: { nodes: { opType?: string | null }[] }) => g.nodes.filter((nd) => nd.opType === 'Attention').length;
  const softmaxNodes = (g: { nodes: { opType?: string | null }[] }) => g.nodes.filter((nd) => nd.opType === 'Softmax').length;
  let b = await buildVitGraph(spec, { outputs: { logits: true } });
  assert.equal(attentionNodes(b.graph), 4);
  assert.equal(softmaxNodes(b.graph), 0);
  // Attention outputs and overridable weights keep their blocks plain.
  b = await buildVitGraph(spec, { outputs: { logits: true, attention: [1] }, overridable: ['blocks.3.q.weight'] });
  assert.deepEqual(b.tensors.fused, [true, false, true, false]);
  assert.equal(attentionNodes(b.graph), 2);
  assert.ok(b.tensors.attention[1] && b.tensors.attention[3] && !b.tensors.attention[0]);
  // An extension may look anywhere: all blocks plain unless it names the blocks it needs.
  let seen: boolean[] = [];
  b = await buildVitGraph(spec, { outputs: {}, extend: (g, t) => ((seen = [...t.fused]), g.output('a2', t.attention[2])) });
  assert.deepEqual(seen, [false, false, false, false]);
  b = await buildVitGraph(spec, { outputs: {}, unfused: [2], extend: (g, t) => ((seen = [...t.fused]), g.output('a2', t.attention[2])) });
  assert.deepEqual(seen, [true, true, false, true]);
  assert.equal(softmaxNodes(b.graph), 1);
  // q/k projections asked for: MultiHeadAttention behind separate MatMuls from the block's LayerNorm output.
  b = await buildVitGraph(spec, { outputs: {}, unfused: [], qkProjections: [1, 3], extend: (g, t) => ((seen = [...t.fused]), g.output('ln3', t.ln[3])) });
  assert.deepEqual(seen, [true, true, true, true]);
  assert.equal(attentionNodes(b.graph), 2);
  assert.equal(b.graph.nodes.filter((nd) => nd.opType === 'MultiHeadAttention').length, 1, 'block 3 is pruned (its LayerNorm input is the output)');
  assert.ok(b.graph.nodes.some((nd) => nd.opType === 'MatMul' && nd.input?.[0] === b.tensors.ln[1] && nd.input?.[1] === 'blocks.1.q.weight'));
  assert.equal(softmaxNodes(b.graph), 0);
});

test('fused attention with an extension on block 1 gives the same attention as the plain graph', async () => {
  const spec = familySpecs().beit; // relative position bias, no k bias, layer-scale
  const pixels = tinyPixels(2, 12, 12, 3);
  const tap = (g: import('../../src/runtime/onnx-graph.js').OnnxGraph, t: import('../../src/runtime/vit-graph.js').VitTensors) => {
    g.output('a1', t.attention[1]);
  };
  const a = await VitRuntime.create(spec, { outputs: { logits: true }, unfused: [1], extend: tap, threads: 1 });
  const b = await VitRuntime.create(spec, { outputs: { logits: true }, extend: tap, threads: 1 });
  const ra = await a.run(pixels, 2);
  const rb = await b.run(pixels, 2);
  await a.close();
  await b.close();
  assert.deepEqual(a.tensors.fused, [true, false]);
  assertClose(ra.extra.a1.data, rb.extra.a1.data, 'attention of the plain block');
  assertClose(ra.logits!, rb.logits!, 'logits');
});

test("DINOv2-with-registers classifier: [CLS, mean of the patch tokens], registers left out of the mean", async () => {
  const spec = familySpecs()['dinov2-reg-classifier'];
  const rt = await VitRuntime.create(spec, { outputs: { logits: true, features: true, final: true }, threads: 1 });
  const n = 2;
  const r = await rt.run(tinyPixels(n, 12, 12, 7), n);
  await rt.close();
  const d = spec.width, T = rt.layout.tokens, start = rt.layout.patchStart;
  assert.equal(start, 3, 'CLS + 2 registers');
  const W = await loadWeight(spec.head!.weight), b = await loadWeight(spec.head!.bias!);
  const C = spec.head!.weight.shape[0];
  let gapRegisters = 0;
  for (let i = 0; i < n; i++) {
    const fin = r.final!.subarray(i * T * d, (i + 1) * T * d);
    const mean = (from: number) => Array.from({ length: d }, (_, c) => {
      let s = 0;
      for (let t = from; t < T; t++) s += fin[t * d + c];
      return s / (T - from);
    });
    const logitsOf = (m: number[]) => Array.from({ length: C }, (_, k) => {
      let s = b[k];
      for (let c = 0; c < d; c++) s += W[k * 2 * d + c] * fin[c] + W[k * 2 * d + d + c] * m[c];
      return s;
    });
    const want = logitsOf(mean(start));
    const withRegs = logitsOf(mean(1));
    assertClose(r.logits!.subarray(i * C, (i + 1) * C), want, `image ${i} logits`);
    for (let k = 0; k < C; k++) gapRegisters = Math.max(gapRegisters, Math.abs(withRegs[k] - want[k]));
  }
  // The check can tell the two conventions apart on this model.
  assert.ok(gapRegisters > 1e-2, `registers change the mean by ${gapRegisters}`);
});

test('position embedding interpolation for another image size (HF bicubic)', async () => {
  const spec = tinySpec({ family: 'hf-dinov2', layerScale: true, tokens: ['cls', 'reg'], registers: 2, posSpecial: 1, classes: 3, seed: 21 });
  await checkAgainstNaive(spec, [20, 16]); // grid 3x3 -> 5x4
  await checkAgainstNaive(spec, [8, 8]); // 3x3 -> 2x2 (downsampling)
});

test('position embedding interpolation for another image size (timm, antialiased bicubic)', async () => {
  const spec = tinySpec({ family: 'timm-vit', classes: 3, seed: 22 });
  await checkAgainstNaive(spec, [20, 20]);
  await checkAgainstNaive(spec, [8, 8]);
});

test('layer selection stacks only the asked layers, in order', async () => {
  const spec = tinySpec({ family: 'hf-vit', layers: 3, seed: 23 });
  const rt = await VitRuntime.create(spec, { outputs: { ln: [2, 0], attention: [1] } });
  const pixels = tinyPixels(3, 12, 12);
  const r = await rt.run(pixels, 3);
  await rt.close();
  const ref = await naiveBatch(spec, pixels, 3, [12, 12]);
  assert.deepEqual(rt.layers.ln, [0, 2]);
  assertClose(r.ln!, cat(ref.flatMap((x) => [x.ln[0], x.ln[2]])), 'ln [0,2]');
  assertClose(r.attention!, cat(ref.map((x) => x.attention[1])), 'attention [1]');
  assert.equal(r.residual, undefined);
});

test('layers out of range are a UserError naming --layers', async () => {
  const spec = tinySpec({ family: 'hf-vit', layers: 2 });
  await assert.rejects(VitRuntime.create(spec, { outputs: { ln: [2] } }), (e: Error) => e.name === 'UserError' && /--layers: layer 2 is out of range.*0\.\.1/.test(e.message));
});

test('wrong pixel count is a UserError', async () => {
  const spec = tinySpec({ family: 'hf-vit' });
  const rt = await VitRuntime.create(spec, { outputs: { logits: true, features: true } });
  await assert.rejects(rt.run(new Float32Array(10), 1), (e: Error) => e.name === 'UserError' && /pixels/.test(e.message));
  await rt.close();
});

test('extension: MatMul of ln onto vectors + ReduceMax over patch tokens', async () => {
  const spec = tinySpec({ family: 'hf-deit', tokens: ['cls', 'dist'], seed: 31 });
  const d = spec.width;
  const K = 3;
  const U = new Float32Array(d * K).map((_, i) => Math.sin(i + 1));
  const rt = await VitRuntime.create(spec, {
    outputs: {},
    extend: (g, t) => {
      const u = g.init('modes_u', [d, K], U);
      const proj = g.matmul(t.ln[1], u); // [N, T, K]
      const patches = g.slice(proj, 1, t.layout.patchStart, t.layout.tokens);
      g.output('qmax', g.reduceMax(patches, [1]));
      g.output('qmean', g.reduceMean(patches, [1]));
    },
  });
  const pixels = tinyPixels(2, 12, 12);
  const r = await rt.run(pixels, 2);
  await rt.close();
  assert.deepEqual(r.extra.qmax.dims, [2, K]);
  const ref = await naiveBatch(spec, pixels, 2, [12, 12]);
  const want = new Float64Array(2 * K);
  const wantMean = new Float64Array(2 * K);
  const lay = tokenLayout(spec);
  for (let i = 0; i < 2; i++) {
    const ln = ref[i].ln[1];
    for (let k = 0; k < K; k++) {
      let mx = -Infinity;
      let s = 0;
      for (let t = lay.patchStart; t < lay.tokens; t++) {
        let v = 0;
        for (let c = 0; c < d; c++) v += ln[t * d + c] * U[c * K + k];
        mx = Math.max(mx, v);
        s += v;
      }
      want[i * K + k] = mx;
      wantMean[i * K + k] = s / lay.patches;
    }
  }
  assertClose(r.extra.qmax.data, want, 'qmax');
  assertClose(r.extra.qmean.data, wantMean, 'qmean');
});

test('weights: per-run override of W_q equals a rebuilt spec with the edited weight', async () => {
  const spec = tinySpec({ family: 'hf-vit', classes: 4, seed: 41 });
  const d = spec.width;
  const wq = Float32Array.from(await loadWeight(spec.blocks[1].q.weight));
  // Edit: W_q <- W_q (I - u u^T) for a unit vector u.
  const u = new Float64Array(d).map((_, i) => Math.cos(i));
  const nu = Math.hypot(...u);
  for (let i = 0; i < d; i++) u[i] /= nu;
  const edited = new Float32Array(d * d);
  for (let o = 0; o < d; o++) {
    let dot = 0;
    for (let i = 0; i < d; i++) dot += wq[o * d + i] * u[i];
    for (let i = 0; i < d; i++) edited[o * d + i] = wq[o * d + i] - dot * u[i];
  }
  const pixels = tinyPixels(2, 12, 12);
  const outputs = { attention: [1], logits: true };
  const rt = await VitRuntime.create(spec, { outputs, overridable: ['blocks.1.q.weight'] });
  assert.deepEqual(rt.overridableWeights, ['blocks.1.q.weight']);
  const base = await rt.run(pixels, 2);
  const over = await rt.run(pixels, 2, { weights: { 'blocks.1.q.weight': edited } });
  const again = await rt.run(pixels, 2);
  await rt.close();
  // Rebuild with the weight replaced at build time, and with an edited spec.
  const rt2 = await VitRuntime.create(spec, { outputs, weights: { 'blocks.1.q.weight': edited } });
  const built = await rt2.run(pixels, 2);
  await rt2.close();
  const src = new MemorySource('<edited>', { wq: { shape: [d, d], data: edited } });
  const spec3: VitSpec = { ...spec, blocks: spec.blocks.map((b, l) => (l === 1 ? { ...b, q: { ...b.q, weight: { source: src, name: 'wq', shape: [d, d] } } } : b)) };
  const ref = await naiveBatch(spec3, pixels, 2, [12, 12]);
  assertClose(over.attention!, cat(ref.map((x) => x.attention[1])), 'override attention');
  assertClose(over.logits!, cat(ref.map((x) => x.logits!)), 'override logits');
  assertClose(built.attention!, over.attention!, 'build-time override');
  assert.deepEqual(again.logits, base.logits, 'default restored when not fed');
  assert.notDeepEqual(base.logits, over.logits);
});

test('external-data serialisation gives the same numbers', async () => {
  const spec = familySpecs().dinov2;
  const pixels = tinyPixels(2, 12, 12);
  const a = await VitRuntime.create(spec, { outputs: { ln: 'all', logits: true } });
  const b = await VitRuntime.create(spec, { outputs: { ln: 'all', logits: true }, externalData: true });
  const ra = await a.run(pixels, 2);
  const rb = await b.run(pixels, 2);
  await a.close();
  await b.close();
  assert.deepEqual(rb.ln, ra.ln);
  assert.deepEqual(rb.logits, ra.logits);
});

test('cuda without the provider is a UserError with the install command', async (t) => {
  const { cudaProviderInstalled } = await import('../../src/runtime/device.js');
  if (cudaProviderInstalled()) return t.skip('CUDA provider installed here');
  const spec = tinySpec({ family: 'hf-vit' });
  await assert.rejects(
    VitRuntime.create(spec, { outputs: { features: true }, device: 'cuda' }),
    (e: Error) => e.name === 'UserError' && /--device cuda/.test(e.message) && /ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node/.test(e.message),
  );
});

test('transpose2 (tiled) = the element-by-element definition, edge tiles and scale included', () => {
  for (const [rows, cols, scale] of [[1, 1, 1], [5, 7, 1], [64, 64, 0.125], [65, 130, 1], [130, 65, -2], [3, 200, 1]] as const) {
    const w = Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i * 0.37) * 10);
    const t = transpose2(w, rows, cols, scale);
    assert.equal(t.length, rows * cols);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) assert.equal(t[c * rows + r], Math.fround(w[r * cols + c] * scale), `${rows}x${cols} at (${r}, ${c})`);
  }
});
