// Extra suite on real data: runs only where ../shared (the real ViT-Tiny) is present.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { Matrix, SingularValueDecomposition } from 'ml-matrix';
import { CLI, HAVE_SHARED, REAL_VIT_TINY, tempDir } from '../helpers/paths.js';
import { readNpy } from '../../src/io/npy.js';
import { SafetensorsFile } from '../../src/checkpoint/safetensors.js';

const skip = HAVE_SHARED ? false : 'real-data suite skipped: ../shared/models/vit-tiny-patch16-224-augreg not present';

test('real ViT-Tiny: weighted cosine falls from > 0.5 (first layer) to < 0.1 (last layer)', { skip }, () => {
  const out = tempDir();
  const r = spawnSync(process.execPath, [CLI, 'svd', REAL_VIT_TINY, '--out', out], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const s = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
  assert.equal(s.dims.layers, 12);
  assert.equal(s.dims.heads, 3);
  assert.equal(s.dims.width, 192);
  const first = s.layers[0].mean_weighted_cosine;
  const last = s.layers[11].mean_weighted_cosine;
  console.log(`# real ViT-Tiny layer-mean weighted cosine: layer 0 ${first.toFixed(4)}, layer 11 ${last.toFixed(4)}`);
  assert.ok(first > 0.5, `layer 0: ${first}`);
  assert.ok(last < 0.1, `layer 11: ${last}`);
  for (const f of ['heatmap.svg', 'heatmap.png', 'heads.svg', 'heads.png', 'U.npy', 'V.npy', 'heads.csv']) assert.ok(existsSync(join(out, f)), f);
});

test('real ViT-Tiny: σ and cosines agree with a dense SVD of W_qᵀW_k (ml-matrix) per head', { skip }, async () => {
  const out = tempDir();
  const r = spawnSync(process.execPath, [CLI, 'svd', REAL_VIT_TINY, '--out', out, '--no-figures', '--vectors', 'float64'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const sv = readNpy(join(out, 'singular_values.npy'));
  const cos = readNpy(join(out, 'cosine.npy'));
  const U = readNpy(join(out, 'U.npy'));
  const V = readNpy(join(out, 'V.npy'));
  const st = await SafetensorsFile.open(join(REAL_VIT_TINY, 'model.safetensors'));
  const d = 192, H = 3, dh = 64;
  for (const l of [0, 5, 11]) {
    const qkv = await st.read(`blocks.${l}.attn.qkv.weight`);
    for (let h = 0; h < H; h++) {
      const wq = new Matrix(dh, d), wk = new Matrix(dh, d);
      for (let n = 0; n < dh; n++)
        for (let i = 0; i < d; i++) {
          wq.set(n, i, qkv[(h * dh + n) * d + i]);
          wk.set(n, i, qkv[(d + h * dh + n) * d + i]);
        }
      const M = wq.transpose().mmul(wk);
      const svd = new SingularValueDecomposition(M);
      const ref = svd.diagonal;
      const Ur = svd.leftSingularVectors, Vr = svd.rightSingularVectors;
      for (let n = 0; n < dh; n++) {
        const ours = (sv.data as Float64Array)[(l * H + h) * dh + n];
        assert.ok(Math.abs(ours - ref[n]) <= 1e-6 * ref[0], `σ L${l} H${h} M${n}: ${ours} vs ${ref[n]}`);
        // Cosine from the dense vectors (sign-invariant product).
        let c = 0;
        for (let i = 0; i < d; i++) c += Ur.get(i, n) * Vr.get(i, n);
        const oc = (cos.data as Float64Array)[(l * H + h) * dh + n];
        const gapOk = n + 1 < dh ? ref[n] - ref[n + 1] > 1e-6 * ref[0] : true;
        if (gapOk && (n === 0 || ref[n - 1] - ref[n] > 1e-6 * ref[0])) assert.ok(Math.abs(oc - c) < 1e-6, `cos L${l} H${h} M${n}: ${oc} vs ${c}`);
        // Our u_n is a unit vector (column n of U[l,h]).
        let nu = 0, nv = 0;
        for (let i = 0; i < d; i++) {
          const base = ((l * H + h) * d + i) * dh + n;
          nu += (U.data as Float64Array)[base] ** 2;
          nv += (V.data as Float64Array)[base] ** 2;
        }
        assert.ok(Math.abs(nu - 1) < 1e-9 && Math.abs(nv - 1) < 1e-9);
      }
    }
  }
  await st.close();
});
