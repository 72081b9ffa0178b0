/**
 * `startLayer`: a graph that starts at block l, fed the residual a full graph computes entering
 * block l, must give what the full graph gives from there on (attention of blocks ≥ l, final
 * tokens, pooled features, logits), for every token layout and block variant.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VitRuntime } from '../../src/runtime/vit-runtime.js';
import { buildVitGraph } from '../../src/runtime/vit-graph.js';
import { tinyPixels, tinySpec } from '../runtime/tiny-specs.js';
import type { VitSpec } from '../../src/arch/spec.js';

/** max |got − want| ≤ tol · max |want|. */
function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, what: string, tol = 1e-5): void {
  assert.equal(got.length, want.length, `${what}: length`);
  let m = 0;
  let diff = 0;
  for (let i = 0; i < want.length; i++) {
    m = Math.max(m, Math.abs(want[i]));
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
  }
  assert.ok(m > 0, `${what}: all zero`);
  assert.ok(diff <= tol * m, `${what}: max diff ${diff} > ${tol} × ${m}`);
}

const L = 3;
const specs: Record<string, VitSpec> = {
  'vit (cls, classifier)': tinySpec({ family: 'hf-vit', layers: L, classes: 5, seed: 51 }),
  'deit (cls + distillation head)': tinySpec({ family: 'hf-deit', layers: L, tokens: ['cls', 'dist'], classes: 5, distHead: true, seed: 52 }),
  'beit (relative position bias, mean pooling, layer scale)': tinySpec({ family: 'hf-beit', layers: L, relPos: true, noPos: true, layerScale: true, noKBias: true, finalNorm: false, pooling: 'mean', fcNorm: true, classes: 3, seed: 53 }),
  'dinov2 (registers, SwiGLU, no classifier)': tinySpec({ family: 'hf-dinov2', layers: L, tokens: ['cls', 'reg'], registers: 3, posSpecial: 1, layerScale: true, swiglu: true, seed: 54 }),
  'timm (registers, classifier)': tinySpec({ family: 'timm-vit', layers: L, tokens: ['cls', 'reg', 'reg'], registers: 2, posSpecial: 3, classes: 3, activation: 'silu', seed: 55 }),
  'clip (pre-norm)': tinySpec({ family: 'hf-clip', layers: L, preNorm: true, activation: 'quick_gelu', seed: 56 }),
};

for (const [name, spec] of Object.entries(specs)) {
  test(`a graph started at block l fed the full graph's residual gives the full graph's outputs: ${name}`, async () => {
    const n = 3;
    const hasLogits = !!spec.head && spec.pooling !== 'none';
    const full = await VitRuntime.create(spec, { outputs: { residual: 'all', attention: 'all', logits: hasLogits, features: true, final: true }, threads: 1 });
    const px = tinyPixels(n, spec.imageSize[0], spec.imageSize[1], 17);
    const ref = await full.run(px, n);
    await full.close();
    const T = full.layout.tokens;
    const d = spec.width;
    const H = spec.heads;
    for (let start = 1; start < L; start++) {
      const part = await VitRuntime.create(spec, { outputs: { attention: Array.from({ length: L - start }, (_, k) => start + k), logits: hasLogits, features: true, final: true }, startLayer: start, threads: 1 });
      assert.deepEqual(part.input, { name: 'residual', dims: [T, d] });
      // The residual entering block `start`, per image.
      const resid = new Float32Array(n * T * d);
      for (let i = 0; i < n; i++) resid.set(ref.residual!.subarray((i * L + start) * T * d, (i * L + start + 1) * T * d), i * T * d);
      const r = await part.run(resid, n);
      await part.close();
      const per = H * T * T;
      const Ls = L - start;
      const want = new Float32Array(n * Ls * per);
      for (let i = 0; i < n; i++) for (let k = 0; k < Ls; k++) want.set(ref.attention!.subarray((i * L + start + k) * per, (i * L + start + k + 1) * per), (i * Ls + k) * per);
      assertClose(r.attention!, want, `${name} start ${start} attention`);
      assertClose(r.final!, ref.final!, `${name} start ${start} final`);
      assertClose(r.features!, ref.features!, `${name} start ${start} features`);
      if (hasLogits) assertClose(r.logits!, ref.logits!, `${name} start ${start} logits`);
      else assert.equal(r.logits, undefined);
    }
    // Without attention outputs the blocks may run on fused kernels, in both graphs alike.
    const fusedFull = await VitRuntime.create(spec, { outputs: { residual: 'all', features: true, final: true }, threads: 1 });
    const fref = await fusedFull.run(px, n);
    await fusedFull.close();
    for (let start = 1; start < L; start++) {
      const part = await VitRuntime.create(spec, { outputs: { features: true, final: true }, startLayer: start, threads: 1 });
      const resid = new Float32Array(n * T * d);
      for (let i = 0; i < n; i++) resid.set(fref.residual!.subarray((i * L + start) * T * d, (i * L + start + 1) * T * d), i * T * d);
      const r = await part.run(resid, n);
      await part.close();
      assertClose(r.final!, fref.final!, `${name} start ${start} final (fused)`);
      assertClose(r.features!, fref.features!, `${name} start ${start} features (fused)`);
      assertClose(r.final!, ref.final!, `${name} start ${start} final (fused vs plain)`, 1e-4);
    }
  });
}

test('a started graph holds only the later blocks, refuses outputs of earlier ones, and checks its input size', async () => {
  const spec = specs['vit (cls, classifier)'];
  const full = await buildVitGraph(spec, { outputs: { logits: true } });
  const part = await buildVitGraph(spec, { outputs: { logits: true }, startLayer: 2 });
  assert.equal(part.startLayer, 2);
  assert.equal(full.input.name, 'pixels');
  assert.ok(!part.graph.initializers.has('patchEmbed.weight') && full.graph.initializers.has('patchEmbed.weight'));
  const blocksOf = (g: typeof part) => new Set([...g.graph.initializers.keys()].map((k) => /^blocks\.(\d+)\./.exec(k)?.[1]).filter((x) => x !== undefined).map(Number));
  assert.deepEqual([...blocksOf(part)], [2]);
  assert.deepEqual([...blocksOf(full)].sort(), [0, 1, 2]);
  assert.ok(part.flopsPerImage < full.flopsPerImage / 2, `${part.flopsPerImage} vs ${full.flopsPerImage}`);
  assert.deepEqual(part.tensors.residual.slice(0, 2), ['', '']);
  await assert.rejects(buildVitGraph(spec, { outputs: { ln: [1] }, startLayer: 2 }), (e: Error) => e.name === 'UserError' && /layer 1 comes before the graph's first block 2/.test(e.message));
  await assert.rejects(buildVitGraph(spec, { outputs: { logits: true }, startLayer: 3 }), /startLayer 3/);
  const rt = await VitRuntime.create(spec, { outputs: { logits: true }, startLayer: 1, threads: 1 });
  await assert.rejects(rt.run(new Float32Array(10), 1), (e: Error) => e.name === 'UserError' && /^residual: expected 1 x 10 x 16 = 160 values, got 10$/.test(e.message));
  await rt.close();
});
