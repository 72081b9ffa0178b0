/**
 * Declarative layouts (src/arch/layout/): the presets and a custom layout map a plain PyTorch
 * state dict onto exactly the canonical weights (post-norm blocks in VitSpec's post-norm
 * convention), the head split comes from the shapes, and every mistake in a layout file is one
 * line naming the file and the key.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../../src/errors.js';
import { MemorySource } from '../../src/checkpoint/memory.js';
import { buildSpec } from '../../src/arch/registry.js';
import { forwardUnavailable } from '../../src/arch/runnable.js';
import { parseLayout } from '../../src/arch/layout/format.js';
import { PRESETS } from '../../src/arch/layout/presets.js';
import type { VitSpec } from '../../src/arch/spec.js';
import { CUSTOM_LAYOUT, makeLayoutWeights, writeModel, type CanonicalOptions, type CanonicalWeights, type GenericLayout, type WriteOptions } from '../fixtures/models.js';
import { expectLinear, expectNorm, expectSpecMatches, openFixture, removeDir, tempDir, withSpec } from './helpers.js';

const root = tempDir('layout');
after(() => removeDir(root));
let n = 0;
const TINY: CanonicalOptions = { d: 32, heads: 4, layers: 3, seed: 13 };

function fixture(layout: GenericLayout, wo: WriteOptions = {}, o: Partial<CanonicalOptions> = {}) {
  const w = makeLayoutWeights(layout, { ...TINY, ...o });
  return { w, m: writeModel(join(root, `${layout}-${n++}`), layout, w, wo) };
}

/** Opens the fixture, builds the spec with `opts` (--num-heads, --layout), runs `fn`, closes. */
async function withLayoutSpec(path: string, opts: { numHeads?: number; layout?: string }, fn: (spec: VitSpec) => Promise<void>): Promise<void> {
  const o = await openFixture(path);
  try {
    await fn(buildSpec({ config: o.config, source: o.source, modelId: 'm', ...opts }));
  } finally {
    await o.close();
  }
}

/** Blocks equal the canonical layers; post-norm: norm1 = the norm that produced the input. */
async function expectBlocks(spec: VitSpec, w: CanonicalWeights, placement: 'pre' | 'post', eps: number): Promise<void> {
  const o = w.opts;
  assert.equal(spec.width, o.d);
  assert.equal(spec.heads, o.heads);
  assert.equal(spec.headDim, o.d / o.heads);
  assert.equal(spec.layers, o.layers);
  for (let i = 0; i < o.layers; i++) {
    const b = spec.blocks[i];
    const c = w.layer(i);
    for (const k of ['q', 'k', 'v', 'o'] as const) await expectLinear(b[k], c[k], `layer ${i} ${k}`);
    assert.equal(b.mlp.kind, 'mlp');
    if (b.mlp.kind === 'mlp') {
      await expectLinear(b.mlp.fc1, c.fc1, `layer ${i} fc1`);
      await expectLinear(b.mlp.fc2, c.fc2, `layer ${i} fc2`);
    }
    if (placement === 'pre') {
      await expectNorm(b.norm1, c.norm1, eps, `layer ${i} norm1`);
      await expectNorm(b.norm2, c.norm2, eps, `layer ${i} norm2`);
    } else {
      // torch norm1_i (after attention) is the spec's norm2; the previous block's norm2 feeds block i.
      await expectNorm(b.norm2, c.norm1, eps, `layer ${i} attention-output norm`);
      if (i === 0) assert.equal(b.norm1.kind, 'identity');
      else await expectNorm(b.norm1, w.layer(i - 1).norm2, eps, `layer ${i} input norm`);
    }
  }
  await expectNorm(spec.finalNorm, w.finalNorm, eps, 'final norm');
}

