import { Command, Option } from 'commander';
import { existsSync, statSync } from 'node:fs';
import { UserError } from '../errors.js';
import { positiveInt } from './model-options.js';
import { startServer } from '../server/server.js';

interface ServeFlags {
  port: number;
  host: string;
  images?: string;
  maxUploadMb: number;
  offline?: boolean;
  log?: boolean;
}

function port(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new UserError(`--port ${v}: expected 0..65535 (0 picks a free port)`);
  return n;
}

export function serveCommand(): Command {
  const cmd = new Command('serve')
    .description('browse svd runs (and scans) in a web page: models, heads, modes, live image maps and logit decompositions')
    .argument('<runs_dir>', 'folder holding run directories (svd --out folders, searched 3 levels deep)')
    .addOption(new Option('--port <n>', 'port (0 picks a free one)').default(8080).argParser(port))
    .option('--host <addr>', 'address to bind; the default is loopback only', '127.0.0.1')
    .option('--images <dir>', 'a folder of images to pick from in the Image view (also used for the anisotropy control)')
    .addOption(new Option('--max-upload-mb <n>', 'largest image upload accepted, in MB').default(16).argParser(positiveInt('--max-upload-mb')))
    .option('--offline', 'open hub models from the local Hugging Face cache only (also HF_HUB_OFFLINE=1)')
    .option('--log', 'print one line per request')
    .addHelpText(
      'after',
      '\nThe JSON API is documented in docs/API.md. The image views run each run\'s model (summary.json model.input),\nloaded once, the first time a view needs it.\n\nExample:\n  qkscope serve runs/ --images ../shared/images/imagenet-sample\n',
    );
  cmd.action(async (runsDir: string, flags: ServeFlags) => {
    if (!existsSync(runsDir) || !statSync(runsDir).isDirectory()) throw new UserError(`${runsDir}: not a folder; give the folder holding your svd run directories`);
    let s;
    try {
      s = await startServer({
        runsDir,
        host: flags.host,
        port: flags.port,
        imagesDir: flags.images,
        maxUploadBytes: flags.maxUploadMb * (1 << 20),
        offline: flags.offline,
        log: flags.log ? (l) => process.stderr.write(l + '\n') : (l) => (l.startsWith('error:') ? process.stderr.write(l + '\n') : undefined),
      });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EADDRINUSE') throw new UserError(`port ${flags.port} on ${flags.host} is in use; pick another with --port (0 picks a free one)`);
      if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') throw new UserError(`--host ${flags.host}: cannot bind this address`);
      if (code === 'EACCES') throw new UserError(`port ${flags.port}: permission denied; use a port above 1023`);
      throw e;
    }
    const runs = s.api.runs.list().length;
    if (!['127.0.0.1', 'localhost', '::1'].includes(flags.host)) {
      process.stderr.write(`qkscope serve: warning: listening on ${flags.host}, reachable from other machines; there is no authentication\n`);
    }
    process.stdout.write(`qkscope serve: ${runs} run${runs === 1 ? '' : 's'} under ${runsDir}\n${s.url}\n`);
    await new Promise<void>((resolveStop) => {
      const stop = () => {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        void s.close().then(resolveStop);
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
  });
  return cmd;
}
