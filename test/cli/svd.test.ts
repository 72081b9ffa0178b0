import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, truncateSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, tempDir } from '../helpers/paths.js';
import { makeLayoutWeights, writeModel, type Layout } from '../fixtures/models.js';
import { readNpy } from '../../src/io/npy.js';
import { plantHead, type PlantedHead } from './planted.js';

const D = 48, HEADS = 3, DH = 16, LAYERS = 2;
// Cosines +1, −1, 0 and others; distinct σ; the last mode has σ = 0 (rank-deficient head).
const SIGMA = [9, 7.5, 6, 5, 4.2, 3.6, 3, 2.5, 2, 1.6, 1.2, 0.9, 0.6, 0.4, 0.2, 0];
const COS = [1, -1, 0, 0.5, -0.5, 0.9, -0.2, 0.3, 0.7, -0.8, 0.1, 0, 0.6, -0.4, 0.25, 0];

function planted(): PlantedHead[][] {
  return Array.from({ length: LAYERS }, (_, l) =>
    Array.from({ length: HEADS }, (_, h) => plantHead(D, SIGMA.map((s) => s * (1 + 0.1 * h)), COS.map((c, n) => (n < 3 ? c : c * (l ? -1 : 1))), 17 + 7 * l + h)),
  );
}

export function run(args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
}

function writePlanted(layout: Layout, P: PlantedHead[][], extra = {}) {
  const dir = tempDir();
  const w = makeLayoutWeights(layout, { d: D, heads: HEADS, layers: LAYERS, patch: 4, image: 16, seed: 3, planted: (l, h) => P[l][h] });
  return writeModel(join(dir, 'model'), layout, w, extra);
}

for (const layout of ['timm-vit', 'hf-vit', 'hf-beit'] as const) {
  test(`svd recovers planted σ, cosines and vectors (${layout})`, () => {
    const P = planted();
    const m = writePlanted(layout, P);
    const out = join(tempDir(), 'run');
    const r = run(['svd', m.path, '--out', out, '--vectors', 'float64']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /L=2 H=3 d=48 d_h=16/);
    const sv = readNpy(join(out, 'singular_values.npy'));
    const cos = readNpy(join(out, 'cosine.npy'));
    const U = readNpy(join(out, 'U.npy'));
    const V = readNpy(join(out, 'V.npy'));
    const hw = readNpy(join(out, 'head_weighted_cosine.npy'));
    assert.deepEqual(sv.shape, [LAYERS, HEADS, DH]);
    assert.deepEqual(U.shape, [LAYERS, HEADS, D, DH]);
    assert.deepEqual(hw.shape, [LAYERS, HEADS]);
    const s = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
    assert.equal(s.index_base, 0);
    assert.equal(s.dims.head_dim, DH);
    for (let l = 0; l < LAYERS; l++)
      for (let h = 0; h < HEADS; h++) {
        const p = P[l][h];
        let num = 0, den = 0;
        for (let n = 0; n < DH; n++) {
          const k = (l * HEADS + h) * DH + n;
          const ours = (sv.data as Float64Array)[k];
          // Weights are stored as float32: allow its rounding.
          assert.ok(Math.abs(ours - p.sigma[n]) < 1e-5 * p.sigma[0], `σ L${l} H${h} M${n}: ${ours} vs ${p.sigma[n]}`);
          if (p.sigma[n] === 0) continue;
          const c = (cos.data as Float64Array)[k];
          assert.ok(Math.abs(c - p.cosine[n]) < 1e-5, `c L${l} H${h} M${n}: ${c} vs ${p.cosine[n]}`);
          num += p.sigma[n] * p.cosine[n];
          den += p.sigma[n];
          // u_n equals the planted one up to the joint sign; v_n carries the same sign.
          let du = 0, dv = 0;
          for (let i = 0; i < D; i++) {
            const idx = ((l * HEADS + h) * D + i) * DH + n;
            du += (U.data as Float64Array)[idx] * p.u[n * D + i];
            dv += (V.data as Float64Array)[idx] * p.v[n * D + i];
          }
          assert.ok(Math.abs(Math.abs(du) - 1) < 1e-5 && Math.abs(du - dv) < 1e-5, `vectors L${l} H${h} M${n}: ${du} ${dv}`);
          // Canonical sign: the largest-|entry| of u_n is positive.
          let best = 0;
          for (let i = 0; i < D; i++) {
            const x = (U.data as Float64Array)[((l * HEADS + h) * D + i) * DH + n];
            if (Math.abs(x) > Math.abs(best)) best = x;
          }
          assert.ok(best > 0);
        }
        assert.ok(Math.abs((hw.data as Float64Array)[l * HEADS + h] - num / den) < 1e-5);
      }
    // Chance band for d = 48 is symmetric and inside (−1, 1).
    assert.ok(s.chance.mode95.lo < 0 && Math.abs(s.chance.mode95.lo + s.chance.mode95.hi) < 1e-12);
    for (const f of ['heatmap.svg', 'heatmap.png', 'heads.svg', 'heads.png', 'heads.csv', 'key_salience.npy', 'rel_gap.npy', 'head_mean_cosine.npy']) assert.ok(existsSync(join(out, f)), f);
    const csv = readFileSync(join(out, 'heads.csv'), 'utf8').trim().split(/\r?\n/);
    assert.equal(csv.length, 1 + LAYERS * HEADS);
  });
}

