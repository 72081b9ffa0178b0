/**
 * `qkscope svd` end to end on plain PyTorch state dicts read through declarative layouts: the
 * presets (torch.nn.TransformerEncoder post- and pre-norm, with prefixes; lucidrains vit-pytorch)
 * found by detection or named with --layout, and a custom --layout FILE.json. Planted modes: the
 * run must return the planted σ, cosines and vectors. `embed` runs the custom layout (it
 * describes a patch embedding) and refuses the presets in one line.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { CLI, tempDir } from '../helpers/paths.js';
import { makeLayoutWeights, writeModel, type GenericLayout, type WriteOptions } from '../fixtures/models.js';
import { readNpy } from '../../src/io/npy.js';
import { plantHead, type PlantedHead } from './planted.js';

const run = (args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });

const D = 48, H = 3, DH = 16, L = 2;
const SIGMA = (l: number, h: number) => Array.from({ length: DH }, (_, n) => (DH - n) * (1 + 0.2 * h + 0.1 * l));
const COS = (l: number, h: number) => Array.from({ length: DH }, (_, n) => Math.cos(0.6 * n + 1.3 * h + 2.1 * l));

function planted(): PlantedHead[][] {
  return Array.from({ length: L }, (_, l) => Array.from({ length: H }, (_, h) => plantHead(D, SIGMA(l, h), COS(l, h), 71 + 11 * l + h)));
}

function write(layout: GenericLayout, P: PlantedHead[][], wo: WriteOptions = {}) {
  const w = makeLayoutWeights(layout, { d: D, heads: H, layers: L, patch: 4, image: 16, seed: 9, planted: (l, h) => P[l][h] });
  return writeModel(join(tempDir(), 'model'), layout, w, wo);
}

/** The run's σ, cosines and vectors equal the planted ones (vectors up to the joint sign). */
function checkPlanted(out: string, P: PlantedHead[][], label: string): void {
  const sv = readNpy(join(out, 'singular_values.npy'));
  const cos = readNpy(join(out, 'cosine.npy')).data as Float64Array;
  const U = readNpy(join(out, 'U.npy')).data as Float64Array;
  const V = readNpy(join(out, 'V.npy')).data as Float64Array;
  assert.deepEqual(sv.shape, [L, H, DH], label);
  for (let l = 0; l < L; l++)
    for (let h = 0; h < H; h++) {
      const p = P[l][h];
      for (let n = 0; n < DH; n++) {
        const k = (l * H + h) * DH + n;
        const s = (sv.data as Float64Array)[k];
        assert.ok(Math.abs(s - p.sigma[n]) < 1e-5 * p.sigma[0], `${label} σ L${l} H${h} M${n}: ${s} vs ${p.sigma[n]}`);
        assert.ok(Math.abs(cos[k] - p.cosine[n]) < 1e-5, `${label} cosine L${l} H${h} M${n}: ${cos[k]} vs ${p.cosine[n]}`);
        let du = 0, dv = 0;
        for (let i = 0; i < D; i++) {
          const idx = ((l * H + h) * D + i) * DH + n;
          du += U[idx] * p.u[n * D + i];
          dv += V[idx] * p.v[n * D + i];
        }
        assert.ok(Math.abs(Math.abs(du) - 1) < 1e-5 && Math.abs(du - dv) < 1e-5, `${label} vectors L${l} H${h} M${n}: ${du} ${dv}`);
      }
    }
}

const CASES: Array<{ label: string; layout: GenericLayout; wo?: WriteOptions; args: string[]; family: string }> = [
  { label: 'torch.nn.TransformerEncoder, post-norm, detected', layout: 'torch-transformer-encoder', args: ['--num-heads', '3'], family: 'layout:torch-transformer-encoder' },
  {
    label: 'torch.nn.TransformerEncoder, pre-norm (norm_first), under encoder., named',
    layout: 'torch-transformer-encoder-prenorm',
    wo: { prefix: 'encoder.' },
    args: ['--num-heads', '3', '--layout', 'torch-transformer-encoder-prenorm'],
    family: 'layout:torch-transformer-encoder-prenorm',
  },
  {
    label: 'torch.nn.TransformerEncoder under an unlisted prefix (found by its suffix)',
    layout: 'torch-transformer-encoder',
    wo: { prefix: 'backbone.temporal.' },
    args: ['--num-heads', '3'],
    family: 'layout:torch-transformer-encoder',
  },
  { label: 'vit-pytorch ViT, detected', layout: 'vit-pytorch', args: ['--num-heads', '3'], family: 'layout:vit-pytorch' },
  { label: 'custom --layout FILE.json (separate q/k/v, heads in the file)', layout: 'custom-layout', args: [], family: 'layout:my-vit' },
];

