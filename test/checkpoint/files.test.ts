// Weights, configs and indexes must be regular files: a directory gave EISDIR stack traces and a
// FIFO hung the process (a blocking open waits for a writer). Paths are stat'ed before opening
// and opened non-blocking; anything else is one line. Timeouts turn a hang into a failure.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openModel } from '../../src/checkpoint/open.js';
import { SafetensorsFile, writeSafetensors } from '../../src/checkpoint/safetensors.js';
import { sniffFile } from '../../src/checkpoint/sniff.js';
import { TorchCheckpoint } from '../../src/checkpoint/torch.js';
import { ramp, rejectsUser, tempDir } from './tmp.js';

const root = tempDir('files');
const T = { timeout: 10_000 };
const W = { w: { dtype: 'F32' as const, shape: [2, 2], data: ramp(4) } };

function folder(name: string): string {
  const d = join(root, name);
  mkdirSync(d, { recursive: true });
  return d;
}
function fifo(p: string): string {
  execFileSync('mkfifo', [p]);
  return p;
}

test('a FIFO given as the weights file is refused at once, never opened for reading', T, async () => {
  const d = folder('fifo-direct');
  const p = fifo(join(d, 'weights.safetensors'));
  await rejectsUser(() => openModel(p), p, /is a FIFO \(named pipe\), not a weights file; give a regular weights file/);
  await rejectsUser(() => SafetensorsFile.open(p), p, /FIFO/);
  await rejectsUser(() => TorchCheckpoint.open(p), p, /FIFO/);
  await rejectsUser(async () => sniffFile(p), p, /FIFO/);
});

test('FIFOs inside a model directory: weights, index, config', T, async () => {
  const a = folder('fifo-weights');
  fifo(join(a, 'model.safetensors'));
  await rejectsUser(() => openModel(a), join(a, 'model.safetensors'), /FIFO/);

  const b = folder('fifo-index');
  fifo(join(b, 'model.safetensors.index.json'));
  await rejectsUser(() => openModel(b), join(b, 'model.safetensors.index.json'), /is a FIFO \(named pipe\), not a safetensors index/);

  const c = folder('fifo-config');
  writeSafetensors(join(c, 'model.safetensors'), W);
  fifo(join(c, 'config.json'));
  await rejectsUser(() => openModel(c), join(c, 'config.json'), /is a FIFO \(named pipe\), not a JSON config/);
});

test('a weights file that is a directory is refused with a hint, not EISDIR', T, async () => {
  for (const name of ['model.safetensors', 'pytorch_model.bin']) {
    const d = folder(`dir-${name}`);
    mkdirSync(join(d, name));
    await rejectsUser(() => openModel(d), join(d, name), /is a directory, not a weights file; give the weights file inside it, or the model directory itself/);
  }
  const d = folder('dir-direct');
  await rejectsUser(() => SafetensorsFile.open(d), d, /is a directory/);
  await rejectsUser(() => TorchCheckpoint.open(d), d, /is a directory/);
  const cfg = folder('dir-config');
  writeSafetensors(join(cfg, 'model.safetensors'), W);
  mkdirSync(join(cfg, 'config.json'));
  await rejectsUser(() => openModel(cfg), join(cfg, 'config.json'), /is a directory, not a JSON config/);
});

test('a device and an oversized config are refused without reading them', T, async () => {
  await rejectsUser(() => openModel('/dev/zero'), '/dev/zero', /is a device, not a weights file/);
  const d = folder('big-config');
  writeSafetensors(join(d, 'model.safetensors'), W);
  writeFileSync(join(d, 'config.json'), '{}');
  truncateSync(join(d, 'config.json'), 17 * 2 ** 20); // sparse: nothing is really written
  await rejectsUser(() => openModel(d), join(d, 'config.json'), /is 17825792 bytes, over the 16777216-byte limit for a JSON config/);
  // A regular model still opens.
  const ok = folder('ok');
  writeSafetensors(join(ok, 'model.safetensors'), W);
  const m = await openModel(ok);
  assert.deepEqual(m.source.names(), ['w']);
  await m.close();
});
