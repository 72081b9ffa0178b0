import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { join } from 'node:path';
import type { VitSpec } from '../../src/arch/spec.js';
import { makeCanonicalWeights, makeLayoutWeights, writeModel, type CanonicalOptions, type CanonicalWeights, type Layout, type WriteOptions } from '../fixtures/models.js';
import { expectLinear, expectNorm, expectRef, expectSpecMatches, removeDir, tempDir, withSpec, type Expect } from './helpers.js';
import { logitsWidth } from '../../src/arch/runnable.js';

const root = tempDir('layouts');
after(() => removeDir(root));

const TINY: CanonicalOptions = { d: 32, heads: 4, layers: 3, seed: 7 };

interface Case {
  name: string;
  layout: Layout;
  family: string;
  expect: Expect;
  pooling: VitSpec['pooling'];
  activation: VitSpec['activation'];
  opts?: Partial<CanonicalOptions>;
  write?: WriteOptions;
  numHeads?: number;
  part?: string;
  /** Extra checks (heads, preprocessing, notes). */
  check?: (spec: VitSpec, w: CanonicalWeights) => Promise<void> | void;
}

const allNames = (spec: VitSpec): string[] => {
  const out: string[] = [];
  const walk = (x: unknown) => {
    if (!x || typeof x !== 'object') return;
    if ('source' in x && 'name' in x && typeof (x as { name: unknown }).name === 'string') out.push((x as { name: string }).name);
    else for (const v of Object.values(x)) walk(v);
  };
  walk({ ...spec, preprocess: undefined });
  return out;
};

