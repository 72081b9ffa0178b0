import { Command, Option } from 'commander';
import { UserError } from '../errors.js';
import { parseDevice } from '../runtime/device.js';
import { DEFAULT_MAX_PIXELS } from '../images/decode.js';
import { addImageRunOptions, type ImageRunFlags } from './context.js';
import { positiveInt } from './model-options.js';
import { DEFAULT_CONCURRENT_UPLOADS, DEFAULT_UPLOAD_TIMEOUT_MS, startServer } from '../server/server.js';

interface ServeFlags extends ImageRunFlags {
  port: number;
  host: string;
  images: string[];
  allowImages: string[];
  allowScanImages?: boolean;
  maxUploadMb: number;
  offline?: boolean;
  log?: boolean;
}

function port(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new UserError(`--port ${v}: expected 0..65535 (0 picks a free port)`);
  return n;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

export function serveCommand(): Command {
  const cmd = new Command('serve')
    .description('browse svd runs (and scans) in a web page: models, heads, modes, live image maps and logit decompositions')
    .argument('<runs_dir>', 'folder holding run directories (svd --out / scan --out folders, searched 3 levels deep)')
    .addOption(new Option('--port <n>', 'port (0 picks a free one)').default(8080).argParser(port))
    .option('--host <addr>', 'address to bind; the default is loopback only', '127.0.0.1')
    .addOption(new Option('--images <dir>', 'a folder of images to pick from in the Image view (repeatable); the server may read the images in it').argParser(collect).default([], 'none'))
    .addOption(new Option('--allow-images <dir>', "a folder the server may read images from (repeatable): where a scan's images are, when they are outside RUNS_DIR and --images").argParser(collect).default([], 'none'))
    .option('--allow-scan-images', 'read every image the scans under RUNS_DIR recorded, wherever it is')
    .addOption(new Option('--max-upload-mb <n>', 'largest image upload accepted, in MB').default(16).argParser(positiveInt('--max-upload-mb')))
    .option('--offline', 'open hub models from the local Hugging Face cache only (also HF_HUB_OFFLINE=1)')
    .option('--log', 'print one line per request (and per client that went away mid-request)');
  addImageRunOptions(cmd);
  cmd.addHelpText(
    'after',
    `
Runs are made with \`qkscope svd MODEL --out RUNS_DIR/NAME\` (weights only) or
\`qkscope scan MODEL IMAGES --out RUNS_DIR/NAME\` (adds the top images of every mode).
The image views run each run's model (summary.json model.input), loaded once, the first time a
view needs it; --batch is the Mode view's pass size, --max-pixels (default ${DEFAULT_MAX_PIXELS / 1e6} MP) applies to
uploads and images on disk alike. The server reads image files only inside RUNS_DIR, the --images
and --allow-images folders (a scan of images elsewhere needs one of them, or --allow-scan-images).
Uploads: at most ${DEFAULT_CONCURRENT_UPLOADS} at once, each within ${DEFAULT_UPLOAD_TIMEOUT_MS / 1000} s; only pages of this server may upload
(requests without an Origin header, e.g. curl, are fine). The JSON API is in docs/API.md.

Example:
  qkscope serve runs/ --images ../shared/images/imagenet-sample
  qkscope serve runs/ --allow-images /data/imagenet/val --port 0
`,
  );
  cmd.action(async (runsDir: string, flags: ServeFlags) => {
    let s;
    try {
      s = await startServer({
        runsDir,
        host: flags.host,
        port: flags.port,
        imagesDirs: flags.images,
        allowImages: flags.allowImages,
        allowScanImages: flags.allowScanImages,
        maxUploadBytes: flags.maxUploadMb * (1 << 20),
        offline: flags.offline,
        batch: flags.batch,
        device: parseDevice(flags.device),
        threads: flags.threads,
        maxPixels: flags.maxPixels,
        log: flags.log ? (l) => process.stderr.write(l + '\n') : undefined,
        warn: (l) => process.stderr.write(l + '\n'),
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
    const hint = runs === 0 ? ` (none yet: make one with \`qkscope svd MODEL --out ${runsDir}/NAME\`; it appears without a restart)` : '';
    process.stdout.write(`qkscope serve: ${runs} run${runs === 1 ? '' : 's'} under ${runsDir}${hint}\n${s.url}\n`);
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
