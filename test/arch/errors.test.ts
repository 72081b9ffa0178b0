import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { join } from 'node:path';
import { UserError } from '../../src/errors.js';
import { MemorySource } from '../../src/checkpoint/memory.js';
import { buildSpec, supportedFamilies, supportedModelTypes } from '../../src/arch/registry.js';
import { makeCanonicalWeights, makeLayoutWeights, writeModel, type CanonicalOptions, type Layout, type WriteOptions } from '../fixtures/models.js';
import { removeDir, tempDir, withSpec } from './helpers.js';

const root = tempDir('errors');
after(() => removeDir(root));
let n = 0;

const TINY: CanonicalOptions = { d: 32, heads: 4, layers: 2, seed: 5 };

function fixture(layout: Layout, wo: WriteOptions = {}, o: Partial<CanonicalOptions> = {}): string {
  return writeModel(join(root, `${layout}-${n++}`), layout, makeLayoutWeights(layout, { ...TINY, ...o }), wo).path;
}

/** Builds the spec and expects a one-line UserError matching every pattern. */
async function expectUserError(path: string, patterns: RegExp[], opts: { numHeads?: number; part?: string } = {}): Promise<string> {
  let msg = '';
  await assert.rejects(
    withSpec(path, opts, async () => undefined),
    (e: unknown) => {
      assert.ok(e instanceof UserError, `not a UserError: ${e}`);
      msg = e.message;
      assert.ok(!msg.includes('\n'), `one line: ${msg}`);
      for (const p of patterns) assert.match(msg, p);
      return true;
    },
  );
  return msg;
}

describe('unknown architectures', () => {
  it('an unknown model_type lists every supported model_type and family', async () => {
    const msg = await expectUserError(fixture('hf-vit', { configExtra: { model_type: 'swin' } }), [/model_type "swin", which is not supported/, /timm/, /SimMIM/, /I-JEPA/]);
    for (const t of ['vit', 'vit_mae', 'vit_msn', 'deit', 'ijepa', 'dinov2', 'dinov2_with_registers', 'beit', 'data2vec-vision', 'clip', 'clip_vision_model', 'siglip', 'siglip_vision_model'])
      assert.ok(msg.includes(t), `lists ${t}`);
  });

  it('supportedModelTypes / supportedFamilies cover every family', () => {
    assert.ok(supportedModelTypes().includes('dinov2_with_registers'));
    assert.equal(new Set(supportedModelTypes()).size, supportedModelTypes().length);
    assert.ok(supportedFamilies().some((l) => l.startsWith('timm')));
    assert.ok(supportedFamilies().some((l) => l.startsWith('SimMIM')));
  });

  it('a timm architecture of another kind (resnet) is named', async () => {
    await expectUserError(fixture('timm-vit', { configExtra: { architecture: 'resnet50' } }), [/timm architecture "resnet50" is not supported/]);
  });

  it('no config and unknown tensor names suggests a config.json', () => {
    const source = new MemorySource('/models/mystery.bin', { 'foo.weight': { shape: [2, 2], data: [1, 2, 3, 4] } });
    assert.throws(
      () => buildSpec({ config: null, source, modelId: 'x' }),
      (e: unknown) => e instanceof UserError && /mystery\.bin/.test(e.message) && /config\.json/.test(e.message) && /--num-heads/.test(e.message),
    );
  });

  it('a config without model_type or architecture', () => {
    const source = new MemorySource('/m/model.safetensors', {});
    assert.throws(() => buildSpec({ config: { hidden_size: 8 }, source, modelId: 'x' }), /no model_type or architecture/);
  });
});

describe('missing tensors name the tensor and the file', () => {
  const cases: Array<[Layout, string]> = [
    ['hf-vit', 'encoder.layer.1.attention.attention.key.weight'],
    ['hf-vit-classifier', 'vit.embeddings.position_embeddings'],
    ['hf-clip', 'vision_model.pre_layrnorm.weight'],
    ['hf-dinov2', 'encoder.layer.0.norm2.weight'],
    ['timm-vit', 'blocks.1.attn.qkv.weight'],
    ['hf-beit', 'beit.encoder.layer.1.attention.output.dense.weight'],
  ];
  for (const [layout, name] of cases) {
    it(`${layout}: ${name}`, async () => {
      const path = fixture(layout, { omit: (t) => t === name });
      await expectUserError(path, [new RegExp(`tensor ${name.replace(/\./g, '\\.')} is missing`), new RegExp(`${root}`)]);
    });
  }

  it('the config asks for register tokens the weights lack', async () => {
    await expectUserError(fixture('hf-dinov2-registers', { omit: (t) => t === 'embeddings.register_tokens' }), [/embeddings\.register_tokens is missing/, /register tokens/]);
  });
});

