/**
 * Hostile images: decompression bombs (a 30000 × 30000 PNG of 2.6 MB, its header alone), vector
 * files named like photos (SVG declaring a huge canvas), empty and truncated files, all mixed
 * with good images. `embed` and `scan` skip and report them with their own reason and go on;
 * peak memory stays bounded whatever an image claims to be.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { createDeflate } from 'node:zlib';
import { makeLayoutWeights, writeModel } from '../fixtures/models.js';
import { imagePixels } from '../scan/helpers.js';
import type { HostileCase } from './cases.js';
import type { CliRun } from './run-cli.js';

function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (const x of b) {
    c ^= x;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const c = Buffer.alloc(4);
  c.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, c]);
}

/**
 * A real, valid PNG of w × h black pixels: 30000² is about 900 MB of pixels in a 0.9 MB file.
 * Deflated in 4 MB pieces, so making it never holds the pixels.
 */
export async function bombPng(w: number, h: number): Promise<Buffer> {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8;
  ihdr[9] = 0; // greyscale
  const z = createDeflate({ level: 1 });
  const out: Buffer[] = [];
  z.on('data', (b: Buffer) => out.push(b));
  const done = new Promise<void>((res, rej) => {
    z.on('end', res);
    z.on('error', rej);
  });
  const piece = Buffer.alloc(4 << 20);
  let left = (w + 1) * h; // a filter byte (0) and w zeros per row
  while (left > 0) {
    const n = Math.min(left, piece.length);
    if (!z.write(piece.subarray(0, n))) await new Promise((r) => z.once('drain', r));
    left -= n;
  }
  z.end();
  await done;
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', Buffer.concat(out)), chunk('IEND', Buffer.alloc(0))]);
}

let bomb: Promise<Buffer> | null = null;
const theBomb = () => (bomb ??= bombPng(30000, 30000));

const SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="60000" height="60000"><rect width="60000" height="60000" fill="red"/></svg>';

async function goodPng(path: string, seed: number): Promise<void> {
  const { default: sharp } = await import('sharp');
  await sharp(imagePixels(seed, 24, 20), { raw: { width: 24, height: 20, channels: 3 } }).png().toFile(path);
}

function tinyModel(dir: string): string {
  return writeModel(join(dir, 'model'), 'hf-vit', makeLayoutWeights('hf-vit', { d: 16, heads: 2, layers: 2, patch: 4, image: 16, seed: 1 })).path;
}

/** Images that must be skipped, by file name, with the reason each must give. */
const BAD: [string, () => Promise<string | Buffer>, RegExp][] = [
  ['bomb.png', theBomb, /30000×30000 pixels exceeds the limit of 64 MP/],
  ['vector.jpg', async () => SVG, /SVG file is not a photo/],
  ['vector2.png', async () => SVG, /SVG file is not a photo/],
  ['empty.jpg', async () => Buffer.alloc(0), /empty file/],
];

async function writeBad(dir: string): Promise<void> {
  for (const [name, data] of BAD) writeFileSync(join(dir, name), await data());
}

const badReasons = (extra: [string, RegExp][] = []) => new Map<string, RegExp>([...BAD.map(([n, , re]) => [n, re] as [string, RegExp]), ...extra]);

function assertSkipped(r: CliRun, bad: Map<string, RegExp>, good: number) {
  const where = `exit ${r.status}\nstdout:\n${r.stdout}\nstderr:\n${r.lines.join('\n')}`;
  assert.equal(r.status, 0, where);
  for (const [name, re] of bad) {
    const line = r.stdout.split('\n').find((l) => l.includes(`/${name}: `));
    assert.ok(line, `${name} is listed as skipped: ${where}`);
    assert.match(line!, re, where);
  }
  assert.match(r.stdout, new RegExp(`\\b${good} image`), where);
  for (const l of r.lines) assert.match(l, /^(qkscope: |embed: |scan: |svd: )/, `unexpected stderr line: ${where}`);
}

export const IMAGE_CASES: HostileCase[] = [
  {
    name: 'images: bomb PNG, SVGs named as photos, empty file among good images (embed)',
    area: 'image',
    before: '30000×30000 PNG: 2.7 GB and 14.6 s; 122-byte SVG named .jpg: 3.2 GB',
    setup: async (d) => {
      const imgs = join(d, 'imgs');
      mkdirSync(imgs);
      await goodPng(join(imgs, 'a.png'), 1);
      await goodPng(join(imgs, 'b.png'), 2);
      await writeBad(imgs);
      return ['embed', tinyModel(d), imgs, '--out', join(d, 'out')];
    },
    expect: /./,
    check: (r) => assertSkipped(r, badReasons(), 2),
    maxRssMb: 500,
    limits: { addressSpaceMb: 16384 },
  },
  {
    name: 'images: only a bomb (embed): refused in one line',
    area: 'image',
    setup: async (d) => {
      writeFileSync(join(d, 'bomb.png'), await theBomb());
      return ['embed', tinyModel(d), join(d, 'bomb.png'), '--out', join(d, 'out')];
    },
    expect: /none of the 1 image could be used/,
    maxRssMb: 500,
    limits: { addressSpaceMb: 16384 },
    check: (r) => {
      assert.equal(r.status, 2, r.lines.join('\n'));
      assert.match(r.stdout, /bomb\.png: 30000×30000 pixels exceeds the limit/);
      const errs = r.lines.filter((l) => l.startsWith('qkscope: '));
      assert.equal(errs.length, 1, r.lines.join('\n'));
      assert.match(errs[0], /none of the 1 image could be used/);
    },
  },
  {
    name: 'images: three SVG bombs and a PNG bomb in a scan',
    area: 'image',
    before: 'three SVGs: 9.2 GB peak',
    setup: async (d) => {
      const imgs = join(d, 'imgs');
      mkdirSync(imgs);
      for (let i = 0; i < 4; i++) await goodPng(join(imgs, `g${i}.png`), 10 + i);
      await writeBad(imgs);
      writeFileSync(join(imgs, 'vector3.jpeg'), SVG);
      return ['scan', tinyModel(d), imgs, '--out', join(d, 'run'), '--top', '2'];
    },
    expect: /./,
    check: (r) => assertSkipped(r, badReasons([['vector3.jpeg', /SVG file is not a photo/]]), 4),
    maxRssMb: 700,
    limits: { addressSpaceMb: 16384 },
  },
  {
    name: 'images: --max-pixels lowers the limit',
    area: 'image',
    setup: async (d) => {
      await goodPng(join(d, 'a.png'), 3);
      return ['embed', tinyModel(d), join(d, 'a.png'), '--out', join(d, 'out'), '--max-pixels', '100'];
    },
    expect: /none of the 1 image could be used/,
    limits: { addressSpaceMb: 16384 },
    check: (r) => {
      assert.equal(r.status, 2);
      assert.match(r.stdout, /24×20 pixels exceeds the limit of 100 pixels \(raise it with --max-pixels/);
    },
  },
];
