/**
 * End to end for every checkpoint layout: fixture files -> openModel -> buildSpec -> ONNX
 * graph, checked against the naive float64 forward on the same spec.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LAYOUTS, makeLayoutWeights, writeModel, type Layout } from '../fixtures/models.js';
import { openModel } from '../../src/checkpoint/open.js';
import { buildSpec } from '../../src/arch/registry.js';
import { VitRuntime } from '../../src/runtime/vit-runtime.js';
import { naiveForward } from './naive-forward.js';
import { tinyPixels } from './tiny-specs.js';

function maxRel(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let m = 0;
  let d = 0;
  for (let i = 0; i < want.length; i++) {
    m = Math.max(m, Math.abs(want[i]));
    d = Math.max(d, Math.abs(got[i] - want[i]));
  }
  return m === 0 ? d : d / m;
}

const root = mkdtempSync(join(tmpdir(), 'qkscope-rt-e2e-'));
test.after(() => rmSync(root, { recursive: true, force: true }));

for (const layout of LAYOUTS as readonly Layout[]) {
  test(`runtime agrees with the naive forward on a ${layout} checkpoint`, async () => {
    const o = { d: 16, heads: 2, layers: 2, seed: 7 };
    const w = makeLayoutWeights(layout, o);
    const wo = layout === 'ijepa-pth-tar' ? { predictor: makeLayoutWeights('hf-ijepa', { ...o, seed: 8, inputWidth: 16 }) } : {};
    const written = writeModel(join(root, layout), layout, w, wo);
    const opened = await openModel(written.path, layout === 'ijepa-pth-tar' ? { part: 'encoder' } : {});
    try {
      const spec = buildSpec({ config: opened.config, preprocessorConfig: opened.preprocessorConfig, source: opened.source, modelId: layout, numHeads: 2 });
      if (spec.modality !== 'vision') {
        // Text transformers share the weight analysis only: the runtime says so.
        await assert.rejects(VitRuntime.create(spec, { outputs: { ln: 'all' } }), (e: Error) => e.name === 'UserError' && /only vision models/.test(e.message));
        return;
      }
      const rt = await VitRuntime.create(spec, { outputs: { ln: 'all', residual: 'all', attention: 'all', logits: true, features: true }, threads: 1 });
      const [h, wd] = spec.imageSize;
      const px = tinyPixels(1, h, wd, 5);
      const r = await rt.run(px, 1);
      await rt.close();
      const ref = await naiveForward(spec, px);
      const L = spec.layers;
      const per = rt.layout.tokens * spec.width;
      for (let l = 0; l < L; l++) {
        assert.ok(maxRel(r.ln!.subarray(l * per, (l + 1) * per), ref.ln[l]) <= 1e-4, `${layout} ln ${l}`);
        assert.ok(maxRel(r.residual!.subarray(l * per, (l + 1) * per), ref.residual[l]) <= 1e-4, `${layout} residual ${l}`);
        const pa = spec.heads * rt.layout.tokens ** 2;
        assert.ok(maxRel(r.attention!.subarray(l * pa, (l + 1) * pa), ref.attention[l]) <= 1e-4, `${layout} attention ${l}`);
      }
      // Every checkpoint with a classifier, projection or attention-pooling head gives logits.
      assert.equal(!!ref.logits, w.opts.classes > 0 || w.opts.attnPool, `${layout}: logits expected iff the checkpoint has a head`);
      if (ref.logits) {
        assert.ok(r.logits, `${layout}: logits expected`);
        assert.ok(maxRel(r.logits!, ref.logits) <= 1e-4, `${layout} logits`);
      } else assert.equal(r.logits, undefined);
    } finally {
      await opened.close();
    }
  });
}

test('runtime agrees with the naive forward on a custom --layout checkpoint (embedding described in the layout)', async () => {
  const w = makeLayoutWeights('custom-layout', { d: 16, heads: 2, layers: 2, seed: 7 });
  const written = writeModel(join(root, 'custom-layout'), 'custom-layout', w);
  const opened = await openModel(written.path);
  try {
    const spec = buildSpec({ config: opened.config, source: opened.source, modelId: 'custom', layout: written.layoutFile! });
    const rt = await VitRuntime.create(spec, { outputs: { ln: 'all', attention: 'all', logits: true }, threads: 1 });
    const px = tinyPixels(1, 16, 16, 5);
    const r = await rt.run(px, 1);
    await rt.close();
    const ref = await naiveForward(spec, px);
    const per = rt.layout.tokens * spec.width;
    for (let l = 0; l < spec.layers; l++) assert.ok(maxRel(r.ln!.subarray(l * per, (l + 1) * per), ref.ln[l]) <= 1e-4, `ln ${l}`);
    assert.ok(ref.logits && r.logits);
    assert.ok(maxRel(r.logits, ref.logits) <= 1e-4, 'logits');
  } finally {
    await opened.close();
  }
});
