import type { Command } from 'commander';

/** Every sub-command, one factory per file. Add new commands here. */
export const commands: Array<() => Command> = [];