describe('layout presets read plain state dicts exactly', () => {
  it('torch.nn.TransformerEncoder (post-norm, detected): in_proj split q, k, v; post-norm convention', async () => {
    const { w, m } = fixture('torch-transformer-encoder');
    await withLayoutSpec(m.path, { numHeads: 4 }, async (spec) => {
      assert.equal(spec.family, 'layout:torch-transformer-encoder');
      assert.equal(spec.postNorm, true);
      assert.equal(spec.activation, 'relu');
      assert.deepEqual(spec.blocks[1].k.weight.rows, [32, 64]);
      assert.equal(spec.blocks[1].k.weight.name, 'layers.1.self_attn.in_proj_weight');
      assert.deepEqual(spec.blocks[1].v.bias?.rows, [64, 96]);
      await expectBlocks(spec, w, 'post', 1e-5);
      assert.ok(spec.notes?.some((x) => x.includes('torch-transformer-encoder-prenorm')), JSON.stringify(spec.notes));
      assert.match(forwardUnavailable(spec)!, /TransformerEncoder has no patch embedding/);
    });
  });

  it('torch.nn.TransformerEncoder pre-norm, named, under transformer.', async () => {
    const { w, m } = fixture('torch-transformer-encoder-prenorm', { prefix: 'transformer.' });
    await withLayoutSpec(m.path, { numHeads: 4, layout: 'torch-transformer-encoder-prenorm' }, async (spec) => {
      assert.equal(spec.family, 'layout:torch-transformer-encoder-prenorm');
      assert.equal(spec.postNorm, undefined);
      assert.ok(spec.blocks[0].q.weight.name.startsWith('transformer.layers.0.'));
      await expectBlocks(spec, w, 'pre', 1e-5);
    });
  });

  it('vit-pytorch (detected; no qkv bias; to_out.0, net.1/net.4; the patch embedding is not read)', async () => {
    const { w, m } = fixture('vit-pytorch');
    await withLayoutSpec(m.path, { numHeads: 4 }, async (spec) => {
      assert.equal(spec.family, 'layout:vit-pytorch');
      for (const b of spec.blocks) assert.equal(b.q.bias, undefined);
      await expectBlocks(spec, w, 'pre', 1e-5);
      assert.match(forwardUnavailable(spec)!, /vit-pytorch’s patch embedding/);
    });
  });

  it('a custom layout with an embedding section is a whole runnable ViT', async () => {
    const { w, m } = fixture('custom-layout');
    await withLayoutSpec(m.path, { layout: m.layoutFile! }, async (spec) => {
      assert.equal(spec.family, 'layout:my-vit');
      await expectSpecMatches(spec, w, { eps: 1e-6 });
      await expectLinear(spec.head, w.head, 'classifier');
      assert.equal(spec.pooling, 'cls');
      assert.deepEqual(spec.imageSize, [16, 16]);
      assert.equal(forwardUnavailable(spec), null);
    });
  });

  it('--layout wins over detection and over config.json', async () => {
    const { w, m } = fixture('torch-transformer-encoder');
    // The same tensors named as pre-norm: the norms map one to one.
    await withLayoutSpec(m.path, { numHeads: 4, layout: 'torch-transformer-encoder-prenorm' }, async (spec) => {
      await expectBlocks(spec, w, 'pre', 1e-5);
    });
    const c = fixture('custom-layout');
    writeFileSync(join(c.m.dir, 'config.json'), JSON.stringify({ model_type: 'vit', hidden_size: 32 }));
    await withLayoutSpec(c.m.path, { layout: c.m.layoutFile! }, async (spec) => assert.equal(spec.family, 'layout:my-vit'));
    await assert.rejects(withLayoutSpec(c.m.path, {}, async () => undefined), (e: Error) => e instanceof UserError && /embeddings\.patch_embeddings\.projection\.weight is missing/.test(e.message));
  });

  it('presets are plain data in the layout-file format', () => {
    for (const p of PRESETS) assert.deepEqual(parseLayout(JSON.parse(JSON.stringify(p.def)), 'roundtrip'), p.def, p.def.name);
  });
});

