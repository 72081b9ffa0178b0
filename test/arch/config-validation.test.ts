/**
 * Every config number an adapter reads is checked before use (adapter.ts `checkConfig`): a bad
 * value is one UserError line naming the config file (full path), the key, the value and what
 * is expected — never a stack trace, a huge allocation or a silent wrong number.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { UserError } from '../../src/errors.js';
import { loadSpec } from '../../src/arch/load.js';
import { makeLayoutWeights, writeModel, type Layout, type WriteOptions } from '../fixtures/models.js';
import { CLI } from '../helpers/paths.js';
import { removeDir, tempDir } from './helpers.js';

const root = tempDir('config');
after(() => removeDir(root));
let n = 0;

function fixture(layout: Layout, wo: WriteOptions): string {
  const w = makeLayoutWeights(layout, { d: 32, heads: 4, layers: 2, seed: 3 });
  return writeModel(join(root, `${layout}-${n++}`), layout, w, wo).dir;
}

const TIMM_ARGS = { img_size: 16, patch_size: 4, embed_dim: 32, depth: 2, num_heads: 4 };
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** [family layout, what is wrong, write options, key as named in the message, expected message tail]. */
const CASES: Array<[Layout, string, WriteOptions, string, RegExp]> = [
  ['hf-vit', 'negative heads', { configExtra: { num_attention_heads: -3 } }, 'config.json: num_attention_heads = -3', /expected a whole number from 1 to 4096 \(attention heads\)$/],
  ['hf-vit', 'heads not dividing the width', { configExtra: { num_attention_heads: 5 } }, 'config.json: hidden_size = 32, num_attention_heads = 5', /: width 32 is not divisible by 5 heads; expected num_attention_heads to divide hidden_size$/],
  ['hf-vit', 'absurd layers', { configExtra: { num_hidden_layers: 1e9 } }, 'config.json: num_hidden_layers = 1000000000', /from 1 to 1024 \(layers\)$/],
  ['hf-vit', 'non-integer layers', { configExtra: { num_hidden_layers: 2.5 } }, 'config.json: num_hidden_layers = 2.5', /expected a whole number/],
  ['hf-vit', 'zero patch size', { configExtra: { patch_size: 0 } }, 'config.json: patch_size = 0', /from 1 to 1024, or a \[height, width\] pair of them \(the patch size in pixels\)$/],
  ['hf-vit', 'image size 2^20', { configExtra: { image_size: 2 ** 20 } }, 'config.json: image_size = 1048576', /from 1 to 4096/],
  ['hf-vit', 'a string width', { configExtra: { hidden_size: '32' } }, 'config.json: hidden_size = "32"', /expected a whole number/],
  ['hf-vit', 'negative eps', { configExtra: { layer_norm_eps: -1e-6 } }, 'config.json: layer_norm_eps = -0.000001', /greater than 0 and at most 1/],
  ['hf-vit', 'a half-numeric image size pair', { configExtra: { image_size: [16, 'x'] } }, 'config.json: image_size = [16,"x"]', /pair/],
  ['hf-dinov2', 'negative register count', { configExtra: { num_register_tokens: -1 } }, 'config.json: num_register_tokens = -1', /from 0 to 1024 \(register tokens\)$/],
  ['hf-dinov2-registers', 'zero channels', { configExtra: { num_channels: 0 } }, 'config.json: num_channels = 0', /from 1 to 64/],
  ['hf-beit', 'heads not dividing the width', { configExtra: { num_attention_heads: 3 } }, 'config.json: hidden_size = 32, num_attention_heads = 3', /width 32 is not divisible by 3 heads/],
  [
    'hf-clip',
    'old openai vision_config_dict (it wins) with zero heads',
    { configExtra: { vision_config_dict: { hidden_size: 32, num_attention_heads: 0, num_hidden_layers: 2, patch_size: 4, image_size: 16 } } },
    'config.json: vision_config_dict.num_attention_heads = 0',
    /attention heads/,
  ],
  [
    'hf-siglip-vision',
    'SiglipModel vision_config with an image size of 2^20',
    { configExtra: { model_type: 'siglip', vision_config: { hidden_size: 32, num_attention_heads: 4, num_hidden_layers: 2, patch_size: 4, image_size: 2 ** 20 } } },
    'config.json: vision_config.image_size = 1048576',
    /image size/,
  ],
  ['hf-siglip-vision', 'zero patch size', { configExtra: { patch_size: 0 } }, 'config.json: patch_size = 0', /patch size/],
  ['timm-vit', 'img_size 2^20', { configExtra: { model_args: { ...TIMM_ARGS, img_size: 2 ** 20 } } }, 'config.json: model_args.img_size = 1048576', /from 1 to 4096/],
  ['timm-vit', 'negative heads', { configExtra: { model_args: { ...TIMM_ARGS, num_heads: -4 } } }, 'config.json: model_args.num_heads = -4', /attention heads/],
  ['timm-vit', 'absurd depth', { configExtra: { model_args: { ...TIMM_ARGS, depth: 1e9 } } }, 'config.json: model_args.depth = 1000000000', /layers/],
  ['timm-vit', 'heads not dividing embed_dim', { configExtra: { model_args: { ...TIMM_ARGS, num_heads: 5 } } }, 'config.json: model_args.embed_dim = 32, model_args.num_heads = 5', /expected model_args\.num_heads to divide model_args\.embed_dim$/],
  ['timm-vit', 'zero input size', { configExtra: { pretrained_cfg: { input_size: [3, 0, 16] } } }, 'config.json: pretrained_cfg.input_size = [3,0,16]', /\[channels, height, width\]/],
  ['timm-vit', 'zero patch in the architecture name', { timmArchitecture: 'vit_base_patch0_224' }, 'config.json: architecture "vit_base_patch0_224": patch = 0', /patch size/],
  ['hf-gpt2', 'negative heads', { configExtra: { n_head: -1 } }, 'config.json: n_head = -1', /attention heads/],
  ['hf-gpt2', 'absurd layers', { configExtra: { n_layer: 1e9 } }, 'config.json: n_layer = 1000000000', /layers/],
  ['hf-bert', 'heads not dividing the width', { configExtra: { num_attention_heads: 5 } }, 'config.json: hidden_size = 32, num_attention_heads = 5', /not divisible by 5 heads/],
  ['hf-llama', 'key/value heads not dividing the heads', { configExtra: { num_key_value_heads: 3 } }, 'config.json: num_attention_heads = 4, num_key_value_heads = 3', /4 heads are not divisible into groups of 3 key\/value heads/],
  ['hf-llama', 'zero head_dim', { configExtra: { head_dim: 0 } }, 'config.json: head_dim = 0', /the head width/],
  ['hf-vit', 'preprocessor: zero height', { preprocessorExtra: { size: { height: 0, width: 16 } } }, 'preprocessor_config.json: size = {"height":0,"width":16}', /image size/],
];

