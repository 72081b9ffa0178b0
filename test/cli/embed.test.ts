import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { embedCommand, parseLayers } from '../../src/cli/embed.js';
import { makeLayoutWeights, writeModel } from '../fixtures/models.js';
import { readNpy, writeNpy } from '../../src/io/npy.js';
import { openModel } from '../../src/checkpoint/open.js';
import { buildSpec } from '../../src/arch/registry.js';
import { VitRuntime } from '../../src/runtime/vit-runtime.js';
import { preprocessFor } from '../../src/images/preprocess.js';
import { loadBatch } from '../../src/images/load-pixels.js';

const root = mkdtempSync(join(tmpdir(), 'qkscope-embed-cli-'));
test.after(() => rmSync(root, { recursive: true, force: true }));

const model = writeModel(join(root, 'vit'), 'hf-vit-classifier', makeLayoutWeights('hf-vit-classifier', { d: 16, heads: 2, layers: 3, seed: 3 })).path;

async function embed(args: string[]): Promise<string> {
  const cmd = embedCommand().exitOverride();
  let out = '';
  const orig = process.stdout.write.bind(process.stdout);
  // Capture the command's own summary line; let the test runner's output through.
  process.stdout.write = ((s: string | Uint8Array, ...rest: unknown[]) => {
    if (typeof s === 'string' && s.includes(' tokens, layers ')) {
      out += s;
      return true;
    }
    return (orig as (...a: unknown[]) => boolean)(s, ...rest);
  }) as typeof process.stdout.write;
  try {
    await cmd.parseAsync(args, { from: 'user' });
  } finally {
    process.stdout.write = orig;
  }
  return out;
}

async function images(): Promise<string[]> {
  const paths: string[] = [];
  for (const [i, [w, h]] of [
    [20, 24],
    [32, 16],
    [16, 16],
  ].entries()) {
    const data = Buffer.alloc(w * h * 3);
    for (let k = 0; k < data.length; k++) data[k] = (k * (7 + i * 13)) % 256;
    const p = join(root, `img${i}.${i === 1 ? 'webp' : 'png'}`);
    await sharp(data, { raw: { width: w, height: h, channels: 3 } })
      [i === 1 ? 'webp' : 'png'](i === 1 ? { lossless: true } : {})
      .toFile(p);
    paths.push(p);
  }
  return paths;
}

async function spec() {
  const opened = await openModel(model);
  return { spec: buildSpec({ config: opened.config, preprocessorConfig: opened.preprocessorConfig, source: opened.source, modelId: model }), close: () => opened.close() };
}

test('parseLayers', () => {
  assert.deepEqual(parseLayers('0,5,11'), [0, 5, 11]);
  assert.equal(parseLayers('all'), 'all');
  assert.throws(() => parseLayers('0,x'), /--layers 0,x/);
  assert.throws(() => parseLayers('-1'), /--layers -1/);
});

test('embed images: shapes, streaming over batches, and the same numbers as the runtime', async () => {
  const imgs = await images();
  const out = join(root, 'out1');
  const msg = await embed([model, ...imgs, '--out', out, '--layers', '0,2', '--attention', '--batch', '2', '--threads', '1']);
  assert.match(msg, /3 images/);
  const ln = readNpy(join(out, 'ln.npy'));
  const res = readNpy(join(out, 'residual.npy'));
  const att = readNpy(join(out, 'attention.npy'));
  const logits = readNpy(join(out, 'logits.npy'));
  const T = 1 + 16; // CLS + 4x4 patches
  assert.deepEqual(ln.shape, [3, 2, T, 16]);
  assert.deepEqual(res.shape, [3, 2, T, 16]);
  assert.deepEqual(att.shape, [3, 2, 2, T, T]);
  assert.deepEqual(logits.shape, [3, 5]);
  const tokens = JSON.parse(readFileSync(join(out, 'tokens.json'), 'utf8'));
  assert.equal(tokens.cls, 0);
  assert.equal(tokens.distillation, null);
  assert.deepEqual(tokens.registers, []);
  assert.deepEqual(tokens.patches, { start: 1, count: 16, grid: [4, 4], order: 'raster (row-major)' });
  assert.deepEqual(tokens.layers, [0, 2]);
  const imagesJson = JSON.parse(readFileSync(join(out, 'images.json'), 'utf8'));
  assert.deepEqual(
    imagesJson.images.map((x: { path: string }) => x.path),
    imgs,
  );
  const manifest = JSON.parse(readFileSync(join(out, 'embed.json'), 'utf8'));
  assert.deepEqual(manifest.shapes.ln, [3, 2, T, 16]);

  // Same as running the runtime on the preprocessed batch in one go.
  const { spec: s, close } = await spec();
  try {
    const { pp, options } = preprocessFor(s);
    const px = await loadBatch(imgs, pp, options);
    const rt = await VitRuntime.create(s, { outputs: { ln: [0, 2], attention: [0, 2], logits: true } });
    const r = await rt.run(px, 3);
    await rt.close();
    const close4 = (a: ArrayLike<number>, b: ArrayLike<number>) => {
      let m = 0;
      for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
      return m;
    };
    assert.ok(close4(ln.data as Float32Array, r.ln!) < 1e-5);
    assert.ok(close4(att.data as Float32Array, r.attention!) < 1e-5);
    assert.ok(close4(logits.data as Float32Array, r.logits!) < 1e-4);
  } finally {
    await close();
  }
});

