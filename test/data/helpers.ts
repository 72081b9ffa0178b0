/** Shared fixtures for the token-level analyses' tests: tiny models, images, in-process CLI runs. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import type { Command } from 'commander';
import { openModel } from '../../src/checkpoint/open.js';
import { buildSpec } from '../../src/arch/registry.js';
import { makeLayoutWeights, type CanonicalWeights } from '../fixtures/models.js';

/** Writes an RGB PNG from a per-pixel function. */
export async function writePng(path: string, w: number, h: number, f: (x: number, y: number) => [number, number, number]): Promise<string> {
  const data = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data.set(f(x, y), (y * w + x) * 3);
  await sharp(data, { raw: { width: w, height: h, channels: 3 } }).png().toFile(path);
  return path;
}

/** Writes a single-channel (grey) PNG. */
export async function writeMask(path: string, w: number, h: number, f: (x: number, y: number) => number): Promise<string> {
  const data = Buffer.alloc(w * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data[y * w + x] = f(x, y);
  await sharp(data, { raw: { width: w, height: h, channels: 1 } }).png().toFile(path);
  return path;
}

export async function specOf(path: string) {
  const opened = await openModel(path);
  return { spec: buildSpec({ config: opened.config, preprocessorConfig: opened.preprocessorConfig, source: opened.source, modelId: path }), close: () => opened.close() };
}

/** Runs a command in-process; returns what it wrote to stdout. */
export async function runCmd(make: () => Command, args: string[]): Promise<string> {
  return (await runCmdIO(make, args)).stdout;
}

/** Runs a command in-process; returns what it wrote to stdout and to stderr (progress lines, notes). */
export async function runCmdIO(make: () => Command, args: string[]): Promise<{ stdout: string; stderr: string }> {
  const cmd = make().exitOverride();
  let out = '';
  let err = '';
  const orig = process.stdout.write.bind(process.stdout);
  const origErr = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((s: string | Uint8Array, ...rest: unknown[]) => {
    if (typeof s === 'string' && !s.startsWith('TAP') && !/^#|^ok|^not ok/.test(s)) {
      out += s;
      return true;
    }
    return (orig as (...a: unknown[]) => boolean)(s, ...rest);
  }) as typeof process.stdout.write;
  process.stderr.write = ((s: string | Uint8Array) => {
    err += typeof s === 'string' ? s : Buffer.from(s).toString();
    return true;
  }) as typeof process.stderr.write;
  try {
    await cmd.parseAsync(args, { from: 'user' });
  } finally {
    process.stdout.write = orig;
    process.stderr.write = origErr;
  }
  return { stdout: out, stderr: err };
}

/** Progress lines a command printed in a pipe for phase `label` ("label: done/total images ..."). */
export function progressLines(stderr: string, label: string): string[] {
  return stderr.split('\n').filter((l) => new RegExp(`^${label}: \\d+/\\d+ images`).test(l));
}

/** A file with an image extension that is not an image (a skip, not an error). */
export function writeCorrupt(path: string): string {
  writeFileSync(path, Buffer.from('this is not a PNG, just bytes'));
  return path;
}

/**
 * An indexed-colour (palette) PNG written by hand, as VOC's SegmentationObject masks are: the
 * value of each pixel is its palette index (here up to 256 grey palette entries), 8 bits.
 */
export function writePalettePng(path: string, w: number, h: number, f: (x: number, y: number) => number, filter = 0): string {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(td) >>> 0);
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 3; // indexed colour
  // VOC-like palette: index i → a distinct colour; 255 → (224, 224, 192) as in VOC.
  const plte = Buffer.alloc(256 * 3);
  for (let i = 0; i < 256; i++) plte.set(i === 255 ? [224, 224, 192] : [(i * 37) % 256, (i * 91) % 256, (i * 151) % 256], i * 3);
  const raw = Buffer.alloc(h * (w + 1));
  for (let y = 0; y < h; y++) {
    raw[y * (w + 1)] = filter;
    for (let x = 0; x < w; x++) {
      const v = f(x, y);
      // filter 1 (Sub): store the difference to the left pixel, so the reader's unfilter is exercised.
      raw[y * (w + 1) + 1 + x] = filter === 1 ? (v - (x > 0 ? f(x - 1, y) : 0)) & 0xff : v;
    }
  }
  const png = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('PLTE', plte), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
  writeFileSync(path, png);
  return path;
}

export function writeJson(path: string, v: unknown): string {
  writeFileSync(path, JSON.stringify(v));
  return path;
}

export const PLANTED_D = 16;
const D = PLANTED_D;
const S2 = 40; // ‖W_q‖², ‖W_k‖² scale: sharp attention
export const RED: [number, number, number] = [255, 0, 0];
export const GREEN: [number, number, number] = [0, 255, 0];
export const BLUE: [number, number, number] = [0, 0, 255];

/**
 * One block, one head (d_h = d), no position embedding, LN1 without affine: the LN outputs of
 * uniformly coloured patches all have norm √d and equal colours give equal vectors.
 * 'group': W_q = W_k = √S2·I, so a token attends to the keys most like itself (its own object).
 * 'background': W_q = 0 and b_q = √S2·x_bg/‖x_bg‖, W_k = √S2·I: every token attends to the background.
 */
export function plantedWeights(kind: 'group' | 'background', xbg?: Float64Array): CanonicalWeights {
  const w = makeLayoutWeights('hf-vit', { d: D, heads: 1, layers: 1, patch: 4, image: 16, seed: 21 });
  if (w.pos) w.pos = new Float32Array(w.pos.length);
  const base = w.layer;
  const s = Math.sqrt(S2);
  w.layer = (i: number) => {
    const L = base(i);
    L.norm1 = { w: new Float32Array(D).fill(1), b: new Float32Array(D) };
    const eye = new Float32Array(D * D);
    for (let k = 0; k < D; k++) eye[k * D + k] = s;
    L.k = { w: eye, b: new Float32Array(D) };
    if (kind === 'group') L.q = { w: eye.slice(), b: new Float32Array(D) };
    else {
      let n = 0;
      for (const v of xbg!) n += v * v;
      L.q = { w: new Float32Array(D * D), b: Float32Array.from(xbg!, (v) => (s * v) / Math.sqrt(n)) };
    }
    return L;
  };
  return w;
}


export { join };