describe('bad config numbers are one line naming the file, the key, the value and what is expected', () => {
  for (const [layout, what, wo, head, tail] of CASES) {
    it(`${layout}: ${what}`, async () => {
      const dir = fixture(layout, wo);
      await assert.rejects(loadSpec(dir, {}), (e: unknown) => {
        assert.ok(e instanceof UserError, `not a UserError: ${(e as Error)?.stack}`);
        assert.ok(!e.message.includes('\n'), e.message);
        assert.ok(e.message.startsWith(join(dir, head.split(':')[0])), e.message);
        assert.match(e.message, new RegExp(`^${esc(join(dir, head))}[;:] `));
        assert.match(e.message, tail);
        return true;
      });
    });
  }

  it('the CLI prints it as one line with exit status 2', () => {
    const dir = fixture('hf-vit', { configExtra: { num_attention_heads: -3 } });
    const r = spawnSync(process.execPath, [CLI, 'svd', dir, '--out', join(dir, 'run')], { encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /config\.json: num_attention_heads = -3; expected a whole number from 1 to 4096/);
  });

  it('good configs still load (the checks only refuse what is wrong)', async () => {
    for (const layout of ['hf-vit', 'hf-dinov2-registers', 'hf-clip', 'timm-vit', 'hf-gpt2', 'hf-llama'] as Layout[]) {
      const { spec, close } = await loadSpec(fixture(layout, {}), {});
      assert.equal(spec.width, 32, layout);
      await close();
    }
  });
});
