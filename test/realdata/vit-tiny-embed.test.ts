// Extra suite on real data: the end-to-end proof that preprocessing and the graph are right.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { CLI, HAVE_SHARED, REAL_IMAGES, REAL_VIT_TINY, tempDir } from '../helpers/paths.js';
import { readNpy } from '../../src/io/npy.js';

const skip = HAVE_SHARED ? false : 'real-data suite skipped: ../shared (real ViT-Tiny + ImageNet photos) not present';

test('real ViT-Tiny classifies the 500 ImageNet photos with top-1 >= 0.80 through qkscope embed', { skip, timeout: 600_000 }, () => {
  const out = tempDir();
  const r = spawnSync(process.execPath, [CLI, 'embed', REAL_VIT_TINY, REAL_IMAGES, '--out', out, '--layers', '11', '--batch', '16'], { encoding: 'utf8', maxBuffer: 1 << 26 });
  assert.equal(r.status, 0, r.stderr);
  const labels = new Map<string, number>();
  for (const line of readFileSync(join(REAL_IMAGES, 'labels.csv'), 'utf8').trim().split(/\r?\n/).slice(1)) {
    const [file, cls] = line.split(',');
    labels.set(file, Number(cls));
  }
  const images = JSON.parse(readFileSync(join(out, 'images.json'), 'utf8'));
  const list: string[] = (Array.isArray(images) ? images : images.images).map((x: string | { path: string }) => (typeof x === 'string' ? x : x.path));
  const logits = readNpy(join(out, 'logits.npy'));
  assert.equal(logits.shape[0], list.length);
  assert.equal(list.length, 500);
  const C = logits.shape[1];
  let correct = 0;
  list.forEach((p, i) => {
    const name = p.split('/').pop()!;
    const want = labels.get(name);
    assert.notEqual(want, undefined, name);
    let best = 0;
    for (let c = 1; c < C; c++) if ((logits.data as Float32Array)[i * C + c] > (logits.data as Float32Array)[i * C + best]) best = c;
    if (best === want) correct++;
  });
  const top1 = correct / list.length;
  console.log(`# real ViT-Tiny top-1 on ${list.length} ImageNet photos: ${top1.toFixed(3)}`);
  assert.ok(top1 >= 0.8, `top-1 ${top1}`);
});
