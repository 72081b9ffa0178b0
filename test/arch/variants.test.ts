import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadWeight, type VitSpec } from '../../src/arch/spec.js';
import { makeCanonicalWeights, makeLayoutWeights, writeModel, type CanonicalOptions, type Layout } from '../fixtures/models.js';
import { expectSpecMatches, removeDir, tempDir, withSpec } from './helpers.js';

const root = tempDir('variants');
after(() => removeDir(root));
let n = 0;
const dirFor = (tag: string) => join(root, `${tag}-${n++}`);

const TINY: CanonicalOptions = { d: 32, heads: 4, layers: 2, seed: 11 };

describe('storage variants hold the same weights', () => {
  for (const dtype of ['F16', 'BF16'] as const) {
    for (const layout of ['hf-vit-classifier', 'timm-vit', 'hf-dinov2-registers'] as Layout[]) {
      it(`${layout} in ${dtype}`, async () => {
        const w = makeLayoutWeights(layout, TINY);
        const m = writeModel(dirFor(layout), layout, w, { dtype });
        const header = readFileSync(join(m.dir, 'model.safetensors'));
        assert.ok(header.subarray(8, 8 + Number(header.readBigUInt64LE(0))).toString().includes(`"dtype":"${dtype}"`));
        await withSpec(m.path, {}, (spec) => expectSpecMatches(spec, w, { eps: layout === 'hf-vit-classifier' ? 1e-12 : 1e-6 }));
      });
    }
  }

  it('sharded safetensors with model.safetensors.index.json', async () => {
    const w = makeLayoutWeights('hf-vit', TINY);
    const m = writeModel(dirFor('sharded'), 'hf-vit', w, { shards: 3 });
    const files = readdirSync(m.dir).sort();
    assert.deepEqual(
      files.filter((f) => f.startsWith('model')),
      ['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors', 'model.safetensors.index.json'],
    );
    const index = JSON.parse(readFileSync(join(m.dir, 'model.safetensors.index.json'), 'utf8'));
    assert.ok(index.metadata.total_size > 0);
    assert.equal(index.weight_map['encoder.layer.0.attention.attention.query.weight'] !== undefined, true);
    await withSpec(m.path, {}, (spec) => expectSpecMatches(spec, w, { eps: 1e-12 }));
  });

  it('pytorch_model.bin (torch zip format)', async () => {
    const w = makeLayoutWeights('hf-deit', TINY);
    const m = writeModel(dirFor('bin'), 'hf-deit', w, { format: 'bin' });
    assert.ok(m.files.includes('pytorch_model.bin'));
    await withSpec(m.path, {}, (spec) => expectSpecMatches(spec, w, { eps: 1e-12 }));
  });

  it('pytorch_model.bin in BF16', async () => {
    const w = makeLayoutWeights('hf-clip-vision', TINY);
    const m = writeModel(dirFor('binbf16'), 'hf-clip-vision', w, { format: 'bin', dtype: 'BF16' });
    await withSpec(m.path, {}, (spec) => expectSpecMatches(spec, w, { eps: 1e-5 }));
  });
});

async function qk(spec: VitSpec): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (const b of spec.blocks) for (const l of [b.q.weight, b.k.weight, b.q.bias, b.k.bias]) if (l) out.push(Float32Array.from(await loadWeight(l)));
  return out;
}