describe('head split from the shapes', () => {
  const mk = (tensors: Record<string, number[]>) => {
    const src = new MemorySource('/m/model.pt');
    for (const [name, shape] of Object.entries(tensors)) src.set(name, shape, new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.5));
    return src;
  };
  const block = (i: number, d: number, q: number, k: number, fused: boolean) => ({
    ...(fused ? { [`b.${i}.qkv.weight`]: [q + 2 * k, d] } : { [`b.${i}.q.weight`]: [q, d], [`b.${i}.k.weight`]: [k, d], [`b.${i}.v.weight`]: [k, d] }),
    [`b.${i}.o.weight`]: [d, q],
    [`b.${i}.n1.weight`]: [d],
    [`b.${i}.n2.weight`]: [d],
    [`b.${i}.fc1.weight`]: [3 * d, d],
    [`b.${i}.fc2.weight`]: [d, 3 * d],
  });
  const layout = (fused: boolean, extra: Record<string, unknown>) => ({
    name: 'shapes',
    attention: fused ? { qkv: 'b.{i}.qkv.weight', out: 'b.{i}.o.weight' } : { q: 'b.{i}.q.weight', k: 'b.{i}.k.weight', v: 'b.{i}.v.weight', out: 'b.{i}.o.weight' },
    norms: { attention: 'b.{i}.n1.weight', mlp: 'b.{i}.n2.weight' },
    mlp: { fc1: 'b.{i}.fc1.weight', fc2: 'b.{i}.fc2.weight' },
    ...extra,
  });
  const build = (src: MemorySource, def: unknown, numHeads?: number) => {
    const file = join(root, `layout-${n++}.json`);
    // Through the file path, as --layout FILE.json does.
    return import('node:fs').then(({ writeFileSync }) => {
      writeFileSync(file, JSON.stringify(def));
      return buildSpec({ config: null, source: src, modelId: 'm', layout: file, ...(numHeads ? { numHeads } : {}) });
    });
  };

  it('fused in-projection with headDim (heads x headDim != width, as vit-pytorch with dim_head 64)', async () => {
    const src = mk({ ...block(0, 32, 4 * 64, 4 * 64, true), ...block(1, 32, 4 * 64, 4 * 64, true) });
    const spec = await build(src, layout(true, { headDim: 64 }));
    assert.deepEqual([spec.heads, spec.kvHeads, spec.headDim, spec.width, spec.layers], [4, 4, 64, 32, 2]);
    assert.deepEqual(spec.blocks[0].k.weight.rows, [256, 512]);
    assert.deepEqual(spec.blocks[0].o.weight.shape, [32, 256]);
  });

  it('separate projections with fewer key/value heads: kvHeads read from the key rows', async () => {
    const src = mk(block(0, 32, 32, 16, false));
    const spec = await build(src, layout(false, { heads: 4 }));
    assert.deepEqual([spec.heads, spec.kvHeads, spec.headDim], [4, 2, 8]);
  });

  it('fused with kvHeads in the layout (grouped-query), rows split q | k | v', async () => {
    const src = mk(block(0, 32, 32, 16, true));
    const spec = await build(src, layout(true, { heads: 4, kvHeads: 2, attention: { qkv: 'b.{i}.qkv.weight', split: ['q', 'k', 'v'], out: 'b.{i}.o.weight' } }));
    assert.deepEqual([spec.heads, spec.kvHeads, spec.headDim], [4, 2, 8]);
    assert.deepEqual(spec.blocks[0].v.weight.rows, [48, 64]);
  });

  it('the split order is honoured (k, v, q)', async () => {
    const src = mk(block(0, 32, 32, 32, true));
    const spec = await build(src, layout(true, { heads: 4, attention: { qkv: 'b.{i}.qkv.weight', split: ['k', 'v', 'q'], out: 'b.{i}.o.weight' } }));
    assert.deepEqual(spec.blocks[0].k.weight.rows, [0, 32]);
    assert.deepEqual(spec.blocks[0].q.weight.rows, [64, 96]);
  });

  it('two encoders in one state dict: the message lists both prefixes', async () => {
    const { m } = fixture('torch-transformer-encoder');
    const o = await openFixture(m.path);
    try {
      const names = o.source.names();
      const src = new MemorySource('/m/two.pt');
      for (const nm of names) {
        const data = await o.source.read(nm);
        const shape = o.source.info(nm)!.shape;
        src.set(`text.${nm}`, shape, data);
        src.set(`image.${nm}`, shape, data);
      }
      assert.throws(
        () => buildSpec({ config: null, source: src, modelId: 'm', numHeads: 4 }),
        (e: unknown) => e instanceof UserError && /matches 2 models, under "image\.", "text\."; write a layout file whose "prefix"/.test(e.message),
      );
    } finally {
      await o.close();
    }
  });

  it('a layout whose "layers" disagrees with the checkpoint', async () => {
    const src = mk({ ...block(0, 32, 32, 32, true), ...block(1, 32, 32, 32, true) });
    await assert.rejects(build(src, layout(true, { heads: 4, layers: 3 })), (e: Error) => e instanceof UserError && /says layers = 3 but the checkpoint has .*\(2 layers\)/.test(e.message));
  });

  it('a missing per-layer tensor names the tensor', async () => {
    const t = block(1, 32, 32, 32, true);
    delete (t as Record<string, number[]>)['b.1.fc2.weight'];
    const src = mk({ ...block(0, 32, 32, 32, true), ...t });
    await assert.rejects(build(src, layout(true, { heads: 4 })), (e: Error) => e instanceof UserError && /tensor b\.1\.fc2\.weight is missing/.test(e.message));
  });
});

