import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { ablateCommand, parseModes } from '../../src/cli/ablate.js';
import { makeLayoutWeights, writeModel } from '../fixtures/models.js';
import { plantHead } from './planted.js';

const root = mkdtempSync(join(tmpdir(), 'qkscope-ablate-cli-'));
test.after(() => rmSync(root, { recursive: true, force: true }));

const D = 32, DH = 16;
const ONE = plantHead(D, [60, 20, ...Array(DH - 2).fill(0)], [0.9, -0.5, ...Array(DH - 2).fill(0)], 5);
const model = writeModel(join(root, 'vit'), 'hf-vit-classifier', makeLayoutWeights('hf-vit-classifier', {
  d: D, heads: 2, layers: 2, patch: 4, image: 16, seed: 11, qkvBias: 'none',
  planted: (l, h) => (l === 1 && h === 0 ? ONE : undefined),
})).path;

/** Runs the command; returns what it wrote to stdout and stderr. */
async function ablate(args: string[]): Promise<{ stdout: string; stderr: string }> {
  const cmd = ablateCommand().exitOverride();
  const seen = { stdout: '', stderr: '' };
  const orig = { stdout: process.stdout.write.bind(process.stdout), stderr: process.stderr.write.bind(process.stderr) };
  const capture = (k: 'stdout' | 'stderr') => ((s: string | Uint8Array) => {
    seen[k] += typeof s === 'string' ? s : Buffer.from(s).toString();
    return true;
  }) as typeof process.stdout.write;
  process.stdout.write = capture('stdout');
  process.stderr.write = capture('stderr');
  try {
    await cmd.parseAsync(args, { from: 'user' });
  } finally {
    process.stdout.write = orig.stdout;
    process.stderr.write = orig.stderr;
  }
  return seen;
}

/** A folder of class folders: cat/ (2 images) and dog/ (2 images). */
async function classFolders(): Promise<string> {
  const dir = join(root, 'imgs');
  let k = 0;
  for (const cls of ['cat', 'dog']) {
    mkdirSync(join(dir, cls), { recursive: true });
    for (let i = 0; i < 2; i++, k++) {
      const data = Buffer.alloc(16 * 16 * 3);
      for (let j = 0; j < data.length; j++) data[j] = (j * (7 + k * 13) + k * 31) % 256;
      await sharp(data, { raw: { width: 16, height: 16, channels: 3 } }).png().toFile(join(dir, cls, `${cls}${i}.png`));
    }
  }
  return dir;
}

test('parseModes', () => {
  assert.deepEqual(parseModes('0,3'), [0, 3]);
  assert.deepEqual(parseModes('all'), 'all');
  assert.deepEqual(parseModes('3,1,3'), [3, 1]);
  assert.throws(() => parseModes('0,x'), /--modes 0,x/);
});

test('ablate --sweep ranks the planted head’s modes: the strong mode first, zero-σ modes do nothing', async () => {
  const imgs = await classFolders();
  const map = join(root, 'classes.txt');
  writeFileSync(map, 'fish\ncat\ndog\n');
  const out = join(root, 'sweep');
  await ablate([model, imgs, '--layer', '1', '--head', '0', '--sweep', '--labels', 'folders', '--label-map', map, '--batch', '3', '--threads', '1', '--out', out]);
  for (const f of ['ablate.json', 'ablate.csv', 'ablate.svg', 'ablate.png']) assert.ok(existsSync(join(out, f)), f);
  const j = JSON.parse(readFileSync(join(out, 'ablate.json'), 'utf8'));
  assert.equal(j.images, 4);
  assert.equal(j.sweep, 'modes');
  assert.equal(j.effects.length, DH);
  assert.equal(j.ranking[0], 'L1 H0 M0');
  assert.equal(j.ranking[1], 'L1 H0 M1');
  assert.equal(j.effects[0].output.labelled, 4);
  for (const e of j.effects.slice(2)) {
    assert.ok(e.attention.mean_abs_change < 1e-6, `M${e.modes[0]}: ${e.attention.mean_abs_change}`);
    assert.equal(e.output.top1_agreement, 1);
  }
  const csv = readFileSync(join(out, 'ablate.csv'), 'utf8').trim().split('\n');
  assert.equal(csv.length, DH + 1);
  assert.match(csv[0], /^layer,head,modes,sigma,cosine,frobenius_share,attention_mean_abs_change,attention_mean_kl,top1_agreement,mean_logit_kl/);
});

test('ablate --modes with a labels CSV, and the across-heads sweep', async () => {
  const imgs = await classFolders();
  const labels = join(root, 'labels.csv');
  writeFileSync(labels, 'file,class_index\ncat0.png,1\ncat1.png,1\ndog0.png,2\n');
  const out = join(root, 'one');
  await ablate([model, imgs, '--layer', '1', '--head', '0', '--modes', '0,1', '--labels', labels, '--threads', '1', '--out', out]);
  const j = JSON.parse(readFileSync(join(out, 'ablate.json'), 'utf8'));
  assert.deepEqual(j.effects[0].modes, [0, 1]);
  assert.ok(Math.abs(j.effects[0].frobenius_share - 1) < 1e-9);
  assert.equal(j.effects[0].output.labelled, 3);
  assert.ok(!existsSync(join(out, 'ablate.svg')));
  const out2 = join(root, 'heads');
  await ablate([model, imgs, '--sweep', '--threads', '1', '--out', out2]);
  const j2 = JSON.parse(readFileSync(join(out2, 'ablate.json'), 'utf8'));
  assert.equal(j2.sweep, 'heads');
  assert.equal(j2.effects.length, 4);
  assert.ok(existsSync(join(out2, 'ablate.png')));
});

