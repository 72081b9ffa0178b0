import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import type { PreprocessSpec } from '../../src/arch/spec.js';
import { decodeImage, type RgbImage } from '../../src/images/decode.js';
import { preprocessImage, resizeAndCrop, shortestEdgeSize } from '../../src/images/preprocess.js';
import { loadBatch } from '../../src/images/load-pixels.js';
import { pilResizeU8, resizeGridF64 } from '../../src/images/resample.js';

const dir = mkdtempSync(join(tmpdir(), 'qkscope-images-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** A w x h RGB image with value(x, y, c) = f(x, y, c). */
function image(w: number, h: number, f: (x: number, y: number, c: number) => number): RgbImage {
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let c = 0; c < 3; c++) data[(y * w + x) * 3 + c] = f(x, y, c);
  return { data, width: w, height: h };
}

function channel(img: RgbImage, c: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < img.width * img.height; i++) out.push(img.data[i * 3 + c]);
  return out;
}

const base: PreprocessSpec = { resizeMode: 'exact', resize: 2, crop: [2, 2], resample: 'nearest', rescale: 1 / 255, mean: [0, 0, 0], std: [1, 1, 1] };

test('4x4 -> 2x2 exact, nearest: Pillow picks source pixels floor((x + 0.5) * 2) = 1, 3', () => {
  const img = image(4, 4, (x, y, c) => 10 * y + x + 100 * c);
  const out = resizeAndCrop(img, base);
  assert.deepEqual(channel(out, 0), [11, 13, 31, 33]);
  assert.deepEqual(channel(out, 2), [211, 213, 231, 233]);
});

test('4x4 -> 2x2 exact, bilinear: triangle support 2 when halving, weights 3/7 3/7 1/7', () => {
  // Rows are 7y + [0, 70, 140, 210]: horizontal pass -> 7y + [50, 160]; vertical on
  // [50, 57, 64, 71] -> (3*50 + 3*57 + 64)/7 = 55 and (57 + 3*64 + 3*71)/7 = 66.
  const img = image(4, 4, (x, y) => 70 * x + 7 * y);
  const out = resizeAndCrop(img, { ...base, resample: 'bilinear' });
  assert.deepEqual(channel(out, 0), [55, 165, 66, 176]);
});

test('Pillow goldens: 5x3 -> 3x2 bilinear, bicubic, lanczos', () => {
  // Generated with Pillow 12.3: Image.fromarray(img).resize((3, 2), resample=...), img[y,x,c] = 40x + 10y + c.
  const img = image(5, 3, (x, y, c) => 40 * x + 10 * y + c);
  const golden: Record<string, number[]> = {
    bilinear: [21, 84, 147, 33, 96, 159],
    bicubic: [17, 83, 149, 31, 97, 163],
    lanczos: [16, 83, 150, 30, 97, 164],
  };
  for (const [f, want] of Object.entries(golden)) {
    const out = pilResizeU8(img.data, 5, 3, 3, 3, 2, f as 'bicubic');
    assert.deepEqual(channel({ data: out, width: 3, height: 2 }, 0), want, f);
  }
});

test('nearest: Pillow accumulates the source coordinate, which decides exact ties (640 -> 96)', () => {
  // (x + 0.5) * 640 / 96 is an exact integer for x = 25, 28, ...; Pillow's running sum lands
  // just below it (169, not 170). Golden from Pillow 12.3: Image.resize((96, 1), NEAREST).
  const w = 640;
  const img = image(w, 1, (x, _y, c) => (c === 0 ? x % 256 : c === 1 ? Math.floor(x / 256) : 0));
  const out = pilResizeU8(img.data, w, 1, 3, 96, 1, 'nearest');
  const cols = Array.from({ length: 96 }, (_, x) => out[x * 3] + 256 * out[x * 3 + 1]);
  assert.deepEqual(cols.slice(20, 34), [136, 143, 150, 156, 163, 169, 176, 183, 189, 196, 203, 209, 216, 223]);
  assert.equal(cols[94], 629);
});

test('a constant image stays constant under every filter, up and down', () => {
  const img = image(7, 5, () => 123);
  for (const f of ['nearest', 'bilinear', 'bicubic', 'lanczos'] as const) {
    for (const [w, h] of [
      [3, 2],
      [11, 9],
    ]) {
      const out = pilResizeU8(img.data, 7, 5, 3, w, h, f);
      assert.ok(out.every((v) => v === 123), `${f} ${w}x${h}`);
    }
  }
});

