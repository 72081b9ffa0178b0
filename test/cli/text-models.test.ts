/**
 * `qkscope svd` end to end on text transformers in their Hugging Face layouts (GPT-2 fused
 * Conv1D c_attn, BERT query/key, LLaMA q_proj/k_proj, and LLaMA with grouped-query attention),
 * with planted modes: the run must return the planted σ, cosines and vectors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import sharp from 'sharp';
import { join } from 'node:path';
import { CLI, tempDir } from '../helpers/paths.js';
import { makeLayoutWeights, writeModel, type CanonicalLayer, type TextLayout } from '../fixtures/models.js';
import { readNpy } from '../../src/io/npy.js';
import { plantHead } from './planted.js';

const run = (args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });

interface Expect {
  sigma: number[];
  cosine: number[];
  /** Query- and key-side vectors, mode-major. */
  u: Float64Array;
  v: Float64Array;
}

const DH = 16;
const sigmaFor = (l: number, h: number) => Array.from({ length: DH }, (_, n) => (DH - n) * (1 + 0.15 * h + 0.05 * l));
const cosFor = (l: number, h: number) => Array.from({ length: DH }, (_, n) => Math.cos(0.7 * n + h + 2 * l));

/** Checks an svd run against the expected modes of every head. */
function check(out: string, L: number, H: number, D: number, want: (l: number, h: number) => Expect, label: string) {
  const sv = readNpy(join(out, 'singular_values.npy')).data as Float64Array;
  const cos = readNpy(join(out, 'cosine.npy')).data as Float64Array;
  const U = readNpy(join(out, 'U.npy')).data as Float64Array;
  const V = readNpy(join(out, 'V.npy')).data as Float64Array;
  for (let l = 0; l < L; l++)
    for (let h = 0; h < H; h++) {
      const p = want(l, h);
      for (let n = 0; n < DH; n++) {
        const k = (l * H + h) * DH + n;
        assert.ok(Math.abs(sv[k] - p.sigma[n]) < 1e-5 * p.sigma[0], `${label} σ L${l} H${h} M${n}: ${sv[k]} vs ${p.sigma[n]}`);
        assert.ok(Math.abs(cos[k] - p.cosine[n]) < 1e-5, `${label} c L${l} H${h} M${n}: ${cos[k]} vs ${p.cosine[n]}`);
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

for (const layout of ['hf-gpt2', 'hf-bert', 'hf-llama'] as const satisfies readonly TextLayout[]) {
  test(`svd recovers planted modes of a text transformer (${layout})`, () => {
    const D = 48, H = 3, L = 2;
    const P = Array.from({ length: L }, (_, l) => Array.from({ length: H }, (_, h) => plantHead(D, sigmaFor(l, h), cosFor(l, h), 31 + 5 * l + h)));
    const w = makeLayoutWeights(layout, { d: D, heads: H, layers: L, seed: 4, planted: (l, h) => P[l][h] });
    const m = writeModel(join(tempDir(), 'model'), layout, w);
    const out = join(tempDir(), 'run');
    const r = run(['svd', m.path, '--out', out, '--vectors', 'float64']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /L=2 H=3 d=48 d_h=16/);
    const s = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
    assert.equal(s.dims.kv_heads, H);
    check(out, L, H, D, (l, h) => P[l][h], layout);
    // Figures unchanged.
    for (const f of ['heatmap.png', 'heads.png']) assert.ok(existsSync(join(out, f)), f);
  });
}

test('svd on LLaMA with grouped-query attention: query head h uses key head floor(h / (heads / kvHeads))', () => {
  const D = 64, H = 4, KV = 2, L = 2, group = H / KV;
  // Key head g of layer l: rows √s_n e_n (basis from a per-(l, g) seed). Query head h in group g:
  // rows (σ_hn / √s_n) w_hn with w_hn = c_hn e_n + √(1 − c²) e_{d_h+n}, so
  // W_q,hᵀ W_k,g = Σ σ_hn w_hn e_nᵀ: u_n = w_hn (query side), v_n = e_n, cosine c_hn.
  const s = Array.from({ length: DH }, (_, n) => 1 + 0.25 * n);
  const want = (l: number, h: number): Expect => {
    const g = Math.floor(h / group);
    const p = plantHead(D, Array(DH).fill(1), cosFor(l, h), 101 + 13 * l + 7 * g);
    return { sigma: sigmaFor(l, h), cosine: cosFor(l, h), u: p.v, v: p.u };
  };
  const w = makeLayoutWeights('hf-llama', { d: D, heads: H, layers: L, seed: 6, kvHeads: KV });
  const orig = w.layer;
  const patched = new WeakSet<CanonicalLayer>();
  w.layer = (i: number) => {
    const layer = orig(i);
    if (patched.has(layer)) return layer;
    for (let h = 0; h < H; h++) {
      const e = want(i, h);
      for (let n = 0; n < DH; n++)
        for (let c = 0; c < D; c++) {
          layer.q.w[(h * DH + n) * D + c] = (e.sigma[n] / Math.sqrt(s[n])) * e.u[n * D + c];
          // Every head of a group writes the same key rows (same seed, same e_n).
          layer.k.w[(Math.floor(h / group) * DH + n) * D + c] = Math.sqrt(s[n]) * e.v[n * D + c];
        }
    }
    patched.add(layer);
    return layer;
  };
  const m = writeModel(join(tempDir(), 'model'), 'hf-llama', w);
  const cfg = JSON.parse(readFileSync(join(m.dir, 'config.json'), 'utf8'));
  assert.equal(cfg.num_key_value_heads, KV);
  const out = join(tempDir(), 'run');
  const r = run(['svd', m.path, '--out', out, '--vectors', 'float64']);
  assert.equal(r.status, 0, r.stderr);
  const sum = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
  assert.equal(sum.dims.kv_heads, KV);
  assert.equal(sum.dims.heads, H);
  check(out, L, H, D, want, 'llama-gqa');
  // The two heads of a group share their key-side vectors v_n (the shared key head).
  const V = readNpy(join(out, 'V.npy')).data as Float64Array;
  for (let n = 0; n < DH; n++) {
    let dot = 0;
    for (let i = 0; i < D; i++) dot += V[((0 * H + 0) * D + i) * DH + n] * V[((0 * H + 1) * D + i) * DH + n];
    assert.ok(Math.abs(Math.abs(dot) - 1) < 1e-5, `heads 0 and 1 share v_${n}: ${dot}`);
  }
});

test('embed on a GPT-2 checkpoint: the only stderr line is the refusal (no preprocessing warning), nothing written', async () => {
  const m = writeModel(join(tempDir(), 'gpt2'), 'hf-gpt2', makeLayoutWeights('hf-gpt2', { d: 16, heads: 2, layers: 1, seed: 2 }));
  const dir = tempDir();
  const image = join(dir, 'a.png');
  writeFileSync(image, await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 10, g: 20, b: 30 } } }).png().toBuffer());
  const out = join(dir, 'run');
  const r = run(['embed', m.path, image, '--out', out]);
  assert.equal(r.status, 2, r.stderr);
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], /embed: gpt2 cannot be run on images: this is a text model \(text-gpt2\): weight analysis only; use `qkscope svd`/);
  assert.doesNotMatch(r.stderr, /0x0|resize|preprocessing|at .*\.js/);
  assert.equal(existsSync(out), false);
});
