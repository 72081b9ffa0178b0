import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { positionContentCommand } from '../../src/cli/position-content.js';
import { makeLayoutWeights, writeModel } from '../fixtures/models.js';
import { readNpy } from '../../src/io/npy.js';

const root = mkdtempSync(join(tmpdir(), 'qkscope-pc-cli-'));
test.after(() => rmSync(root, { recursive: true, force: true }));
const model = writeModel(join(root, 'vit'), 'hf-vit', makeLayoutWeights('hf-vit', { d: 16, heads: 2, layers: 2, seed: 3 })).path;

async function pc(args: string[]): Promise<void> {
  const cmd = positionContentCommand().exitOverride();
  const orig = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((s: string | Uint8Array, ...rest: unknown[]) =>
    typeof s === 'string' && s.includes('position/content shares') ? true : (orig as (...a: unknown[]) => boolean)(s, ...rest)) as typeof process.stdout.write;
  try {
    await cmd.parseAsync(args, { from: 'user' });
  } finally {
    process.stdout.write = orig;
  }
}

async function images(n: number): Promise<string> {
  const dir = join(root, `imgs${n}`);
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < n; i++) {
    const data = Buffer.alloc(16 * 16 * 3);
    for (let k = 0; k < data.length; k++) data[k] = (k * (5 + i * 11) + i * 40) % 256;
    await sharp(data, { raw: { width: 16, height: 16, channels: 3 } }).png().toFile(join(dir, `i${i}.png`));
  }
  return dir;
}

test('position-content writes shares per mode, head and layer, and a figure', async () => {
  const out = join(root, 'out');
  await pc([model, await images(3), '--out', out, '--threads', '1', '--batch', '2']);
  for (const f of ['position_content.json', 'shares.npy', 'heads.csv', 'position_content.svg', 'position_content.png']) assert.ok(existsSync(join(out, f)), f);
  const j = JSON.parse(readFileSync(join(out, 'position_content.json'), 'utf8'));
  assert.equal(j.images, 3);
  assert.equal(j.embedding, 'ln');
  assert.deepEqual(j.parts, ['CC', 'CP', 'PC', 'PP']);
  assert.equal(j.layers.length, 2);
  for (const l of j.layers) {
    assert.ok(Math.abs(l.shares.reduce((a: number, b: number) => a + b, 0) - 1) < 1e-9);
    assert.equal(l.heads.length, 2);
  }
  const s = readNpy(join(out, 'shares.npy'));
  assert.deepEqual(s.shape, [2, 2, 8, 4]);
  const csv = readFileSync(join(out, 'heads.csv'), 'utf8').trim().split('\n');
  assert.equal(csv.length, 5);
  const out2 = join(root, 'out2');
  await pc([model, await images(3), '--out', out2, '--threads', '1', '--embedding', 'residual', '--tokens', 'patches', '--layers', '1', '--no-figures']);
  const j2 = JSON.parse(readFileSync(join(out2, 'position_content.json'), 'utf8'));
  assert.equal(j2.layers.length, 1);
  assert.equal(j2.layers[0].layer, 1);
  assert.deepEqual(j2.token_range, [1, 17]);
  assert.ok(!existsSync(join(out2, 'position_content.svg')));
});

test('position-content: user mistakes', async () => {
  await assert.rejects(pc([model, await images(1), '--out', join(root, 'x'), '--threads', '1']), (e: Error) => e.name === 'UserError' && /at least 2 images/.test(e.message));
  const gpt = writeModel(join(root, 'gpt2'), 'hf-gpt2', makeLayoutWeights('hf-gpt2', { d: 16, heads: 2, layers: 1, seed: 2 })).path;
  await assert.rejects(pc([gpt, await images(2), '--out', join(root, 'x')]), (e: Error) => e.name === 'UserError' && /vision transformer/.test(e.message));
  await assert.rejects(pc([model, await images(2), '--out', join(root, 'x'), '--layers', '7']), (e: Error) => e.name === 'UserError' && /layer 7 is out of range/.test(e.message));
  let help = '';
  const cmd = positionContentCommand().exitOverride().configureOutput({ writeOut: (s) => (help += s) });
  assert.throws(() => cmd.parse(['--help'], { from: 'user' }));
  assert.match(help, /Example:\n\s+qkscope position-content /);
});

test('position-content: a corrupt image is skipped and listed; both passes print progress lines in a pipe', async () => {
  const dir = await images(3);
  writeFileSync(join(dir, 'broken.png'), Buffer.from('\x89PNG\r\n\x1a\nnot a png at all'));
  const out = join(root, 'skip');
  let stderr = '';
  let stdout = '';
  const orig = { out: process.stdout.write.bind(process.stdout), err: process.stderr.write.bind(process.stderr) };
  process.stdout.write = ((s: string) => ((stdout += s), true)) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => ((stderr += s), true)) as typeof process.stderr.write;
  try {
    await positionContentCommand().exitOverride().parseAsync([model, dir, '--out', out, '--threads', '1', '--batch', '2', '--progress-every', '1', '--no-figures'], { from: 'user' });
  } finally {
    process.stdout.write = orig.out;
    process.stderr.write = orig.err;
  }
  const j = JSON.parse(readFileSync(join(out, 'position_content.json'), 'utf8'));
  assert.equal(j.images, 3);
  assert.equal(j.skipped.length, 1);
  assert.match(j.skipped[0].path, /broken\.png$/);
  assert.equal(j.command, 'position-content');
  assert.equal(j.tool.name, 'qkscope');
  assert.ok(j.files['shares.npy'] && j.shapes.shares);
  assert.match(stdout, /over 3 images \(1 skipped\)/);
  assert.match(stdout, /broken\.png: /);
  assert.match(stderr, /pass 1\/2 .*: 4\/4 images \(100\.0 %\).*1 skipped/);
  assert.match(stderr, /pass 2\/2 .*: 3\/3 images \(100\.0 %\)/);
  assert.ok(stderr.split('\n').filter((l) => /pass [12]\/2.*: \d\/\d images/.test(l)).length >= 4, stderr);
});
