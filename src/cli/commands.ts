import type { Command } from 'commander';

/**
 * Every sub-command: its name and a loader for its factory. Loaded lazily so that a command
 * pays only for its own dependencies at start-up (onnxruntime, sharp, SQLite, Plot are heavy).
 * Add new commands here.
 */
export const COMMANDS: Record<string, () => Promise<() => Command>> = {
  svd: async () => (await import('./svd.js')).svdCommand,
  compare: async () => (await import('./compare.js')).compareCommand,
  embed: async () => (await import('./embed.js')).embedCommand,
  scan: async () => (await import('./scan.js')).scanCommand,
  top: async () => (await import('./top.js')).topCommand,
  merge: async () => (await import('./merge.js')).mergeCommand,
  figure: async () => (await import('./figure.js')).figureCommand,
  serve: async () => (await import('./serve.js')).serveCommand,
  contributions: async () => (await import('./contributions.js')).contributionsCommand,
  anisotropy: async () => (await import('./anisotropy.js')).anisotropyCommand,
  objects: async () => (await import('./objects.js')).objectsCommand,
  pairing: async () => (await import('./pairing.js')).pairingCommand,
  ablate: async () => (await import('./ablate.js')).ablateCommand,
  'position-content': async () => (await import('./position-content.js')).positionContentCommand,
  'export-onnx': async () => (await import('./export-onnx.js')).exportOnnxCommand,
  export: async () => (await import('./export.js')).exportCommand,
  paper: async () => (await import('./paper.js')).paperCommand,
};

/** The factories to register for this argv: only the named command, or all (help, typos). */
export async function commandsFor(argv: string[]): Promise<Array<() => Command>> {
  const first = argv.find((a) => !a.startsWith('-'));
  if (first && first !== 'help' && Object.hasOwn(COMMANDS, first)) return [await COMMANDS[first]()];
  return Promise.all(Object.values(COMMANDS).map((load) => load()));
}
