/**
 * `export-onnx`: the written file, run by plain onnxruntime (node) and by onnxruntime-web's
 * WebAssembly backend (what the exported site runs), against the naive float64 forward pass
 * (test/runtime/naive-forward.ts, no shared code with the graph builder) and the direct
 * formula for the pre-softmax scores a_ij = (W_q x_i + b_q)·(W_k x_j + b_k)/√d_h + B_ij.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import ortNode from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';
import { loadWeight, type VitSpec } from '../../src/arch/spec.js';
import { runExportOnnx, writeExportOnnx, type OnnxModelCard } from '../../src/jobs/export-onnx.js';
import { relPosBiasHead } from '../../src/runtime/taps.js';
import { tokenLayout } from '../../src/arch/tokens.js';
import { naiveForward, type NaiveResult } from '../runtime/naive-forward.js';
import { familySpecs, tinyPixels } from '../runtime/tiny-specs.js';
import { CLI, tempDir } from '../helpers/paths.js';

ortWeb.env.wasm.numThreads = 1;

type Outputs = Record<string, { data: Float32Array; dims: number[] }>;

async function runWith(lib: typeof ortNode | typeof ortWeb, model: Uint8Array, pixels: Float32Array, dims: number[]): Promise<Outputs> {
  const s = await lib.InferenceSession.create(model, { executionProviders: [lib === ortNode ? 'cpu' : 'wasm'] });
  try {
    const r = await s.run({ pixels: new lib.Tensor('float32', pixels, dims) as never });
    const out: Outputs = {};
    for (const [k, v] of Object.entries(r)) out[k] = { data: v.data as Float32Array, dims: v.dims.map(Number) };
    return out;
  } finally {
    await s.release();
  }
}

/** max |a − b| / max |b|. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    m = Math.max(m, Math.abs(a[i] - b[i]));
    s = Math.max(s, Math.abs(b[i]));
  }
  return m / Math.max(s, 1e-12);
}

/** The direct formula for one image's scores of block l: [H, T, T] in float64. */
async function directScores(spec: VitSpec, ln: Float64Array, l: number): Promise<Float64Array> {
  const b = spec.blocks[l];
  const layout = tokenLayout(spec);
  const T = layout.tokens;
  const d = spec.width;
  const H = spec.heads;
  const dh = spec.headDim;
  const wq = Float64Array.from(await loadWeight(b.q.weight));
  const wk = Float64Array.from(await loadWeight(b.k.weight));
  const bq = b.q.bias ? Float64Array.from(await loadWeight(b.q.bias)) : null;
  const bk = b.k.bias ? Float64Array.from(await loadWeight(b.k.bias)) : null;
  const proj = (w: Float64Array, bias: Float64Array | null) => {
    const o = new Float64Array(T * H * dh);
    for (let t = 0; t < T; t++)
      for (let r = 0; r < H * dh; r++) {
        let s = bias ? bias[r] : 0;
        for (let i = 0; i < d; i++) s += w[r * d + i] * ln[t * d + i];
        o[t * H * dh + r] = s;
      }
    return o;
  };
  const q = proj(wq, bq);
  const k = proj(wk, bk);
  const out = new Float64Array(H * T * T);
  for (let h = 0; h < H; h++) {
    const rel = await relPosBiasHead(spec, l, h, layout);
    for (let i = 0; i < T; i++)
      for (let j = 0; j < T; j++) {
        let s = 0;
        for (let c = 0; c < dh; c++) s += q[i * H * dh + h * dh + c] * k[j * H * dh + h * dh + c];
        out[(h * T + i) * T + j] = s / Math.sqrt(dh) + (rel ? rel[i * T + j] : 0);
      }
  }
  return out;
}

const FAMILIES = ['vit', 'beit', 'deit', 'clip', 'siglip-attention-pool', 'dinov2-reg-swiglu'];