for (const c of CASES) {
  test(`svd recovers planted modes: ${c.label}`, () => {
    const P = planted();
    const m = write(c.layout, P, c.wo);
    const out = join(tempDir(), 'run');
    const args = ['svd', m.path, '--out', out, '--vectors', 'float64', '--no-figures', ...c.args, ...(m.layoutFile ? ['--layout', m.layoutFile] : [])];
    const r = run(args);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`${c.family.replace(/[.:+-]/g, '\\$&')}, L=2 H=3 d=48 d_h=16`));
    checkPlanted(out, P, c.label);
    const s = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
    assert.equal(s.model.family, c.family);
  });
}

test('a layout needs the head count: one line naming --num-heads (vit-pytorch: what dim_head 64 would mean)', () => {
  const m = write('vit-pytorch', planted());
  const r = run(['svd', m.path, '--out', join(tempDir(), 'run')]);
  assert.equal(r.status, 2);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], /layout vit-pytorch does not say how many attention heads its query width 48 holds; pass --num-heads/);
  assert.doesNotMatch(lines[0], /dim_head 64/, '48 is not a multiple of 64: no suggestion');
});

test('a wrong head count is caught by the shapes', () => {
  const m = write('torch-transformer-encoder', planted());
  const r = run(['svd', m.path, '--out', join(tempDir(), 'run'), '--num-heads', '5']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /in_proj_weight has 144 rows, which do not split into 5 query \+ 2 x 5 key\/value heads/);
});

test('compare accepts --layout too', () => {
  const m = write('custom-layout', planted());
  const out = join(tempDir(), 'cmp.svg');
  const r = run(['compare', m.path, '--layout', m.layoutFile!, '--out', out]);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(existsSync(out));
});

test('embed: a preset without a patch embedding says why in one line; the custom layout runs', async () => {
  const dir = tempDir();
  const image = join(dir, 'a.png');
  writeFileSync(image, await sharp({ create: { width: 20, height: 20, channels: 3, background: { r: 200, g: 20, b: 90 } } }).png().toBuffer());
  for (const [layout, why] of [
    ['torch-transformer-encoder', /a torch\.nn\.TransformerEncoder has no patch embedding/],
    ['vit-pytorch', /vit-pytorch’s patch embedding \(LayerNorm, Linear, LayerNorm over flattened patches\) is not a convolution/],
  ] as const) {
    const m = write(layout, planted());
    const r = run(['embed', m.path, image, '--num-heads', '3', '--out', join(dir, layout)]);
    assert.equal(r.status, 2, r.stderr);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], /^qkscope: embed: model\.pt cannot be run on images: |^qkscope: embed: vit\.pth cannot be run on images: /);
    assert.match(lines[0], why);
    assert.equal(existsSync(join(dir, layout)), false);
  }
  const m = write('custom-layout', planted());
  const out = join(dir, 'custom');
  const r = run(['embed', m.path, image, '--layout', m.layoutFile!, '--out', out]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /1 image, 17 tokens, layers 0,1, 5 classes/);
  assert.deepEqual(readNpy(join(out, 'logits.npy')).shape, [1, 5]);
});

test('--layout: an unknown name, a bad file and an unknown key are one line each', () => {
  const m = write('torch-transformer-encoder', planted());
  const dir = tempDir();
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, '{"name": "x", "attention": {');
  const typo = join(dir, 'typo.json');
  writeFileSync(typo, JSON.stringify({ name: 'x', attention: { qkv: 'layers.{i}.self_attn.in_proj_weight', out: 'layers.{i}.self_attn.out_proj.weight' }, norms: { attention: 'layers.{i}.norm1.weight', mlp: 'layers.{i}.norm2.weight' }, mlp: { fc1: 'layers.{i}.linear1.weight', fc2: 'layers.{i}.linear2.weight' }, heads: 3, placment: 'post' }));
  for (const [arg, want] of [
    ['no-such-layout', /--layout no-such-layout: no such preset \(torch-transformer-encoder, torch-transformer-encoder-prenorm, vit-pytorch\) and no such file/],
    [bad, /bad\.json: is not valid JSON/],
    [typo, /typo\.json: unknown layout key placment/],
  ] as const) {
    const r = run(['svd', m.path, '--layout', arg, '--out', join(dir, 'run')]);
    assert.equal(r.status, 2, r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, want);
  }
  // The corrected file reads the post-norm encoder.
  const fixed = JSON.parse(readFileSync(typo, 'utf8'));
  delete fixed.placment;
  fixed.placement = 'post';
  writeFileSync(typo, JSON.stringify(fixed));
  const r = run(['svd', m.path, '--layout', typo, '--out', join(dir, 'run'), '--no-figures']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /layout:x, L=2 H=3 d=48/);
});