describe('config and tensors must agree', () => {
  it('hidden_size', async () => {
    await expectUserError(fixture('hf-vit', { configExtra: { hidden_size: 64 } }), [/hidden_size = 64/, /implies 32/, /config\.json does not belong/]);
  });

  it('num_hidden_layers', async () => {
    await expectUserError(fixture('hf-dinov2', { configExtra: { num_hidden_layers: 5 } }), [/num_hidden_layers = 5/, /implies 2/]);
  });

  it('patch_size', async () => {
    await expectUserError(fixture('hf-clip-vision', { configExtra: { patch_size: 8 } }), [/patch_size = 8/, /implies 4/]);
  });

  it('heads that do not divide the width', async () => {
    await expectUserError(fixture('hf-vit', { configExtra: { num_attention_heads: 5 } }), [/width 32 is not divisible by 5 heads/]);
  });

  it('heads that disagree with the relative position tables', async () => {
    await expectUserError(fixture('hf-beit', { configExtra: { num_attention_heads: 8 } }), [/relative_position_bias_table has shape \[\d+, 4\]/, /8 heads/]);
  });

  it('a position embedding of the wrong length', async () => {
    // image_size 12 with patch 4 says 9 patches; the table has 16 (+1) rows: a square grid still fits.
    await withSpec(fixture('hf-vit', { configExtra: { image_size: 12 } }), {}, async (spec) => assert.deepEqual(spec.posEmbed?.grid, [4, 4]));
  });

  it('vision_config heads for CLIP', async () => {
    await expectUserError(fixture('hf-clip', { configExtra: { vision_config: { hidden_size: 32, num_attention_heads: 3, num_hidden_layers: 2, patch_size: 4, image_size: 16, intermediate_size: 128 }, vision_config_dict: undefined } }), [
      /not divisible by 3 heads/,
    ]);
  });
});

describe('head counts', () => {
  it('--num-heads overrides the config and says so', async () => {
    await withSpec(fixture('hf-vit'), { numHeads: 8 }, async (spec) => {
      assert.equal(spec.heads, 8);
      assert.equal(spec.headDim, 4);
      assert.ok(spec.notes?.some((n) => /--num-heads.*config says 4/.test(n)));
    });
  });

  it('a timm name without a size and no model_args needs --num-heads', async () => {
    const path = fixture('timm-vit', { timmArchitecture: 'vit_custom_patch4_16.test', timmModelArgs: false });
    await expectUserError(path, [/vit_custom_patch4_16/, /--num-heads/]);
    await withSpec(path, { numHeads: 4 }, async (spec) => assert.equal(spec.heads, 4));
  });

  it('a timm size name that contradicts the weights', async () => {
    await expectUserError(fixture('timm-vit', { timmArchitecture: 'vit_base_patch4_16.augreg_in21k', timmModelArgs: false }), [/base model \(768 wide\)/, /32 wide/, /--num-heads/]);
  });

  it('timm heads from the size in the name (tiny: 3)', async () => {
    const path = writeModel(join(root, `tiny-${n++}`), 'timm-vit', makeCanonicalWeights({ d: 192, heads: 3, layers: 1, classes: 2 }), {}).path;
    await withSpec(path, {}, async (spec) => {
      assert.equal(spec.heads, 3);
      assert.equal(spec.headDim, 64);
    });
  });

  it('timm quick-gelu CLIP towers: eps 1e-5 and quick_gelu from the name', async () => {
    const path = fixture('timm-vit', { timmArchitecture: 'vit_base_patch4_clip_quickgelu_16.openai' }, { preNorm: true, patchBias: false });
    await withSpec(path, {}, async (spec) => {
      assert.equal(spec.activation, 'quick_gelu');
      assert.equal(spec.blocks[0].norm1.eps, 1e-5);
      assert.ok(spec.preNorm);
      assert.equal(spec.patchEmbed?.bias, undefined);
    });
  });

  it('SimMIM without relative position tables: 12 heads for width 768 (noted)', () => {
    const d = 768;
    const t = (shape: number[]) => ({ shape, data: new Float32Array(shape.reduce((a, x) => a * x, 1)) });
    const source = new MemorySource('/m/simmim.pth', {
      'encoder.cls_token': t([1, 1, d]),
      'encoder.patch_embed.proj.weight': t([d, 3, 16, 16]),
      'encoder.pos_embed': t([1, 197, d]),
      'encoder.blocks.0.norm1.weight': t([d]),
      'encoder.blocks.0.attn.qkv.weight': t([3 * d, d]),
      'encoder.blocks.0.attn.q_bias': t([d]),
      'encoder.blocks.0.attn.v_bias': t([d]),
      'encoder.blocks.0.attn.proj.weight': t([d, d]),
      'encoder.blocks.0.norm2.weight': t([d]),
      'encoder.blocks.0.mlp.fc1.weight': t([4 * d, d]),
      'encoder.blocks.0.mlp.fc2.weight': t([d, 4 * d]),
      'encoder.norm.weight': t([d]),
    });
    const spec = buildSpec({ config: null, source, modelId: 'simmim' });
    assert.equal(spec.family, 'simmim');
    assert.equal(spec.heads, 12);
    assert.deepEqual(spec.imageSize, [224, 224]);
    assert.ok(spec.notes?.some((n) => /heads = 12 assumed.*ViT-B/.test(n)));
    assert.equal(buildSpec({ config: null, source, modelId: 'simmim', numHeads: 6 }).heads, 6);
  });

  it('an I-JEPA part that does not exist', async () => {
    const enc = makeLayoutWeights('ijepa-pth-tar', { d: 32, heads: 4, layers: 1 });
    const pred = makeCanonicalWeights({ d: 16, heads: 4, layers: 1, cls: false, inputWidth: 32 });
    const path = writeModel(join(root, `ijepa-${n++}`), 'ijepa-pth-tar', enc, { predictor: pred }).path;
    await assert.rejects(withSpec(path, { part: 'decoder' }, async () => undefined), (e: unknown) => e instanceof UserError && /decoder/.test(e.message));
    // Width 32 is no standard size: the encoder needs --num-heads.
    await expectUserError(path, [/number of attention heads is unknown/, /--num-heads/]);
  });
});