for (const family of FAMILIES) {
  test(`export-onnx ${family}: onnxruntime-node and onnxruntime-web (wasm) match the naive float64 forward pass`, async () => {
    const spec = familySpecs()[family];
    const exp = await runExportOnnx(spec, { input: family });
    const card = exp.card;
    const dir = tempDir('qkscope-export-onnx-');
    const files = await writeExportOnnx(exp, join(dir, 'm.onnx'));
    assert.deepEqual(files, [join(dir, 'm.onnx'), join(dir, 'm.json')]);
    const written = JSON.parse(readFileSync(join(dir, 'm.json'), 'utf8')) as OnnxModelCard & { command: string; files: Record<string, string> };
    assert.equal(written.command, 'export-onnx');
    assert.ok(written.files['m.onnx']);
    const layout = tokenLayout(spec);
    assert.deepEqual(written.layout, { tokens: layout.tokens, patch_start: layout.patchStart, special: layout.special, grid: layout.grid, image_size: layout.imageSize, patch_size: layout.patchSize });
    assert.equal(written.has_rel_pos, family === 'beit');
    const L = spec.layers;
    const names = written.outputs.map((o) => o.name);
    for (let l = 0; l < L; l++) for (const p of ['ln', 'attention', 'scores']) assert.ok(names.includes(`${p}.${l}`), `${p}.${l}`);
    assert.equal(names.some((n) => n.startsWith('qk.')), family === 'beit');

    const model = new Uint8Array(readFileSync(join(dir, 'm.onnx')));
    const [C, Hs, Ws] = [spec.channels, ...spec.imageSize];
    const n = 2;
    const pixels = tinyPixels(n, Hs, Ws, 7);
    const per = C * Hs * Ws;
    const dims = [n, C, Hs, Ws];
    const node = await runWith(ortNode, model, pixels, dims);
    const web = await runWith(ortWeb, model, pixels, dims);
    assert.deepEqual(Object.keys(web).sort(), Object.keys(node).sort());
    assert.deepEqual(Object.keys(node).sort(), [...names].sort());
    // Browser backend against node backend: same file, same numbers to float32 rounding.
    for (const k of Object.keys(node)) assert.ok(relErr(web[k].data, node[k].data) < 1e-4, `${k}: web vs node ${relErr(web[k].data, node[k].data)}`);

    const T = card.layout.tokens;
    const d = spec.width;
    const H = spec.heads;
    for (let i = 0; i < n; i++) {
      const ref: NaiveResult = await naiveForward(spec, pixels.subarray(i * per, (i + 1) * per));
      for (let l = 0; l < L; l++) {
        const ln = node[`ln.${l}`].data.subarray(i * T * d, (i + 1) * T * d);
        assert.ok(relErr(ln, ref.ln[l]) < 1e-4, `ln.${l}: ${relErr(ln, ref.ln[l])}`);
        const att = node[`attention.${l}`].data.subarray(i * H * T * T, (i + 1) * H * T * T);
        assert.ok(relErr(att, ref.attention[l]) < 1e-4, `attention.${l}: ${relErr(att, ref.attention[l])}`);
        const sc = node[`scores.${l}`].data.subarray(i * H * T * T, (i + 1) * H * T * T);
        const direct = await directScores(spec, ref.ln[l], l);
        assert.ok(relErr(sc, direct) < 1e-4, `scores.${l}: ${relErr(sc, direct)}`);
        if (family === 'beit') {
          const qk = node[`qk.${l}`].data.subarray(i * H * T * T, (i + 1) * H * T * T);
          for (let h = 0; h < H; h++) {
            const rel = (await relPosBiasHead(spec, l, h, tokenLayout(spec)))!;
            let m = 0;
            for (let t = 0; t < T * T; t++) m = Math.max(m, Math.abs(sc[h * T * T + t] - qk[h * T * T + t] - rel[t]));
            assert.ok(m < 1e-5, `beit: scores − qk is the relative position bias (${m})`);
          }
        }
      }
      if (ref.logits && node.logits) assert.ok(relErr(node.logits.data.subarray(i * ref.logits.length, (i + 1) * ref.logits.length), ref.logits) < 1e-4, 'logits');
      if (ref.features && node.features) assert.ok(relErr(node.features.data.subarray(i * ref.features.length, (i + 1) * ref.features.length), ref.features) < 1e-4, 'features');
    }
  });
}

test('export-onnx --layers: only the chosen blocks are tapped; external data above the single-file limit', async () => {
  const spec = familySpecs().vit;
  const exp = await runExportOnnx(spec, { layers: [1] });
  assert.deepEqual(exp.card.layers, [1]);
  assert.deepEqual(
    exp.card.outputs.map((o) => o.name),
    ['logits', 'features', 'ln.1', 'attention.1', 'scores.1'],
  );
  const dir = tempDir('qkscope-export-onnx-');
  const files = await writeExportOnnx(exp, join(dir, 'big.onnx'), { singleFileLimit: 0 });
  assert.deepEqual(files, [join(dir, 'big.onnx'), join(dir, 'big.onnx.data'), join(dir, 'big.json')]);
  // The graph holds no weights; onnxruntime reads them from the external-data file by its relative name.
  assert.ok(readFileSync(join(dir, 'big.onnx')).length < readFileSync(join(dir, 'big.onnx.data')).length);
  const s = await ortNode.InferenceSession.create(join(dir, 'big.onnx'));
  const px = tinyPixels(1, ...spec.imageSize, 3);
  const r = await s.run({ pixels: new ortNode.Tensor('float32', px, [1, 3, ...spec.imageSize]) });
  await s.release();
  const ref = await naiveForward(spec, px);
  assert.ok(relErr(r['ln.1'].data as Float32Array, ref.ln[1]) < 1e-4);
});

test('export-onnx CLI: one summary line, a wrong --out is one line naming the flag, --help has an example', () => {
  const dir = tempDir('qkscope-export-onnx-cli-');
  const bad = spawnSync(process.execPath, [CLI, 'export-onnx', '/nonexistent-model', '--out', join(dir, 'x.txt')], { encoding: 'utf8' });
  assert.notEqual(bad.status, 0);
  assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
  assert.match(bad.stderr, /--out .*x\.txt.*\.onnx/);
  const help = spawnSync(process.execPath, [CLI, 'export-onnx', '--help'], { encoding: 'utf8' });
  assert.equal(help.status, 0);
  assert.match(help.stdout, /Example:\n\s+qkscope export-onnx /);
  assert.match(help.stdout, /--layers <list>.*\(default: "all"\)/s);
  assert.ok(!existsSync(join(dir, 'x.txt')));
});