describe('layout files: every mistake is one line naming the file and the key', () => {
  const good = { ...CUSTOM_LAYOUT, heads: 4 };
  const cases: Array<[string, unknown, RegExp]> = [
    ['not an object', [1, 2], /a layout is a JSON object/],
    ['unknown top-level key', { ...good, head_count: 4 }, /unknown layout key head_count/],
    ['unknown nested key', { ...good, norms: { ...good.norms, epsilon: 1e-6 } }, /unknown layout key norms\.epsilon/],
    ['per-layer name without {i}', { ...good, attention: { ...good.attention, q: 'body.attn.wq.weight' } }, /attention\.q = "body\.attn\.wq\.weight"; expected a per-layer tensor name template containing \{i\}/],
    ['global name with {i}', { ...good, norms: { ...good.norms, final: 'final_ln.{i}.weight' } }, /norms\.final = .*expected a tensor name without \{i\}/],
    ['fused and separate', { ...good, attention: { ...good.attention, qkv: 'x.{i}.qkv.weight' } }, /give either qkv \(fused\) or q, k, v, not both/],
    ['bad split', { ...good, attention: { qkv: 'x.{i}.qkv.weight', split: ['q', 'q', 'v'], out: 'x.{i}.o.weight' } }, /attention\.split = \["q","q","v"\]/],
    ['bad placement', { ...good, placement: 'middle' }, /placement = "middle"; expected "pre" or "post"/],
    ['bad heads', { ...good, heads: -2 }, /heads = -2; expected a whole number from 1 to 4096/],
    ['absurd layers', { ...good, layers: 1e9 }, /layers = 1000000000; expected a whole number from 1 to 1024/],
    ['bad eps', { ...good, norms: { ...good.norms, eps: 0 } }, /norms\.eps = 0/],
    ['bad activation', { ...good, activation: 'swish2' }, /activation = "swish2"/],
    ['bad prefix', { ...good, prefix: 'net' }, /prefix = "net"; expected a prefix ending in "\."/],
    ['bad std', { ...good, embedding: { ...good.embedding, std: [0.5, 0, 0.5] } }, /embedding\.std = \[0\.5,0,0\.5\]; expected three positive numbers/],
    ['bad pooling', { ...good, pooling: 'max' }, /pooling = "max"/],
    ['bias of the wrong type', { ...good, head: { weight: 'classifier.weight', bias: 3 } }, /head\.bias = 3/],
  ];
  for (const [what, value, want] of cases) {
    it(what, () => {
      assert.throws(
        () => parseLayout(value, '/x/layout.json'),
        (e: unknown) => e instanceof UserError && !e.message.includes('\n') && e.message.startsWith('/x/layout.json: ') && want.test(e.message),
      );
    });
  }
  it('the custom layout itself parses', () => {
    assert.equal(parseLayout(good, 'f').name, 'my-vit');
  });
});

describe('detection does not take over other families', () => {
  it('an HF ViT and a timm state dict keep their adapters', async () => {
    const hf = writeModel(join(root, `hfvit-${n++}`), 'hf-vit', makeLayoutWeights('hf-vit', TINY));
    await withSpec(hf.path, {}, async (spec) => assert.equal(spec.family, 'hf-vit'));
    const timm = writeModel(join(root, `timm-${n++}`), 'timm-vit', makeLayoutWeights('timm-vit', TINY), { noConfig: true });
    await withSpec(timm.path, { numHeads: 4 }, async (spec) => assert.equal(spec.family, 'timm-vit'));
  });
});
