import type { Command } from 'commander';
import { svdCommand } from './svd.js';
import { compareCommand } from './compare.js';
import { embedCommand } from './embed.js';
import { serveCommand } from './serve.js';
import { contributionsCommand } from './contributions.js';
import { anisotropyCommand } from './anisotropy.js';
import { objectsCommand } from './objects.js';
import { pairingCommand } from './pairing.js';
import { ablateCommand } from './ablate.js';
import { positionContentCommand } from './position-content.js';

/** Every sub-command, one factory per file. Add new commands here. */
export const commands: Array<() => Command> = [
  svdCommand,
  compareCommand,
  embedCommand,
  serveCommand,
  contributionsCommand,
  anisotropyCommand,
  objectsCommand,
  pairingCommand,
  ablateCommand,
  positionContentCommand,
];
