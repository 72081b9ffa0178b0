import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { makeLayoutWeights, writeModel } from '../fixtures/models.js';
import { plantHead } from '../cli/planted.js';
import { listImages } from '../../src/images/sources.js';
import { scanIntoDir } from '../../src/jobs/scan.js';
import { runEmbed, writeEmbed } from '../../src/jobs/embed.js';
import { preprocessFor } from '../../src/images/preprocess.js';
import { readNpy } from '../../src/io/npy.js';
import { bruteList } from './brute.js';
import { writeImage, dumpContent } from './helpers.js';
import { loadSpec } from '../../src/arch/load.js';
import { ListingSource } from '../../src/images/source.js';

const root = mkdtempSync(join(tmpdir(), 'qkscope-scan-'));
test.after(() => rmSync(root, { recursive: true, force: true }));

const D = 32;
const HEADS = 2;
const DH = 16;
const LAYERS = 2;
const K = 5;
const N_IMAGES = 24;

// Layer 1: head 0 is rank-deficient (σ = 0: its modes cannot go the fast route), head 1 has
// one nearly-zero σ (ill-conditioned W_q: that mode is projected directly).
const sig0 = Array.from({ length: DH }, (_, n) => (n === DH - 1 ? 0 : 6 - 0.3 * n));
const sig1 = Array.from({ length: DH }, (_, n) => (n === 5 ? 1e-6 : 5 - 0.25 * n));
const cos = Array.from({ length: DH }, (_, n) => Math.cos(n * 0.7));
const planted = (l: number, h: number) => (l === 1 ? plantHead(D, h === 0 ? sig0 : sig1, cos, 31 + h) : undefined);
const model = writeModel(join(root, 'model'), 'hf-vit', makeLayoutWeights('hf-vit', { d: D, heads: HEADS, layers: LAYERS, patch: 4, image: 16, seed: 11, planted })).path;

const imgDir = join(root, 'imgs');
const ready = (async () => {
  for (let i = 0; i < N_IMAGES; i++) await writeImage(join(imgDir, `g${i % 3}`, `im${String(i).padStart(2, '0')}.png`), 100 + i, 12 + (i % 4) * 6, 14 + (i % 5) * 4);
  const listing = await listImages([imgDir]);
  const { spec, close } = await loadSpec(model, {});
  const { pp, options } = preprocessFor(spec);
  const emb = join(root, 'embed');
  await writeEmbed(await runEmbed(spec, new ListingSource(listing, pp, options), { layers: 'all', batch: 7 }), emb);
  await close();
  return { listing, ln: readNpy(join(emb, 'ln.npy')), residual: readNpy(join(emb, 'residual.npy')) };
})();

async function scan(name: string, opts: { embedding?: 'ln' | 'residual'; directOnly?: boolean; batch?: number } = {}) {
  const { listing } = await ready;
  const { spec, close } = await loadSpec(model, {});
  try {
    const out = join(root, name);
    const r = await scanIntoDir(spec, out, { listing, inputs: [imgDir], modelInput: model }, { topK: K, batch: opts.batch ?? 5, embedding: opts.embedding, directOnly: opts.directOnly });
    return { r, out };
  } finally {
    await close();
  }
}

interface Row {
  layer: number;
  head: number;
  mode: number;
  sign: number;
  rank: number;
  image_id: number;
  score: number;
  qmax: number;
  kmax: number;
  q_token: number;
  k_token: number;
  q_mean: number;
  k_mean: number;
  q_top5: number;
  k_top5: number;
}

function topkRows(out: string): Map<string, Row[]> {
  const db = new Database(join(out, 'run.db'), { readonly: true });
  const rows = db.prepare('SELECT * FROM topk ORDER BY layer, head, mode, sign, rank').all() as Row[];
  db.close();
  const m = new Map<string, Row[]>();
  for (const r of rows) {
    const key = `${r.layer}/${r.head}/${r.mode}/${r.sign}`;
    if (!m.has(key)) m.set(key, []);
    m.get(key)!.push(r);
  }
  return m;
}

const close = (a: number, b: number, rel = 2e-4, abs = 2e-5) => Math.abs(a - b) <= abs + rel * Math.max(Math.abs(a), Math.abs(b));

