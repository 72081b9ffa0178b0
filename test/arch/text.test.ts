import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { join } from 'node:path';
import { loadWeight, type VitSpec } from '../../src/arch/spec.js';
import { makeLayoutWeights, writeModel, type CanonicalOptions, type CanonicalWeights } from '../fixtures/models.js';
import { expectLinear, expectNorm, expectRef, removeDir, tempDir, withSpec } from './helpers.js';

const root = tempDir('text');
after(() => removeDir(root));

function textBasics(spec: VitSpec, w: CanonicalWeights): void {
  assert.equal(spec.modality, 'text');
  assert.deepEqual(spec.imageSize, [0, 0]);
  assert.equal(spec.patchSize, 0);
  assert.deepEqual(spec.tokenLayout, []);
  assert.equal(spec.pooling, 'none');
  assert.equal(spec.width, w.opts.d);
  assert.equal(spec.heads, w.opts.heads);
  assert.equal(spec.layers, w.opts.layers);
}

describe('text transformers (weight analysis)', () => {
  it('GPT-2: Conv1D c_attn [d, 3d] split into transposed q, k, v refs', async () => {
    const o: CanonicalOptions = { d: 32, heads: 4, layers: 2, seed: 3 };
    const w = makeLayoutWeights('hf-gpt2', o);
    const m = writeModel(join(root, 'gpt2'), 'hf-gpt2', w);
    await withSpec(m.path, {}, async (spec) => {
      textBasics(spec, w);
      assert.equal(spec.family, 'text-gpt2');
      assert.equal(spec.activation, 'gelu_tanh');
      const k = spec.blocks[1].k.weight;
      assert.equal(k.transposed, true);
      assert.deepEqual(k.rows, [32, 64]);
      assert.deepEqual(k.shape, [32, 32]);
      for (let i = 0; i < o.layers; i++) {
        const c = w.layer(i);
        const b = spec.blocks[i];
        for (const key of ['q', 'k', 'v', 'o'] as const) await expectLinear(b[key], c[key], `block ${i} ${key}`);
        await expectNorm(b.norm1, c.norm1, 1e-5, `block ${i} ln_1`);
        await expectNorm(b.norm2, c.norm2, 1e-5, `block ${i} ln_2`);
        if (b.mlp.kind === 'mlp') {
          await expectLinear(b.mlp.fc1, c.fc1, 'c_fc');
          await expectLinear(b.mlp.fc2, c.fc2, 'c_proj');
        } else assert.fail('mlp kind');
      }
      await expectNorm(spec.finalNorm, w.finalNorm, 1e-5, 'ln_f');
    });
  });

  it('BERT: post-norm blocks, norm1 = the LayerNorm that produced the block input', async () => {
    const w = makeLayoutWeights('hf-bert', { d: 32, heads: 4, layers: 3, seed: 4 });
    const m = writeModel(join(root, 'bert'), 'hf-bert', w);
    await withSpec(m.path, {}, async (spec) => {
      textBasics(spec, w);
      assert.equal(spec.postNorm, true);
      assert.equal(spec.blocks[0].norm1.weight?.name, 'bert.embeddings.LayerNorm.weight');
      assert.equal(spec.blocks[2].norm1.weight?.name, 'bert.encoder.layer.1.output.LayerNorm.weight');
      for (let i = 0; i < 3; i++) {
        const c = w.layer(i);
        for (const key of ['q', 'k', 'v', 'o'] as const) await expectLinear(spec.blocks[i][key], c[key], `block ${i} ${key}`);
        await expectNorm(spec.blocks[i].norm1, c.norm1, 1e-12, `block ${i} norm1`);
        await expectNorm(spec.blocks[i].norm2, c.norm2, 1e-12, `block ${i} norm2`);
      }
      await expectNorm(spec.finalNorm, w.finalNorm, 1e-12, 'final');
    });
  });

  it('LLaMA: grouped-query attention, RMSNorm, gated MLP', async () => {
    const w = makeLayoutWeights('hf-llama', { d: 32, heads: 4, kvHeads: 2, layers: 2, seed: 5 });
    const m = writeModel(join(root, 'llama'), 'hf-llama', w);
    await withSpec(m.path, {}, async (spec) => {
      textBasics(spec, w);
      assert.equal(spec.kvHeads, 2);
      assert.equal(spec.headDim, 8);
      assert.equal(spec.activation, 'silu');
      const b = spec.blocks[1];
      const c = w.layer(1);
      assert.deepEqual(b.k.weight.shape, [16, 32]);
      await expectRef(b.q.weight, c.q.w, 'q');
      await expectRef(b.k.weight, c.k.w, 'k');
      await expectRef(b.v.weight, c.v.w, 'v');
      assert.equal(b.q.bias, undefined);
      assert.equal(b.norm1.kind, 'rmsnorm');
      assert.equal(b.norm1.bias, undefined);
      await expectRef(b.norm1.weight, c.norm1.w, 'input_layernorm');
      assert.equal(b.norm1.eps, 1e-5);
      assert.equal(b.mlp.kind, 'swiglu');
      if (b.mlp.kind === 'swiglu') {
        await expectRef(b.mlp.w12.weight, c.fc1.w.subarray(0, 48 * 32), 'gate_proj');
        await expectRef(b.mlp.up?.weight, c.fc1.w.subarray(48 * 32), 'up_proj');
        await expectRef(b.mlp.w3.weight, c.fc2.w, 'down_proj');
      }
      assert.equal(spec.finalNorm?.kind, 'rmsnorm');
    });
  });

  it('Qwen2: LLaMA layout with q/k/v biases', async () => {
    const w = makeLayoutWeights('hf-llama', { d: 32, heads: 4, kvHeads: 1, layers: 1, qkvBias: 'all', seed: 6 });
    const m = writeModel(join(root, 'qwen2'), 'hf-llama', w);
    await withSpec(m.path, {}, async (spec) => {
      assert.equal(spec.family, 'text-llama');
      assert.equal(spec.kvHeads, 1);
      await expectRef(spec.blocks[0].k.bias, w.layer(0).k.b, 'k bias');
      const k = await loadWeight(spec.blocks[0].k.weight);
      assert.equal(k.length, 8 * 32);
    });
  });
});
