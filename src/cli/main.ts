import { Command, CommanderError } from 'commander';
import { UserError } from '../errors.js';
import { commandsFor } from './commands.js';
import { VERSION } from '../version.js';

/** The `qkscope` entry point: one sub-command per file in src/cli/, registered in commands.ts. */
export async function main(argv: string[]): Promise<number> {
  const program = new Command('qkscope')
    .description('Dissect how vision transformers attend: singular modes of query-key interactions.')
    .version(VERSION)
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  try {
    for (const make of await commandsFor(argv)) program.addCommand(make());
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode; // commander already printed help/error
    if (e instanceof UserError) {
      process.stderr.write(`qkscope: ${e.message}\n`);
      return e.exitCode;
    }
    throw e;
  }
}