test('ablate: user mistakes are one-line UserErrors', async () => {
  const imgs = await classFolders();
  const cases: [string[], RegExp][] = [
    [[model, imgs, '--out', join(root, 'x')], /--layer L --head H --modes/],
    [[model, imgs, '--layer', '0', '--head', '5', '--modes', '0', '--out', join(root, 'x')], /--head 5: .* has heads 0\.\.1/],
    [[model, imgs, '--layer', '0', '--head', '0', '--modes', '99', '--out', join(root, 'x')], /mode 99 is out of range/],
    [[model, imgs, '--sweep', '--modes', '0', '--top-modes', '2', '--out', join(root, 'x')], /--modes and --top-modes/],
    [[model, imgs, '--layer', '0', '--head', '0', '--top-modes', '2', '--out', join(root, 'x')], /--top-modes limits a --sweep/],
    [[model, imgs, '--layer', '1', '--head', '0', '--sweep', '--top-modes', '17', '--out', join(root, 'x')], /--top-modes 17: .* has 16 modes/],
    [[model, imgs, '--sweep', '--head', '0', '--out', join(root, 'x')], /needs --layer/],
    [[model, imgs, '--sweep', '--labels', 'folders', '--out', join(root, 'x')], /folder "cat".*--label-map/],
  ];
  for (const [args, re] of cases) await assert.rejects(ablate(args), (e: Error) => e.name === 'UserError' && re.test(e.message) && !e.message.includes('\n'), args.join(' '));
  const gpt = writeModel(join(root, 'gpt2'), 'hf-gpt2', makeLayoutWeights('hf-gpt2', { d: 16, heads: 2, layers: 1, seed: 2 })).path;
  await assert.rejects(ablate([gpt, imgs, '--layer', '0', '--head', '0', '--modes', '0', '--out', join(root, 'x')]), (e: Error) => e.name === 'UserError' && /vision transformer/.test(e.message));
});

test('ablate --help has an Example section', () => {
  assert.match(ablateCommand().helpInformation() + '', /ablate/);
  let help = '';
  const cmd = ablateCommand().exitOverride().configureOutput({ writeOut: (s) => (help += s) });
  assert.throws(() => cmd.parse(['--help'], { from: 'user' }));
  assert.match(help, /Example:\n\s+qkscope ablate /);
});

test('ablate: a corrupt image among good ones is skipped and reported; progress lines appear in a pipe; --top-modes limits the sweep', async () => {
  const dir = join(root, 'mixed');
  mkdirSync(dir, { recursive: true });
  for (let k = 0; k < 3; k++) {
    const data = Buffer.alloc(16 * 16 * 3);
    for (let j = 0; j < data.length; j++) data[j] = (j * (3 + k * 7) + k * 50) % 256;
    await sharp(data, { raw: { width: 16, height: 16, channels: 3 } }).png().toFile(join(dir, `good${k}.png`));
  }
  writeFileSync(join(dir, 'broken.png'), Buffer.from('\x89PNG\r\n\x1a\nthis is not a png'));
  const out = join(root, 'mixed-out');
  const { stdout, stderr } = await ablate([model, dir, '--layer', '1', '--head', '0', '--sweep', '--top-modes', '3', '--batch', '2', '--threads', '1', '--progress-every', '1', '--out', out]);
  const j = JSON.parse(readFileSync(join(out, 'ablate.json'), 'utf8'));
  assert.equal(j.images, 3);
  assert.equal(j.skipped.length, 1);
  assert.match(j.skipped[0].path, /broken\.png$/);
  assert.ok(j.skipped[0].reason.length > 0);
  assert.deepEqual(j.effects.map((e: { modes: number[] }) => e.modes[0]), [0, 1, 2]);
  assert.equal(j.ranking[0], 'L1 H0 M0');
  // The standard manifest header.
  assert.deepEqual(j.tool.name, 'qkscope');
  assert.equal(j.command, 'ablate');
  assert.equal(j.model.layers, 2);
  assert.ok(j.files['ablate.csv'] && j.files['ablate.svg/.png']);
  assert.equal(j.options.batch, 2);
  assert.equal(j.inputs.count, 4);
  // Summary and the skipped list on stdout; progress lines (4 images × (1 pass + 3 ablations) = 16 runs) on stderr.
  assert.match(stdout, /3 ablations over 3 images \(1 skipped\)/);
  assert.match(stdout, /broken\.png: /);
  assert.doesNotMatch(stderr, /broken\.png/, 'skips are listed once, at the end (stdout), and counted in the progress lines');
  const lines = stderr.split('\n').filter((l) => /^ablate .*: \d+\/16 runs/.test(l));
  assert.ok(lines.length >= 4, `progress lines:\n${stderr}`);
  assert.match(lines.at(-1)!, /16\/16 runs \(100\.0 %\).*1 skipped/);
});