test('shortest-edge size: short side to the target, long side truncated', () => {
  assert.deepEqual(shortestEdgeSize(640, 480, 224), [298, 224]); // int(224 * 640 / 480) = 298
  assert.deepEqual(shortestEdgeSize(480, 640, 224), [224, 298]);
  assert.deepEqual(shortestEdgeSize(10, 4, 2), [5, 2]);
});

test('shortest edge + centre crop: HF floors the offset, torchvision rounds half to even', () => {
  // 10x4 -> shortest 2 -> 5x2 (nearest: source columns 1,3,5,7,9), crop 2x2: offset (5-2)/2 = 1.5.
  const img = image(10, 4, (x, y) => 10 * x + y);
  const pp: PreprocessSpec = { ...base, resizeMode: 'shortest', resize: 2, crop: [2, 2] };
  // nearest rows: floor((y + 0.5) * 2) = 1, 3
  assert.deepEqual(channel(resizeAndCrop(img, pp, { cropRounding: 'hf' }), 0), [31, 51, 33, 53]);
  assert.deepEqual(channel(resizeAndCrop(img, pp, { cropRounding: 'torchvision' }), 0), [51, 71, 53, 73]);
});

test('exact resize then crop (DeiT: 256 then 224), and zero padding when the crop is larger', () => {
  const img = image(4, 4, (x, y) => 10 * y + x);
  // exact 4x4 (no resize) then crop 2x2 at (1, 1)
  assert.deepEqual(channel(resizeAndCrop(img, { ...base, resize: 4, crop: [2, 2] }), 0), [11, 12, 21, 22]);
  // crop 6x6 of a 4x4: offset -1, zero border
  const padded = resizeAndCrop(img, { ...base, resize: 4, crop: [6, 6] });
  assert.equal(padded.width, 6);
  assert.deepEqual(channel(padded, 0).slice(0, 6), [0, 0, 0, 0, 0, 0]);
  assert.deepEqual(channel(padded, 0).slice(6, 12), [0, 0, 1, 2, 3, 0]);
});

test('rescale and normalise to channels-first float32', () => {
  const img = image(2, 2, (x, y, c) => [0, 200, 51][c] + x + 2 * y);
  const pp: PreprocessSpec = { ...base, mean: [0.5, 0.25, 0], std: [0.5, 0.25, 2] };
  const t = preprocessImage(img, pp);
  assert.equal(t.length, 12);
  const want = (v: number, c: number) => Math.fround((v / 255 - pp.mean[c]) / pp.std[c]);
  assert.deepEqual(Array.from(t.slice(0, 4)), [0, 1, 2, 3].map((v) => want(v, 0)));
  assert.deepEqual(Array.from(t.slice(4, 8)), [200, 201, 202, 203].map((v) => want(v, 1)));
  assert.deepEqual(Array.from(t.slice(8, 12)), [51, 52, 53, 54].map((v) => want(v, 2)));
});

test('position-grid resampling: identity at the same size, exact on linear ramps inside the grid', () => {
  const g = Float64Array.from({ length: 4 * 4 * 2 }, (_, i) => Math.sin(i));
  const same = resizeGridF64(g, 4, 4, 2, 4, 4, 'bicubic');
  same.forEach((v, i) => assert.ok(Math.abs(v - g[i]) < 1e-12));
});

async function writeImages(): Promise<Record<string, string>> {
  const W = 6;
  const H = 4;
  const rgb = Buffer.alloc(W * H * 3);
  for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 37) % 256;
  const rgba = Buffer.alloc(W * H * 4);
  for (let i = 0; i < rgba.length; i++) rgba[i] = (i * 53) % 256;
  const grey = Buffer.alloc(W * H);
  for (let i = 0; i < grey.length; i++) grey[i] = i * 10;
  const u16 = new Uint16Array(W * H * 3);
  for (let i = 0; i < u16.length; i++) u16[i] = ((i * 37) % 256) * 257;
  const f = (n: string) => join(dir, n);
  await sharp(rgb, { raw: { width: W, height: H, channels: 3 } }).png().toFile(f('rgb.png'));
  await sharp(rgba, { raw: { width: W, height: H, channels: 4 } }).png().toFile(f('rgba.png'));
  await sharp(rgba, { raw: { width: W, height: H, channels: 4 } }).webp({ lossless: true }).toFile(f('rgba.webp'));
  await sharp(grey, { raw: { width: W, height: H, channels: 1 } }).toColourspace('b-w').png().toFile(f('grey.png'));
  await sharp(u16, { raw: { width: W, height: H, channels: 3 } }).toColourspace('rgb16').png().toFile(f('rgb16.png'));
  await sharp(rgb, { raw: { width: W, height: H, channels: 3 } }).jpeg({ quality: 100 }).toFile(f('rgb.jpg'));
  await sharp(rgb, { raw: { width: W, height: H, channels: 3 } }).toColourspace('cmyk').jpeg({ quality: 100 }).toFile(f('cmyk.jpg'));
  writeFileSync(f('broken.jpg'), Buffer.from('this is not an image'));
  return { rgb: f('rgb.png'), rgba: f('rgba.png'), webp: f('rgba.webp'), grey: f('grey.png'), rgb16: f('rgb16.png'), jpg: f('rgb.jpg'), cmyk: f('cmyk.jpg'), broken: f('broken.jpg') };
}