test('svd: the same weights in HF and timm layouts give identical results', () => {
  const P = planted();
  const a = writePlanted('timm-vit', P);
  const b = writePlanted('hf-vit', P);
  const oa = join(tempDir(), 'a'), ob = join(tempDir(), 'b');
  assert.equal(run(['svd', a.path, '--out', oa, '--no-figures']).status, 0);
  assert.equal(run(['svd', b.path, '--out', ob, '--no-figures']).status, 0);
  for (const f of ['singular_values.npy', 'cosine.npy', 'U.npy', 'V.npy', 'key_salience.npy']) assert.deepEqual(readNpy(join(oa, f)).data, readNpy(join(ob, f)).data, f);
});

function assertUserError(r: ReturnType<typeof run>, pattern: RegExp) {
  assert.notEqual(r.status, 0);
  assert.equal(r.status, 2, r.stderr);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line expected, got:\n${r.stderr}`);
  assert.match(lines[0], /^qkscope: /);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  assert.match(lines[0], pattern);
}

test('svd errors: wrong path, truncated file, lying header, unknown type, missing tensor, bad flag', () => {
  const out = join(tempDir(), 'o');
  assertUserError(run(['svd', '/nonexistent/model-dir', '--out', out]), /nonexistent/);

  const t = writePlanted('timm-vit', planted());
  const st = join(t.dir, 'model.safetensors');
  truncateSync(st, statSync(st).size - 100);
  assertUserError(run(['svd', t.path, '--out', out]), /model\.safetensors.*truncated|model\.safetensors/);

  const lie = writePlanted('timm-vit', planted());
  const f = join(lie.dir, 'model.safetensors');
  const buf = readFileSync(f);
  buf.writeBigUInt64LE(BigInt(buf.length * 2), 0);
  writeFileSync(f, buf);
  assertUserError(run(['svd', lie.path, '--out', out]), /model\.safetensors/);

  const unk = writePlanted('hf-vit', planted(), { configExtra: { model_type: 'not_a_vit' } });
  assertUserError(run(['svd', unk.path, '--out', out]), /not_a_vit.*(vit|supported)/i);

  const miss = writePlanted('hf-vit', planted(), { omit: (n: string) => n.includes('layer.1.attention.attention.key.weight') });
  assertUserError(run(['svd', miss.path, '--out', out]), /key\.weight/);

  const bad = run(['svd', t.path, '--out', out, '--threads', 'zero']);
  assert.notEqual(bad.status, 0);
  assert.doesNotMatch(bad.stderr, /\n\s+at /);
});

test('svd --help shows an example', () => {
  const r = run(['svd', '--help']);
  assert.equal(r.status, 0);
  assert.match(r.stdout, /Example:/);
  assert.match(r.stdout, /--out/);
});

test('compare: run directories and a model on the spot, one curve each', () => {
  const P = planted();
  const a = writePlanted('timm-vit', P);
  const b = writePlanted('hf-dinov2', P);
  const ra = join(tempDir(), 'ra');
  assert.equal(run(['svd', a.path, '--out', ra, '--no-figures']).status, 0);
  const fig = join(tempDir(), 'figs', 'cmp.png');
  const r = run(['compare', ra, b.path, '--out', fig]);
  assert.equal(r.status, 0, r.stderr);
  for (const ext of ['.svg', '.png', '.json']) assert.ok(existsSync(fig.replace(/\.png$/, ext)), ext);
  const j = JSON.parse(readFileSync(fig.replace(/\.png$/, '.json'), 'utf8'));
  assert.equal(j.curves.length, 2);
  assert.deepEqual(j.curves[0].depth, [0, 1]);
  // Same planted q/k in both models → same curve.
  for (let i = 0; i < 2; i++) assert.ok(Math.abs(j.curves[0].value[i] - j.curves[1].value[i]) < 1e-9);
  for (const c of j.curves) for (let i = 0; i < 2; i++) assert.ok(c.band95.lo[i] < 0 && c.band95.hi[i] > 0);
  const bad = run(['compare', ra, '--out', join(tempDir(), 'x.gif')]);
  assertUserError(bad, /\.svg or \.png/);
});

test('compare --relative subtracts each layer\'s anisotropy baseline from RUN/anisotropy.json', () => {
  const P = planted();
  const a = writePlanted('timm-vit', P);
  const ra = join(tempDir(), 'ra');
  assert.equal(run(['svd', a.path, '--out', ra, '--no-figures']).status, 0);
  const fig = join(tempDir(), 'rel.svg');
  assertUserError(run(['compare', ra, '--relative', '--out', fig]), /anisotropy\.json/);
  writeFileSync(join(ra, 'anisotropy.json'), JSON.stringify({ layers: [{ layer: 0, anisotropy: 0.25 }, { layer: 1, anisotropy: -0.1 }] }));
  const abs = join(tempDir(), 'abs.svg');
  assert.equal(run(['compare', ra, '--out', abs]).status, 0);
  const r = run(['compare', ra, '--relative', '--out', fig]);
  assert.equal(r.status, 0, r.stderr);
  const A = JSON.parse(readFileSync(abs.replace(/\.svg$/, '.json'), 'utf8')).curves[0];
  const R = JSON.parse(readFileSync(fig.replace(/\.svg$/, '.json'), 'utf8')).curves[0];
  assert.ok(Math.abs(R.value[0] - (A.value[0] - 0.25)) < 1e-12);
  assert.ok(Math.abs(R.value[1] - (A.value[1] + 0.1)) < 1e-12);
  assert.ok(Math.abs(R.band95.lo[0] - (A.band95.lo[0] - 0.25)) < 1e-12);
  assertUserError(run(['compare', a.path, '--relative', '--out', fig]), /run directory/);
});
