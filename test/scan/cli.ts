/**
 * Runs the scan commands the way `qkscope` does (UserErrors → one line, exit code), with only
 * the commands this suite tests; spawnable as a child process (SIGKILL tests):
 *   node dist/test/scan/cli.js scan <model> <images> --out RUN ...
 */
import { Command, CommanderError } from 'commander';
import { pathToFileURL } from 'node:url';
import { UserError } from '../../src/errors.js';
import { scanCommand } from '../../src/cli/scan.js';
import { topCommand } from '../../src/cli/top.js';
import { mergeCommand } from '../../src/cli/merge.js';
import { figureCommand } from '../../src/cli/figure.js';

export async function runCli(argv: string[]): Promise<number> {
  const program = new Command('qkscope').exitOverride();
  for (const make of [scanCommand, topCommand, mergeCommand, figureCommand]) program.addCommand(make());
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode;
    if (e instanceof UserError) {
      process.stderr.write(`qkscope: ${e.message}\n`);
      return e.exitCode;
    }
    throw e;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runCli(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      process.stderr.write(`qkscope: internal error: ${e instanceof Error ? e.stack : e}\n`);
      process.exitCode = 1;
    },
  );
}