test('embed --pixels: bypasses preprocessing; default layers are all', async () => {
  const px = new Float32Array(2 * 3 * 16 * 16).map((_, i) => Math.sin(i * 0.1));
  const file = join(root, 'px.npy');
  writeNpy(file, '<f4', [2, 3, 16, 16], px);
  const out = join(root, 'out2');
  await embed([model, '--pixels', file, '--out', out]);
  const ln = readNpy(join(out, 'ln.npy'));
  assert.deepEqual(ln.shape, [2, 3, 17, 16]);
  assert.ok(!existsSync(join(out, 'attention.npy')));
  const { spec: s, close } = await spec();
  try {
    const rt = await VitRuntime.create(s, { outputs: { ln: 'all' } });
    const r = await rt.run(px, 2);
    await rt.close();
    let m = 0;
    for (let i = 0; i < r.ln!.length; i++) m = Math.max(m, Math.abs(r.ln![i] - (ln.data as Float32Array)[i]));
    assert.ok(m < 1e-5);
  } finally {
    await close();
  }
  const imagesJson = JSON.parse(readFileSync(join(out, 'images.json'), 'utf8'));
  assert.equal(imagesJson.source, 'pixels');
  assert.equal(imagesJson.count, 2);
});

test('embed --pixels at another size interpolates the position embedding', async () => {
  const file = join(root, 'px24.npy');
  writeNpy(file, '<f4', [1, 3, 24, 24], new Float32Array(3 * 24 * 24).fill(0.1));
  const out = join(root, 'out3');
  await embed([model, '--pixels', file, '--out', out, '--layers', '1']);
  assert.deepEqual(readNpy(join(out, 'ln.npy')).shape, [1, 1, 1 + 36, 16]);
});

const isUserError = (re: RegExp) => (e: Error) => {
  assert.equal(e.name, 'UserError', e.message);
  assert.match(e.message, re);
  return true;
};

test('bad input: unreadable image, wrong --pixels shape, --layers out of range, cuda without provider', async () => {
  const imgs = await images();
  const broken = join(root, 'broken.jpg');
  writeFileSync(broken, 'not a jpeg');
  // One policy for unusable images everywhere: skipped, reported with its own reason, the run goes on.
  const msg = await embed([model, imgs[0], broken, imgs[2], '--out', join(root, 'skip1')]);
  assert.match(msg, /2 images \(1 skipped\)/);
  assert.deepEqual(readNpy(join(root, 'skip1', 'ln.npy')).shape.slice(0, 1), [2]);
  const listed = JSON.parse(readFileSync(join(root, 'skip1', 'images.json'), 'utf8')) as { images: { path: string; row: number | null; skipped?: string }[] };
  assert.deepEqual(listed.images.map((i) => i.row), [0, null, 1]);
  assert.match(listed.images[1].skipped ?? '', /cannot decode/);
  const manifest = JSON.parse(readFileSync(join(root, 'skip1', 'embed.json'), 'utf8'));
  assert.equal(manifest.skipped.length, 1);
  assert.equal(manifest.skipped[0].path, broken);
  await assert.rejects(embed([model, broken, '--out', join(root, 'bad1')]), isUserError(/none of the 1 image could be used/));
  await assert.rejects(embed([model, join(root, 'missing.png'), '--out', join(root, 'bad1')]), isUserError(/missing\.png: cannot open/));

  const wrong = join(root, 'wrong.npy');
  writeNpy(wrong, '<f4', [2, 16, 16], new Float32Array(2 * 16 * 16));
  await assert.rejects(embed([model, '--pixels', wrong, '--out', join(root, 'bad2')]), isUserError(/^--pixels .*wrong\.npy: shape \[2, 16, 16\], expected \[N, 3, 16, 16\]/));
  const f64 = join(root, 'f64.npy');
  writeNpy(f64, '<f8', [1, 3, 16, 16], new Float64Array(3 * 16 * 16));
  await assert.rejects(embed([model, '--pixels', f64, '--out', join(root, 'bad2')]), isUserError(/^--pixels .*f64\.npy: dtype <f8/));
  const odd = join(root, 'odd.npy');
  writeNpy(odd, '<f4', [1, 3, 18, 16], new Float32Array(3 * 18 * 16));
  await assert.rejects(embed([model, '--pixels', odd, '--out', join(root, 'bad2')]), isUserError(/not a multiple of the 4-pixel patch/));

  await assert.rejects(embed([model, imgs[0], '--out', join(root, 'bad3'), '--layers', '0,3']), isUserError(/^--layers: layer 3 is out of range; the model has layers 0\.\.2/));
  assert.ok(!existsSync(join(root, 'bad3', 'ln.npy')));

  const { cudaProviderInstalled } = await import('../../src/runtime/device.js');
  if (!cudaProviderInstalled()) {
    await assert.rejects(embed([model, imgs[0], '--out', join(root, 'bad4'), '--device', 'cuda']), isUserError(/^--device cuda: .*ONNXRUNTIME_NODE_INSTALL=cuda12/));
  }
  await assert.rejects(embed([model, imgs[0], '--out', join(root, 'bad4'), '--device', 'tpu']), isUserError(/--device tpu/));
  await assert.rejects(embed([model, '--out', join(root, 'bad5')]), isUserError(/at least one image/));
  await assert.rejects(embed([model, imgs[0], '--pixels', wrong, '--out', join(root, 'bad5')]), isUserError(/either --pixels or image files/));
});
