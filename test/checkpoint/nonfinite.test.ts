// NaN/Inf weights: refused once, where every weight is loaded (loadWeight), with the tensor's
// name and the count; --allow-nonfinite lets them through and svd marks the affected heads
// instead of printing NaN silently. Before, svd and embed exited 0 and wrote NaN.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadWeight } from '../../src/arch/spec.js';
import { MemorySource } from '../../src/checkpoint/memory.js';
import { writeNpy } from '../../src/io/npy.js';
import { makeLayoutWeights, writeModel } from '../fixtures/models.js';
import { CLI } from '../helpers/paths.js';
import { rejectsUser, tempDir } from './tmp.js';

const dir = tempDir('nonfinite');

test('loadWeight refuses NaN/Inf with the tensor name and count, only in the rows it reads', async () => {
  const data = Array.from({ length: 12 }, (_, i) => i + 1);
  data[7] = NaN; // row 1 of [3, 4]
  data[8] = Infinity; // row 2
  data[9] = -Infinity;
  const src = new MemorySource('m.safetensors', { w: { shape: [3, 4], data } });
  await rejectsUser(() => loadWeight({ source: src, name: 'w', shape: [3, 4] }), 'm.safetensors', /tensor w has 3 non-finite values \(NaN or ±Inf\) among 12/, /--allow-nonfinite/);
  await rejectsUser(() => loadWeight({ source: src, name: 'w', rows: [2, 3], shape: [1, 4] }), /tensor w \(rows 2\.\.2\) has 2 non-finite values among 4|tensor w \(rows 2\.\.2\) has 2 non-finite values \(NaN or ±Inf\) among 4/);
  assert.deepEqual(Array.from(await loadWeight({ source: src, name: 'w', rows: [0, 1], shape: [1, 4] })), [1, 2, 3, 4], 'finite rows load');
  // A transposed (GPT-2 Conv1D) ref: canonical rows are stored columns; column 3 holds the NaN.
  await rejectsUser(() => loadWeight({ source: src, name: 'w', rows: [3, 4], transposed: true, shape: [1, 3] }), /has 1 non-finite value \(NaN or ±Inf\) among 3/);
  src.allowNonFinite = true;
  const all = await loadWeight({ source: src, name: 'w', shape: [3, 4] });
  assert.equal(Array.from(all).filter((x) => !Number.isFinite(x)).length, 3);
});

/** An hf-vit (d 32, 2 heads of 16, 2 layers) whose layer-0 query rows of head 1 hold NaN and Inf. */
function poisonedModel(): string {
  const m = writeModel(join(dir, 'model'), 'hf-vit', makeLayoutWeights('hf-vit', { d: 32, heads: 2, layers: 2, patch: 4, image: 16, seed: 3 }));
  const p = join(m.dir, 'model.safetensors');
  const b = readFileSync(p);
  const n = Number(b.readBigUInt64LE(0));
  const header = JSON.parse(b.subarray(8, 8 + n).toString('utf8')) as Record<string, { data_offsets: [number, number] }>;
  const name = 'encoder.layer.0.attention.attention.query.weight';
  const at = 8 + n + header[name].data_offsets[0];
  b.writeFloatLE(NaN, at + (20 * 32 + 3) * 4);
  b.writeFloatLE(Infinity, at + (30 * 32 + 5) * 4);
  writeFileSync(p, b);
  return m.path;
}

const cli = (args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000 });

test('svd and embed refuse NaN weights (exit 2, one line); svd --allow-nonfinite marks the head', { timeout: 240_000 }, () => {
  const model = poisonedModel();
  const out = join(dir, 'refused');
  const r = cli(['svd', model, '--out', out]);
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /^qkscope: .*model\.safetensors: tensor encoder\.layer\.0\.attention\.attention\.query\.weight has 2 non-finite values .*--allow-nonfinite to analyse it anyway\n$/);
  assert.ok(!existsSync(join(out, 'summary.json')));

  const pixels = join(dir, 'pixels.npy');
  writeNpy(pixels, '<f4', [1, 3, 16, 16], new Float32Array(3 * 16 * 16).fill(0.25));
  const e = cli(['embed', model, '--pixels', pixels, '--out', join(dir, 'embed')]);
  assert.equal(e.status, 2, e.stderr);
  assert.match(e.stderr, /^qkscope: .*tensor encoder\.layer\.0\.attention\.attention\.query\.weight has 2 non-finite values/);
  assert.equal(e.stderr.trim().split('\n').length, 1);

  const ok = join(dir, 'allowed');
  const a = cli(['svd', model, '--out', ok, '--allow-nonfinite']);
  assert.equal(a.status, 0, a.stderr);
  assert.match(a.stderr, /warning: 1 head with non-finite weights \(L0 H1\): marked "nonfinite": true in summary\.json and left out of the layer means/);
  assert.doesNotMatch(a.stdout, /NaN/);
  const s = JSON.parse(readFileSync(join(ok, 'summary.json'), 'utf8'));
  const flags = s.layers.map((l: { heads: { nonfinite?: boolean }[] }) => l.heads.map((h) => h.nonfinite === true));
  assert.deepEqual(flags, [[false, true], [false, false]]);
  assert.equal(s.layers[0].mean_weighted_cosine, s.layers[0].heads[0].weighted_cosine, 'the layer mean is over finite heads');
  assert.ok(Number.isFinite(s.layers[1].mean_weighted_cosine));
});