describe('the same weights in different layouts give identical q/k', () => {
  const pairs: Array<[Layout, Layout, Partial<CanonicalOptions>]> = [
    ['hf-vit-classifier', 'timm-vit', { classes: 5 }],
    ['hf-deit', 'timm-deit-distilled', { dist: true, classes: 5, distHead: true }],
    ['hf-beit', 'simmim-ft-pth', { absPos: false, qkvBias: 'qv', layerScale: true, relPos: 'layer', finalNorm: false, fcNorm: true, classes: 5 }],
    ['hf-ijepa', 'ijepa-pth-tar', { cls: false }],
  ];
  for (const [a, b, opts] of pairs) {
    it(`${a} and ${b}`, async () => {
      const w = makeCanonicalWeights({ ...TINY, ...opts });
      const ma = writeModel(dirFor(a), a, w);
      const mb = writeModel(dirFor(b), b, w, b === 'ijepa-pth-tar' ? { predictor: makeCanonicalWeights({ d: 16, heads: 4, layers: 1, cls: false, inputWidth: 32 }) } : {});
      const qa = await withSpec(ma.path, {}, qk);
      const qb = await withSpec(mb.path, { numHeads: 4 }, qk);
      assert.equal(qa.length, qb.length);
      assert.ok(qa.length >= 2 * TINY.layers);
      for (let i = 0; i < qa.length; i++) assert.deepEqual(qa[i], qb[i], `tensor ${i}`);
    });
  }
});

describe('planted q/k blocks', () => {
  it('land in the rows of their head, in every layout', async () => {
    const d = 32;
    const dh = 8;
    // Head h of layer l: W_q = c * E_{h}, W_k = -c * E_{h} on a block of the identity.
    const block = (l: number, h: number, sign: number) => {
      const a = new Float32Array(dh * d);
      for (let r = 0; r < dh; r++) a[r * d + ((h * dh + r + l) % d)] = (sign * (r + 1)) / 16;
      return a;
    };
    const planted = (l: number, h: number) => (h === 2 ? { wq: block(l, h, 1), wk: block(l, h, -1) } : undefined);
    for (const layout of ['hf-vit', 'timm-vit', 'hf-clip-vision', 'simmim-pth'] as Layout[]) {
      const w = makeLayoutWeights(layout, { ...TINY, planted });
      const m = writeModel(dirFor(`planted-${layout}`), layout, w);
      await withSpec(m.path, {}, async (spec) => {
        for (let l = 0; l < TINY.layers; l++) {
          const q = await loadWeight(spec.blocks[l].q.weight);
          const k = await loadWeight(spec.blocks[l].k.weight);
          assert.deepEqual(Array.from(q.subarray(2 * dh * d, 3 * dh * d)), Array.from(block(l, 2, 1)), `${layout} layer ${l} q`);
          assert.deepEqual(Array.from(k.subarray(2 * dh * d, 3 * dh * d)), Array.from(block(l, 2, -1)), `${layout} layer ${l} k`);
          // Other heads stay random.
          assert.notDeepEqual(Array.from(q.subarray(0, dh * d)), Array.from(k.subarray(0, dh * d)));
        }
      });
    }
  });
});

describe('fixture generator', () => {
  it('is deterministic and seed-dependent', () => {
    const a = makeCanonicalWeights({ d: 16, heads: 2, layers: 2, seed: 1 });
    const b = makeCanonicalWeights({ d: 16, heads: 2, layers: 2, seed: 1 });
    const c = makeCanonicalWeights({ d: 16, heads: 2, layers: 2, seed: 2 });
    assert.deepEqual(a.layer(1).q.w, b.layer(1).q.w);
    assert.deepEqual(a.pos, b.pos);
    assert.notDeepEqual(a.layer(1).q.w, c.layer(1).q.w);
    assert.notDeepEqual(a.layer(0).q.w, a.layer(1).q.w);
  });

  it('writes a ViT-B/16-sized model quickly, streaming', async () => {
    const w = makeCanonicalWeights({ d: 768, heads: 12, layers: 2, patch: 16, image: 224, classes: 10 });
    const t0 = Date.now();
    const m = writeModel(dirFor('vitb'), 'timm-vit', w, { dtype: 'BF16' });
    assert.ok(Date.now() - t0 < 10_000);
    await withSpec(m.path, {}, async (spec) => {
      assert.equal(spec.heads, 12);
      assert.equal(spec.headDim, 64);
      assert.deepEqual(spec.posEmbed?.grid, [14, 14]);
      assert.equal(spec.notes, undefined);
      const q = await loadWeight(spec.blocks[1].q.weight);
      assert.deepEqual(Array.from(q.subarray(0, 64)), Array.from(w.layer(1).q.w.subarray(0, 64)));
    });
  });
});
