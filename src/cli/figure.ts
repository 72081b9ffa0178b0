import { Command } from 'commander';

export function figureCommand(): Command {
  return new Command('figure').description('figures from runs');
}
