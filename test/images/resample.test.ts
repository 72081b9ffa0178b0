/**
 * The windowed, channel-specialised resize equals the plain two-pass Pillow algorithm (kept here
 * as the reference, as it was first written) byte for byte, for every filter, for whole images
 * and for any region, and a centre crop computed through a region equals resize-then-crop.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pilCoeffs, pilResizeU8, type PilFilter } from '../../src/images/resample.js';
import { resizeAndCrop } from '../../src/images/preprocess.js';
import type { PreprocessSpec } from '../../src/arch/spec.js';

const PRECISION_BITS = 22;

function referenceResize(src: Uint8Array, w: number, h: number, channels: number, outW: number, outH: number, filter: Exclude<PilFilter, 'nearest'>): Uint8Array {
  const fixed = (ws: Float64Array) => Int32Array.from(ws, (v0) => {
    const v = v0 * (1 << PRECISION_BITS);
    return v < 0 ? Math.trunc(-0.5 + v) : Math.trunc(0.5 + v);
  });
  const clip = (v: number) => Math.min(255, Math.max(0, Math.floor(v / (1 << PRECISION_BITS))));
  const half = 1 << (PRECISION_BITS - 1);
  let cur = src;
  let curW = w;
  if (outW !== w) {
    const c = pilCoeffs(w, outW, filter);
    const k = fixed(c.weights);
    const out = new Uint8Array(outW * h * channels);
    for (let y = 0; y < h; y++)
      for (let x = 0; x < outW; x++)
        for (let ch = 0; ch < channels; ch++) {
          let acc = half;
          for (let i = 0; i < c.size[x]; i++) acc += cur[(y * curW + c.start[x] + i) * channels + ch] * k[x * c.ksize + i];
          out[(y * outW + x) * channels + ch] = clip(acc);
        }
    cur = out;
    curW = outW;
  }
  if (outH !== h) {
    const c = pilCoeffs(h, outH, filter);
    const k = fixed(c.weights);
    const out = new Uint8Array(curW * outH * channels);
    for (let y = 0; y < outH; y++)
      for (let x = 0; x < curW; x++)
        for (let ch = 0; ch < channels; ch++) {
          let acc = half;
          for (let i = 0; i < c.size[y]; i++) acc += cur[((c.start[y] + i) * curW + x) * channels + ch] * k[y * c.ksize + i];
          out[(y * curW + x) * channels + ch] = clip(acc);
        }
    cur = out;
  }
  return cur;
}

function rng(seed: number) {
  return () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
}

test('windowed resize equals the reference two-pass resize, whole images and regions', () => {
  const r = rng(3);
  let cases = 0;
  for (const filter of ['bilinear', 'bicubic', 'lanczos'] as const) {
    for (let t = 0; t < 12; t++) {
      const channels = t % 4 === 0 ? 1 : 3;
      const w = 3 + Math.floor(r() * 60);
      const h = 3 + Math.floor(r() * 60);
      const outW = t % 5 === 0 ? w : 2 + Math.floor(r() * 70);
      const outH = t % 7 === 0 ? h : 2 + Math.floor(r() * 70);
      const src = Uint8Array.from({ length: w * h * channels }, () => Math.floor(r() * 256));
      const ref = referenceResize(src, w, h, channels, outW, outH, filter);
      assert.deepEqual(pilResizeU8(src, w, h, channels, outW, outH, filter), ref, `${filter} ${w}x${h}→${outW}x${outH}`);
      for (let k = 0; k < 4; k++) {
        const x0 = Math.floor(r() * outW);
        const y0 = Math.floor(r() * outH);
        const x1 = x0 + 1 + Math.floor(r() * (outW - x0));
        const y1 = y0 + 1 + Math.floor(r() * (outH - y0));
        const part = pilResizeU8(src, w, h, channels, outW, outH, filter, { x0, y0, x1, y1 });
        const want = new Uint8Array((x1 - x0) * (y1 - y0) * channels);
        for (let y = y0; y < y1; y++) want.set(ref.subarray((y * outW + x0) * channels, (y * outW + x1) * channels), (y - y0) * (x1 - x0) * channels);
        assert.deepEqual(part, want, `${filter} region ${x0},${y0}-${x1},${y1}`);
        cases++;
      }
    }
  }
  assert.ok(cases >= 100);
  assert.throws(() => pilResizeU8(new Uint8Array(12), 2, 2, 3, 4, 4, 'bilinear', { x0: 0, y0: 0, x1: 5, y1: 4 }), /outside/);
});

test('resizeAndCrop through a region equals resize of the whole image then crop (with padding)', () => {
  const r = rng(11);
  const pp = (resize: number, crop: [number, number], mode: 'shortest' | 'exact'): PreprocessSpec => ({ resizeMode: mode, resize, crop, resample: 'bicubic', rescale: 1 / 255, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
  for (const [w, h, spec, rounding] of [
    [50, 37, pp(24, [20, 20], 'shortest'), 'hf'],
    [37, 50, pp(24, [20, 20], 'shortest'), 'torchvision'],
    [40, 40, pp(30, [32, 32], 'exact'), 'hf'], // crop larger than the image: zero padding
    [33, 21, pp(16, [16, 16], 'shortest'), 'torchvision'],
  ] as const) {
    const src = Uint8Array.from({ length: w * h * 3 }, () => Math.floor(r() * 256));
    const got = resizeAndCrop({ data: src, width: w, height: h }, spec, { cropRounding: rounding });
    // Reference: the whole resize, then the crop as the pipeline defines it.
    const [ow, oh] = spec.resizeMode === 'shortest' ? (w <= h ? [spec.resize, Math.trunc((spec.resize * h) / w)] : [Math.trunc((spec.resize * w) / h), spec.resize]) : [spec.resize, spec.resize];
    const full = referenceResize(src, w, h, 3, ow, oh, 'bicubic');
    const [ch, cw] = spec.crop;
    const round = (x: number) => (rounding === 'torchvision' ? (Math.abs(x - Math.floor(x) - 0.5) < 1e-12 ? (Math.floor(x) % 2 === 0 ? Math.floor(x) : Math.floor(x) + 1) : Math.round(x)) : Math.floor(x));
    const top = round((oh - ch) / 2);
    const left = round((ow - cw) / 2);
    const want = new Uint8Array(ch * cw * 3);
    for (let y = 0; y < ch; y++)
      for (let x = 0; x < cw; x++) {
        const sy = y + top;
        const sx = x + left;
        if (sy < 0 || sy >= oh || sx < 0 || sx >= ow) continue;
        for (let c = 0; c < 3; c++) want[(y * cw + x) * 3 + c] = full[(sy * ow + sx) * 3 + c];
      }
    assert.deepEqual(got.data, want, `${w}x${h} ${JSON.stringify(spec.crop)} ${rounding}`);
  }
});