async function checkAgainstBrute(out: string, embedding: 'ln' | 'residual') {
  const { ln, residual } = await ready;
  const emb = embedding === 'ln' ? ln : residual;
  const U = readNpy(join(out, 'U.npy'));
  const V = readNpy(join(out, 'V.npy'));
  const rows = topkRows(out);
  const ids = Array.from({ length: N_IMAGES }, (_, i) => i);
  let exact = 0;
  let lists = 0;
  for (let l = 0; l < LAYERS; l++)
    for (let h = 0; h < HEADS; h++)
      for (let n = 0; n < DH; n++)
        for (const sign of [1, -1] as const) {
          const brute = bruteList(emb, U, V, { li: l, layer: l, head: h, mode: n, sign, patchStart: 1, ids });
          const byId = new Map(brute.map((b) => [b.id, b]));
          const got = rows.get(`${l}/${h}/${n}/${sign}`)!;
          const where = `L${l} H${h} M${n} ${sign > 0 ? '+' : '-'}`;
          assert.equal(got.length, K, where);
          lists++;
          got.forEach((g, r) => {
            const b = byId.get(g.image_id)!;
            // The image at rank r has the r-th best score (near-ties may swap).
            assert.ok(close(b.score, brute[r].score), `${where} rank ${r}: image ${g.image_id} scores ${b.score}, the r-th best is ${brute[r].score}`);
            const isolated = (r === 0 || !close(brute[r - 1].score, brute[r].score)) && !close(brute[r + 1].score, brute[r].score);
            if (isolated) {
              assert.equal(g.image_id, brute[r].id, `${where} rank ${r}`);
              exact++;
            }
            for (const [a, bb, name] of [
              [g.score, b.score, 'score'],
              [g.qmax, b.qmax, 'qmax'],
              [g.kmax, b.kmax, 'kmax'],
              [g.q_mean, b.qMean, 'q_mean'],
              [g.k_mean, b.kMean, 'k_mean'],
              [g.q_top5, b.qTop5, 'q_top5'],
              [g.k_top5, b.kTop5, 'k_top5'],
            ] as const)
              assert.ok(close(a, bb), `${where} rank ${r} ${name}: ${a} vs ${bb}`);
            if (b.qGap > 1e-4) assert.equal(g.q_token, b.qToken, `${where} q_token`);
            if (b.kGap > 1e-4) assert.equal(g.k_token, b.kToken, `${where} k_token`);
          });
        }
  assert.equal(lists, LAYERS * HEADS * DH * 2);
  assert.ok(exact > 0.9 * lists * K, `only ${exact} exact matches`);
}

test('scan (LayerNorm embedding, fast route with direct fallbacks) equals a brute-force ranking of embed output', async () => {
  const { r, out } = await scan('ln');
  assert.deepEqual(r.routes, ['fast', 'fast']);
  assert.ok(r.fallbackColumns >= 2 * DH + 1, `fallback columns: ${r.fallbackColumns}`); // the rank-deficient head (both sides) + the tiny-σ mode
  assert.equal(r.done, N_IMAGES);
  assert.equal(r.skipped, 0);
  assert.ok(r.complete);
  await checkAgainstBrute(out, 'ln');

  // Anisotropy baseline: mean cosine between the centre patches of different images.
  const { ln } = await ready;
  const [N, L, T, d] = ln.shape;
  const centre = 1 + 2 * 4 + 2; // CLS + patch (2, 2) of the 4x4 grid
  const db = new Database(join(out, 'run.db'), { readonly: true });
  const an = db.prepare('SELECT layer, value, n FROM anisotropy ORDER BY layer').all() as { layer: number; value: number; n: number }[];
  db.close();
  for (let l = 0; l < L; l++) {
    const units = Array.from({ length: N }, (_, i) => {
      const v = Array.from((ln.data as Float32Array).subarray(((i * L + l) * T + centre) * d, ((i * L + l) * T + centre + 1) * d));
      const nrm = Math.hypot(...v);
      return v.map((x) => x / nrm);
    });
    let s = 0;
    for (let i = 0; i < N; i++) for (let j = 0; j < N; j++) if (i !== j) s += units[i].reduce((a, x, c) => a + x * units[j][c], 0);
    assert.equal(an[l].n, N);
    assert.ok(Math.abs(an[l].value - s / (N * (N - 1))) < 1e-6, `anisotropy L${l}: ${an[l].value} vs ${s / (N * (N - 1))}`);
  }
  const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
  assert.equal(summary.kind, 'svd');
  assert.equal(summary.scan.images.done, N_IMAGES);
  const l1 = summary.scan.layers_detail[1];
  assert.ok(Math.abs(l1.relative_mean_weighted_cosine - (summary.layers[1].mean_weighted_cosine - an[1].value)) < 1e-12);
  assert.equal(l1.relative_weighted_cosine.length, HEADS);
});

test('scan --embedding residual (direct route) equals a brute-force ranking of the residual stream', async () => {
  const { r, out } = await scan('residual', { embedding: 'residual', batch: 4 });
  assert.deepEqual(r.routes, ['direct', 'direct']);
  await checkAgainstBrute(out, 'residual');
});

test('the fast and the direct projection routes give the same lists', async () => {
  const a = await scan('fast2', { batch: 24 });
  const b = await scan('direct2', { directOnly: true, batch: 3 });
  assert.deepEqual(b.r.routes, ['direct', 'direct']);
  const ra = topkRows(a.out);
  const rb = topkRows(b.out);
  let same = 0;
  let total = 0;
  for (const [key, la] of ra) {
    const lb = rb.get(key)!;
    la.forEach((x, i) => {
      total++;
      if (x.image_id === lb[i].image_id) same++;
      assert.ok(close(x.score, lb[i].score, 1e-5, 1e-6), `${key} rank ${i}: ${x.score} vs ${lb[i].score}`);
    });
  }
  assert.ok(same >= total - 4, `${total - same} of ${total} entries differ`);
  // Batch size does not change anything (same route): 24 at once vs 5 at a time.
  const c = dumpContent(join(a.out, 'run.db'));
  const d = dumpContent(join((await scan('fast3', { batch: 5 })).out, 'run.db'));
  assert.deepEqual(c.topk, d.topk);
  assert.deepEqual(c.anisotropy, d.anisotropy);
});