test('decoding: PNG, WebP, JPEG; alpha dropped, grey replicated, 16-bit scaled, CMYK converted', async () => {
  const files = await writeImages();
  const W = 6;
  const H = 4;
  const rgbWant = Array.from({ length: W * H * 3 }, (_, i) => (i * 37) % 256);
  const rgb = await decodeImage(files.rgb);
  assert.deepEqual([rgb.width, rgb.height], [W, H]);
  assert.deepEqual(Array.from(rgb.data), rgbWant);
  const rgbaWant: number[] = [];
  for (let p = 0; p < W * H; p++) for (let c = 0; c < 3; c++) rgbaWant.push(((p * 4 + c) * 53) % 256);
  assert.deepEqual(Array.from((await decodeImage(files.rgba)).data), rgbaWant, 'PNG alpha dropped');
  assert.deepEqual(Array.from((await decodeImage(files.webp)).data), rgbaWant, 'lossless WebP alpha dropped');
  const grey = await decodeImage(files.grey);
  assert.deepEqual(Array.from(grey.data.slice(0, 9)), [0, 0, 0, 10, 10, 10, 20, 20, 20]);
  assert.deepEqual(Array.from((await decodeImage(files.rgb16)).data), rgbWant, '16-bit -> 8-bit');
  const jpg = await decodeImage(files.jpg);
  assert.equal(jpg.data.length, W * H * 3);
  const cmyk = await decodeImage(files.cmyk);
  assert.equal(cmyk.data.length, W * H * 3);
  // The CMYK values as stored, converted with Pillow's formula: R = (255 - K)(1 - C/255).
  const raw = await sharp(files.cmyk).pipelineColourspace('cmyk').toColourspace('cmyk').raw().toBuffer();
  for (let p = 0; p < W * H; p++) {
    const nk = 255 - raw[p * 4 + 3];
    for (let c = 0; c < 3; c++) assert.ok(Math.abs(cmyk.data[p * 3 + c] - (nk - (raw[p * 4 + c] * nk) / 255)) <= 1, `cmyk pixel ${p}`);
  }
});

test('an unreadable or missing image is a UserError naming the file', async () => {
  const files = await writeImages();
  await assert.rejects(decodeImage(files.broken), (e: Error) => e.name === 'UserError' && e.message.startsWith(files.broken) && /JPEG, PNG or WebP/.test(e.message));
  const missing = join(dir, 'nope.png');
  await assert.rejects(decodeImage(missing), (e: Error) => e.name === 'UserError' && e.message.startsWith(missing));
  await assert.rejects(decodeImage(dir), (e: Error) => e.name === 'UserError' && /not a file/.test(e.message));
});

test('loadBatch: files through a processor config into [n, 3, h, w]', async () => {
  const files = await writeImages();
  const pp: PreprocessSpec = { resizeMode: 'shortest', resize: 2, crop: [2, 2], resample: 'nearest', rescale: 1 / 255, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };
  const batch = await loadBatch([files.rgb, files.grey], pp);
  assert.equal(batch.length, 2 * 3 * 2 * 2);
  // rgb.png 6x4 -> shortest 2 -> 3x2 (nearest cols floor((x+.5)*2) = 1,3,5; rows 1,3) -> crop 2x2 at left 0: cols 1,3
  const px = (x: number, y: number, c: number) => ((y * 6 + x) * 3 + c) * 37 % 256;
  const want = [px(1, 1, 0), px(3, 1, 0), px(1, 3, 0), px(3, 3, 0)].map((v) => Math.fround((v / 255 - 0.5) / 0.5));
  assert.deepEqual(Array.from(batch.slice(0, 4)), want);
  // grey: value 10 * (y * 6 + x), replicated in all channels
  const g = [10 * 7, 10 * 9, 10 * 19, 10 * 21].map((v) => Math.fround((v / 255 - 0.5) / 0.5));
  for (let c = 0; c < 3; c++) assert.deepEqual(Array.from(batch.slice(12 + c * 4, 12 + c * 4 + 4)), g);
});
