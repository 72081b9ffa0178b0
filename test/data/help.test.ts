import { test } from 'node:test';
import assert from 'node:assert/strict';
import { contributionsCommand } from '../../src/cli/contributions.js';
import { anisotropyCommand } from '../../src/cli/anisotropy.js';
import { objectsCommand } from '../../src/cli/objects.js';
import { pairingCommand } from '../../src/cli/pairing.js';

test('every token-level command has --help with an Example section', () => {
  for (const make of [contributionsCommand, anisotropyCommand, objectsCommand, pairingCommand]) {
    const cmd = make();
    let text = '';
    cmd.configureOutput({ writeOut: (s) => (text += s), writeErr: (s) => (text += s) });
    cmd.outputHelp();
    assert.match(text, /\nExample:\n  qkscope /, cmd.name());
  }
});