const CASES: Case[] = [
  {
    name: 'HF ViTModel (bare, pooler ignored)',
    layout: 'hf-vit',
    family: 'hf-vit',
    expect: { eps: 1e-12 },
    pooling: 'cls',
    activation: 'gelu',
    check: (spec) => {
      assert.equal(spec.head, undefined);
      assert.ok(!allNames(spec).some((n) => n.startsWith('pooler')), 'pooler ignored');
      assert.deepEqual(spec.preprocess, { resizeMode: 'exact', resize: 16, crop: [16, 16], resample: 'bilinear', rescale: 0.00392156862745098, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] });
      assert.deepEqual(spec.imageSize, [16, 16]);
    },
  },
  {
    name: 'HF ViTForImageClassification (vit. prefix + classifier, old feature-extractor config)',
    layout: 'hf-vit-classifier',
    family: 'hf-vit',
    expect: { eps: 1e-12 },
    pooling: 'cls',
    activation: 'gelu',
    check: async (spec, w) => {
      await expectLinear(spec.head, w.head, 'head');
      assert.ok(spec.blocks[0].q.weight.name.startsWith('vit.encoder.layer.0.'));
      assert.deepEqual(spec.preprocess, { resizeMode: 'exact', resize: 16, crop: [16, 16], resample: 'bilinear', rescale: 1 / 255, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
    },
  },
  {
    name: 'HF DeiT distilled (CLS then DIST, two heads)',
    layout: 'hf-deit',
    family: 'hf-deit',
    expect: { eps: 1e-12 },
    pooling: 'cls',
    activation: 'gelu',
    check: async (spec, w) => {
      assert.deepEqual(spec.tokenLayout, ['cls', 'dist']);
      assert.equal(spec.posEmbed?.special, 2);
      await expectLinear(spec.head, w.head, 'head');
      await expectLinear(spec.distHead, w.distHead, 'distHead');
      assert.equal(spec.preprocess?.resizeMode, 'exact');
      assert.equal(spec.preprocess?.resize, 18);
      assert.deepEqual(spec.preprocess?.crop, [16, 16]);
      assert.equal(spec.preprocess?.resample, 'bicubic');
    },
  },
  {
    name: 'HF CLIPModel (vision tower; text tower ignored; defaults for omitted config keys)',
    layout: 'hf-clip',
    family: 'hf-clip',
    expect: { eps: 1e-5 },
    pooling: 'cls',
    activation: 'quick_gelu',
    check: async (spec, w) => {
      await expectLinear(spec.head, w.head, 'visual_projection', { bias: false });
      assert.ok(!allNames(spec).some((n) => n.startsWith('text_') || n === 'logit_scale'), 'no text tensors');
      assert.ok(spec.preNorm);
      assert.equal(spec.preNorm.weight?.name, 'vision_model.pre_layrnorm.weight');
      assert.deepEqual(spec.preprocess, {
        resizeMode: 'shortest',
        resize: 16,
        crop: [16, 16],
        resample: 'bicubic',
        rescale: 1 / 255,
        mean: [0.48145466, 0.4578275, 0.40821073],
        std: [0.26862954, 0.26130258, 0.27577711],
      });
    },
  },
  {
    name: 'HF CLIPVisionModelWithProjection',
    layout: 'hf-clip-vision',
    family: 'hf-clip-vision',
    expect: { eps: 1e-5 },
    pooling: 'cls',
    activation: 'quick_gelu',
    check: async (spec, w) => {
      await expectLinear(spec.head, w.head, 'visual_projection', { bias: false });
      assert.equal(spec.preprocess?.resizeMode, 'shortest');
    },
  },
  {
    name: 'HF DINOv2 (layer-scale, norm1/norm2)',
    layout: 'hf-dinov2',
    family: 'hf-dinov2',
    expect: { eps: 1e-6 },
    pooling: 'cls',
    activation: 'gelu',
    check: (spec) => {
      assert.ok(spec.blocks[0].ls1 && spec.blocks[0].ls2);
      assert.deepEqual(spec.preprocess?.crop, [16, 16]);
      assert.equal(spec.preprocess?.resizeMode, 'shortest');
      assert.equal(spec.preprocess?.resize, 18);
    },
  },
  {
    name: 'HF DINOv2 with SwiGLU MLP',
    layout: 'hf-dinov2',
    family: 'hf-dinov2',
    opts: { mlpKind: 'swiglu' },
    expect: { eps: 1e-6 },
    pooling: 'cls',
    activation: 'gelu',
    check: (spec, w) => {
      const m = spec.blocks[0].mlp;
      assert.equal(m.kind, 'swiglu');
      if (m.kind === 'swiglu') assert.deepEqual(m.w12.weight.shape, [2 * w.opts.mlp, 32]);
      assert.equal(w.opts.mlp, 88); // (int(128 * 2/3) + 7) // 8 * 8
    },
  },
  {
    name: 'HF DINOv2 with registers (CLS, registers, patches; no position rows for registers)',
    layout: 'hf-dinov2-registers',
    family: 'hf-dinov2-registers',
    expect: { eps: 1e-6 },
    pooling: 'cls',
    activation: 'gelu',
    check: (spec) => {
      assert.deepEqual(spec.tokenLayout, ['cls', 'reg', 'reg', 'reg', 'reg']);
      assert.equal(spec.posEmbed?.special, 1);
      assert.deepEqual(spec.registerTokens?.shape, [4, 32]);
    },
  },
  {
    name: 'HF Dinov2ForImageClassification (dinov2. prefix, classifier [classes, 2d] on [CLS, mean patch])',
    layout: 'hf-dinov2-classifier',
    family: 'hf-dinov2',
    expect: { eps: 1e-6 },
    pooling: 'cls+mean',
    activation: 'gelu',
    check: async (spec, w) => {
      await expectLinear(spec.head, w.head, 'classifier');
      assert.deepEqual(spec.head?.weight.shape, [5, 64]);
      assert.ok(spec.blocks[0].q.weight.name.startsWith('dinov2.encoder.layer.0.'));
      assert.equal(logitsWidth(spec), 5);
    },
  },
  {
    name: 'HF Dinov2WithRegistersForImageClassification (registers left out of the mean, noted)',
    layout: 'hf-dinov2-registers-classifier',
    family: 'hf-dinov2-registers',
    expect: { eps: 1e-6 },
    pooling: 'cls+mean',
    activation: 'gelu',
    check: async (spec, w) => {
      await expectLinear(spec.head, w.head, 'classifier');
      assert.deepEqual(spec.tokenLayout, ['cls', 'reg', 'reg', 'reg', 'reg']);
      assert.ok(spec.notes?.some((n) => /excludes the register tokens.*transformers >= 4\.52/.test(n)), JSON.stringify(spec.notes));
    },
  },
  {
    name: 'HF DINOv2 run at another resolution (position grid resized, noted)',
    layout: 'hf-dinov2',
    family: 'hf-dinov2',
    write: { preprocessCrop: 12 },
    expect: { eps: 1e-6 },
    pooling: 'cls',
    activation: 'gelu',
    check: (spec) => {
      assert.deepEqual(spec.imageSize, [12, 12]);
      assert.deepEqual(spec.posEmbed?.grid, [4, 4]);
      assert.ok(spec.notes?.some((n) => n.includes('resized')), JSON.stringify(spec.notes));
    },
  },
  {
    name: 'HF ViTMAEForPreTraining (decoder ignored)',
    layout: 'hf-vit-mae',
    family: 'hf-vit-mae',
    expect: { eps: 1e-12 },
    pooling: 'cls',
    activation: 'gelu',
    check: (spec) => {
      assert.ok(!allNames(spec).some((n) => n.startsWith('decoder')));
      assert.ok(spec.blocks[0].q.weight.name.startsWith('vit.'));
      assert.equal(spec.preprocess?.resample, 'bicubic');
    },
  },
  { name: 'HF ViTMSNModel', layout: 'hf-vit-msn', family: 'hf-vit-msn', expect: { eps: 1e-6 }, pooling: 'cls', activation: 'gelu' },
  {
    name: 'HF BEiT (no key bias, per-layer relative position bias, lambda layer-scales, mean pooling)',
    layout: 'hf-beit',
    family: 'hf-beit',
    expect: { eps: 1e-12 },
    pooling: 'mean',
    activation: 'gelu',
    check: async (spec, w) => {
      for (const b of spec.blocks) assert.equal(b.k.bias, undefined);
      assert.equal(spec.posEmbed, undefined);
      assert.equal(spec.finalNorm, undefined);
      await expectLinear(spec.head, w.head, 'head');
      assert.ok(spec.fcNorm?.weight?.name.endsWith('pooler.layernorm.weight'));
    },
  },
  {
    name: 'HF data2vec-vision (shared relative position bias, CLS pooling)',
    layout: 'hf-data2vec-vision',
    family: 'hf-data2vec-vision',
    expect: { eps: 1e-12 },
    pooling: 'cls',
    activation: 'gelu',
    check: (spec) => {
      assert.equal(spec.blocks[0].relPosBias?.table.name, 'data2vec_vision.encoder.relative_position_bias.relative_position_bias_table');
      assert.equal(spec.blocks[1].relPosBias?.table.name, spec.blocks[0].relPosBias?.table.name);
      for (const b of spec.blocks) assert.equal(b.k.bias, undefined);
    },
  },
  {
    name: 'HF SiglipVisionModel (no CLS, patch bias, attention-pooling head split from in_proj)',
    layout: 'hf-siglip-vision',
    family: 'hf-siglip-vision',
    expect: { eps: 1e-6 },
    pooling: 'attention',
    activation: 'gelu_tanh',
    check: async (spec, w) => {
      assert.equal(spec.posEmbed?.special, 0);
      assert.equal(spec.preprocess?.resample, 'bicubic');
      assert.equal(spec.head, undefined);
      await expectAttnPool(spec, w);
      assert.equal(logitsWidth(spec), 32, 'the pooled embedding is the output');
    },
  },
  {
    name: 'HF SiglipVisionModel with vision_use_head false (head tensors ignored, no embedding)',
    layout: 'hf-siglip-vision',
    family: 'hf-siglip-vision',
    write: { configExtra: { vision_use_head: false } },
    expect: { eps: 1e-6 },
    pooling: 'none',
    activation: 'gelu_tanh',
    check: (spec) => {
      assert.ok(!allNames(spec).some((n) => n.includes('.head.')));
      assert.equal(logitsWidth(spec), null);
    },
  },
  {
    name: 'HF SiglipModel config (vision_config nested; defaults fill the rest)',
    layout: 'hf-siglip-vision',
    family: 'hf-siglip',
    write: { configExtra: { model_type: 'siglip', vision_config: { hidden_size: 32, num_attention_heads: 4, num_hidden_layers: 3, patch_size: 4, image_size: 16, intermediate_size: 128 } } },
    expect: { eps: 1e-6 },
    pooling: 'attention',
    activation: 'gelu_tanh',
    check: (spec, w) => expectAttnPool(spec, w),
  },
  {
    name: 'HF IJepaModel (no CLS; position rows for patches only)',
    layout: 'hf-ijepa',
    family: 'hf-ijepa',
    expect: { eps: 1e-6 },
    pooling: 'mean',
    activation: 'gelu',
    check: (spec) => assert.equal(spec.posEmbed?.special, 0),
  },
  {
    name: 'timm VisionTransformer (fused qkv split into q, k, v; heads from model_args)',
    layout: 'timm-vit',
    family: 'timm-vit',
    expect: { eps: 1e-6 },
    pooling: 'cls',
    activation: 'gelu',
    check: async (spec, w) => {
      const q = spec.blocks[1].q.weight;
      assert.equal(q.name, 'blocks.1.attn.qkv.weight');
      assert.deepEqual(q.rows, [0, 32]);
      assert.deepEqual(spec.blocks[1].k.weight.rows, [32, 64]);
      assert.deepEqual(spec.blocks[1].v.bias?.rows, [64, 96]);
      await expectLinear(spec.head, w.head, 'head');
      assert.deepEqual(spec.preprocess, { resizeMode: 'shortest', resize: 17, crop: [16, 16], resample: 'bicubic', rescale: 1 / 255, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
    },
  },
  {
    name: 'timm VisionTransformer with q_bias/v_bias (no k bias)',
    layout: 'timm-vit-qvbias',
    family: 'timm-vit',
    expect: { eps: 1e-6 },
    pooling: 'cls',
    activation: 'gelu',
    check: (spec) => {
      for (const b of spec.blocks) {
        assert.equal(b.k.bias, undefined);
        assert.ok(b.q.bias?.name.endsWith('attn.q_bias'));
      }
    },
  },
  {
    name: 'timm VisionTransformer with registers, layer-scale, pre-norm, avg pooling (no_embed_class)',
    layout: 'timm-vit',
    family: 'timm-vit',
    opts: { reg: 4, posSpecial: 0, layerScale: true, preNorm: true, finalNorm: false, fcNorm: true },
    expect: { eps: 1e-6 },
    pooling: 'mean',
    activation: 'gelu',
    check: (spec) => {
      assert.deepEqual(spec.tokenLayout, ['cls', 'reg', 'reg', 'reg', 'reg']);
      assert.equal(spec.posEmbed?.special, 0);
      assert.ok(spec.blocks[0].ls1?.name.endsWith('ls1.gamma'));
    },
  },
  {
    name: 'timm DeiT distilled (dist_token, head_dist)',
    layout: 'timm-deit-distilled',
    family: 'timm-vit',
    expect: { eps: 1e-6 },
    pooling: 'cls',
    activation: 'gelu',
    check: async (spec, w) => {
      assert.deepEqual(spec.tokenLayout, ['cls', 'dist']);
      assert.equal(spec.posEmbed?.special, 2);
      await expectLinear(spec.distHead, w.distHead, 'head_dist');
    },
  },
  {
    name: 'SimMIM pre-trained release (.pth, encoder. prefix, shared rel-pos; heads from the table)',
    layout: 'simmim-pth',
    family: 'simmim',
    expect: { eps: 1e-6 },
    pooling: 'cls',
    activation: 'gelu',
    check: (spec) => {
      for (const b of spec.blocks) {
        assert.equal(b.k.bias, undefined);
        assert.ok(b.ls1?.name.endsWith('gamma_1'));
      }
      assert.equal(spec.head, undefined);
      assert.ok(!allNames(spec).some((n) => n.startsWith('decoder') || n.includes('relative_position_index')));
      assert.ok(spec.notes?.some((n) => n.includes('pre-trained')));
    },
  },
  {
    name: 'SimMIM fine-tuned release (per-block rel-pos, fc_norm mean pooling, head)',
    layout: 'simmim-ft-pth',
    family: 'simmim',
    expect: { eps: 1e-6 },
    pooling: 'mean',
    activation: 'gelu',
    check: async (spec, w) => {
      await expectLinear(spec.head, w.head, 'head');
      assert.equal(spec.finalNorm, undefined);
    },
  },
];

/** The attention-pooling head equals the canonical one, in_proj rows split [q; k; v]. */
async function expectAttnPool(spec: VitSpec, w: CanonicalWeights): Promise<void> {
  const ap = spec.attnPool;
  const c = w.attnPool!;
  const d = w.opts.d;
  assert.ok(ap, 'attnPool');
  assert.equal(ap.heads, w.opts.heads);
  await expectRef(ap.probe, c.probe, 'probe');
  for (const [i, k] of (['q', 'k', 'v'] as const).entries()) {
    assert.deepEqual(ap[k].weight.shape, [d, d]);
    await expectLinear(ap[k], { w: c.inW.subarray(i * d * d, (i + 1) * d * d), b: c.inB.subarray(i * d, (i + 1) * d) }, `attnPool.${k}`);
  }
  await expectLinear(ap.o, c.o, 'attnPool.o');
  await expectNorm(ap.norm, c.norm, 1e-6, 'attnPool.norm');
  await expectLinear(ap.fc1, c.fc1, 'attnPool.fc1');
  await expectLinear(ap.fc2, c.fc2, 'attnPool.fc2');
}

describe('family adapters read every layout exactly', () => {
  for (const c of CASES) {
    it(c.name, async () => {
      const w = makeLayoutWeights(c.layout, { ...TINY, ...(c.opts ?? {}) });
      const dir = join(root, c.name.replace(/[^a-z0-9]+/gi, '_'));
      const m = writeModel(dir, c.layout, w, c.write);
      await withSpec(m.path, { ...(c.numHeads ? { numHeads: c.numHeads } : {}), ...(c.part ? { part: c.part } : {}), modelId: 'test/model' }, async (spec) => {
        assert.equal(spec.family, c.family);
        assert.equal(spec.modelId, 'test/model');
        assert.equal(spec.pooling, c.pooling);
        assert.equal(spec.activation, c.activation);
        assert.ok(spec.preprocess, 'preprocess filled');
        await expectSpecMatches(spec, w, c.expect);
        await c.check?.(spec, w);
        // The spec is plain data plus lazy refs: no framework object leaks.
        assert.ok(allNames(spec).length > 10);
      });
    });
  }
});

describe('I-JEPA release (.pth.tar with encoder, predictor, target_encoder)', () => {
  // Width 192 (ViT-Ti): the encoder's 3 heads follow from the width; the predictor (width 24)
  // inherits them, d_h = 8.
  const enc = makeLayoutWeights('ijepa-pth-tar', { d: 192, heads: 3, layers: 2, seed: 3 });
  const target = makeLayoutWeights('ijepa-pth-tar', { d: 192, heads: 3, layers: 2, seed: 4 });
  const pred = makeCanonicalWeights({ d: 24, heads: 3, layers: 2, cls: false, inputWidth: 192, seed: 5 });
  const m = writeModel(join(root, 'ijepa'), 'ijepa-pth-tar', enc, { predictor: pred, targetEncoder: target });

  it('reads the encoder by default (module. stripped, no CLS, mean pooling)', async () => {
    await withSpec(m.path, {}, async (spec) => {
      assert.equal(spec.family, 'ijepa-release');
      assert.equal(spec.pooling, 'mean');
      assert.ok(spec.notes?.some((n) => n.includes('heads = 3')), JSON.stringify(spec.notes));
      await expectSpecMatches(spec, enc, { eps: 1e-6 });
    });
  });

  it('reads the target encoder with part target_encoder', async () => {
    await withSpec(m.path, { part: 'target_encoder' }, async (spec) => {
      await expectSpecMatches(spec, target, { eps: 1e-6 });
      assert.ok(spec.notes?.some((n) => n.includes('target encoder')), JSON.stringify(spec.notes));
    });
  });

  it("reads the predictor as its own model with the encoder's head count", async () => {
    await withSpec(m.path, { part: 'predictor' }, async (spec) => {
      assert.equal(spec.heads, 3);
      assert.equal(spec.headDim, 8);
      assert.equal(spec.width, 24);
      assert.equal(spec.pooling, 'none');
      assert.deepEqual(spec.tokenLayout, []);
      await expectSpecMatches(spec, pred, { eps: 1e-6 });
      await expectRef(spec.posEmbed?.weight, pred.pos, 'predictor_pos_embed');
    });
  });

  it('--num-heads overrides the width rule (noted)', async () => {
    await withSpec(m.path, { part: 'predictor', numHeads: 6 }, async (spec) => {
      assert.equal(spec.heads, 6);
      assert.equal(spec.headDim, 4);
    });
  });
});
