/**
 * THE table of hostile inputs (`npm run test:hostile`). Each case builds its input under a fresh
 * directory and returns the CLI arguments; the suite (suite.ts) runs the real CLI under memory
 * and time limits and asserts a clean refusal: exit code 2 (or `exitCode`), exactly ONE stderr
 * line starting with `qkscope: ` that matches `expect`, no "internal error", no stack trace, and
 * a peak RSS under `maxRssMb`.
 *
 * To add a case (images, server, ...): append an entry with a unique name and an `area`; put
 * larger input generators in a file beside this one (as checkpoint-inputs.ts does).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeNpy } from '../../src/io/npy.js';
import type { CliLimits, CliRun } from './run-cli.js';
import { IMAGE_CASES } from './image-inputs.js';
import {
  badShards, copyBomb, deepNesting, deflateBomb, dictDag, editSafetensors, fifo, hugeInteger, K0, MALICIOUS_PICKLES, negativeStride, objectBomb,
  maliciousValidBin, poisonModel, Q0, selfReferencingDict, torchFile, validModel, viewPastStorage, weightsDirectory,
} from './checkpoint-inputs.js';

export interface HostileCase {
  /** Unique; used as the test name and in the results table. */
  name: string;
  area: 'checkpoint' | 'config' | 'image' | 'server';
  /** What the red team saw before the fix (for the report; not checked). */
  before?: string;
  /** Writes the input under `dir` (empty, per case) and returns the CLI arguments. */
  setup(dir: string): string[] | Promise<string[]>;
  /** The one stderr line (after `qkscope: `) must match. */
  expect: RegExp;
  /** Default 2 (a UserError). */
  exitCode?: number;
  /** Default 600. */
  maxRssMb?: number;
  /**
   * Per-case limits over DEFAULT_LIMITS (30 s, 1 GB heap, 4 GB address space). A case whose run
   * gets as far as the WASM linear algebra or onnxruntime needs `addressSpaceMb: 16384`: V8
   * reserves ~10 GB of virtual space per WebAssembly memory (an RSS of a few MB).
   */
  limits?: Partial<CliLimits>;
  /**
   * Replaces the one-line check for cases whose right answer is not a refusal (an unusable image
   * among good ones is skipped and reported, exit 0). The RSS bound and "no internal error, no
   * stack trace" are checked in every case.
   */
  check?: (r: CliRun, dir: string) => void;
}

const GiB = 2 ** 30;
const svd = (dir: string, input: string, ...more: string[]) => ['svd', input, '--out', join(dir, 'out'), ...more];

export const CASES: HostileCase[] = [
  // --- pickles: bombs and bounds ---------------------------------------------------------------
  {
    name: 'pickle: self-referencing dict',
    area: 'checkpoint',
    before: '88 s, then a 4 GB V8 out-of-memory abort',
    setup: (d) => svd(d, selfReferencingDict(d)),
    // Loads (the cycle is one reference); holds no model the adapters know.
    expect: /selfref\.bin/,
  },
  {
    name: 'pickle: dict DAG, 60 levels each referencing the previous twice',
    area: 'checkpoint',
    before: 'hung past 90 s',
    setup: (d) => svd(d, dictDag(d, 60)),
    expect: /dag\.bin/,
  },
  { name: 'pickle: 100k-deep nesting', area: 'checkpoint', before: 'internal error (stack trace)', setup: (d) => svd(d, deepNesting(d)), expect: /deep\.bin: refused .*depth limit/ },
  { name: 'pickle: 2.1M objects in 4 MB', area: 'checkpoint', setup: (d) => svd(d, objectBomb(d)), expect: /objects\.bin: refused .*object limit/ },
  { name: 'pickle: 50M copied elements from 40 KB', area: 'checkpoint', setup: (d) => svd(d, copyBomb(d)), expect: /copies\.bin: refused .*work limit/ },
  { name: 'pickle: 16 MB integer', area: 'checkpoint', setup: (d) => svd(d, hugeInteger(d)), expect: /hugeint\.bin: refused .*integer limit/ },
  { name: 'tensor: negative stride', area: 'checkpoint', before: 'internal error (stack trace)', setup: (d) => svd(d, negativeStride(d)), expect: /negstride\.bin: .*negative stride/ },
  { name: 'tensor: view past its storage', area: 'checkpoint', setup: (d) => svd(d, viewPastStorage(d)), expect: /pastview\.bin: .*reaches element 3000003 but its storage has 16 elements/ },

  // --- deflate bombs ------------------------------------------------------------------------------
  {
    name: 'zip: data.pkl deflating to 2 GiB, declared 2 GiB',
    area: 'checkpoint',
    before: '4.2 GB RSS',
    setup: (d) => svd(d, deflateBomb(d, 'bomb-honest.bin', 2 * GiB, 2 * GiB)),
    expect: /bomb-honest\.bin: entry .*data\.pkl would be 2147483648 bytes, over the 67108864-byte limit/,
  },
  {
    name: 'zip: data.pkl deflating to 2 GiB, declared 4 MiB',
    area: 'checkpoint',
    before: '4.2 GB RSS',
    setup: (d) => svd(d, deflateBomb(d, 'bomb-liar.bin', 2 * GiB, 4 * 2 ** 20)),
    expect: /bomb-liar\.bin: entry .*data\.pkl is damaged \(it inflates to more than the 4194304 bytes the zip directory says\)/,
  },
  {
    name: 'zip: data.pkl deflating to 2 GiB, declared 100 bytes',
    area: 'checkpoint',
    setup: (d) => svd(d, deflateBomb(d, 'bomb-tiny.bin', 2 * GiB, 100)),
    expect: /bomb-tiny\.bin: entry .*data\.pkl is damaged \(\d+ compressed bytes cannot hold the 100 bytes/,
  },

  // --- globals ------------------------------------------------------------------------------------
  ...Object.entries(MALICIOUS_PICKLES).map(([global, parts]): HostileCase => ({
    name: `globals: ${global}`,
    area: 'checkpoint',
    before: global === 'os._wrap_close' ? 'refused only as "no tensors"' : 'accepted, exit 0 or an unrelated error',
    setup: (d) => svd(d, torchFile(d, 'evil.bin', parts)),
    expect: new RegExp(`evil\\.bin: refused to load the pickled data .*${global.replace(/\./g, '\\.')}`),
  })),

  {
    name: 'globals: os.system inside a loadable pytorch_model.bin',
    area: 'checkpoint',
    before: 'exit 0: svd ran (the call was ignored, the file accepted)',
    setup: async (d) => svd(d, await maliciousValidBin(d)),
    expect: /pytorch_model\.bin: refused to load the pickled data .*os\.system/,
  },
  {
    name: 'globals: an unknown function inside a loadable pytorch_model.bin',
    area: 'checkpoint',
    before: 'exit 0',
    setup: async (d) => svd(d, await maliciousValidBin(d, ['mypkg.hooks', 'install'])),
    expect: /pytorch_model\.bin: refused .*calls mypkg\.hooks\.install, which is not on the allow-list/,
  },

  // --- files --------------------------------------------------------------------------------------
  { name: 'files: model.safetensors is a directory', area: 'checkpoint', before: 'EISDIR stack trace', setup: (d) => svd(d, weightsDirectory(d)), expect: /model\.safetensors: is a directory, not a weights file/ },
  { name: 'files: pytorch_model.bin is a directory', area: 'checkpoint', before: 'EISDIR stack trace', setup: (d) => svd(d, weightsDirectory(d, 'pytorch_model.bin')), expect: /pytorch_model\.bin: is a directory/ },
  { name: 'files: weights path is a FIFO', area: 'checkpoint', before: 'hung', setup: (d) => svd(d, fifo(join(d, 'model.safetensors'))), expect: /model\.safetensors: is a FIFO \(named pipe\)/, limits: { timeoutMs: 15_000 } },
  {
    name: 'files: config.json is a FIFO',
    area: 'config',
    setup: (d) => {
      const m = validModel(d, { noConfig: true });
      fifo(join(m, 'config.json'));
      return svd(d, m);
    },
    expect: /config\.json: is a FIFO \(named pipe\), not a JSON config/,
    limits: { timeoutMs: 15_000 },
  },
  { name: 'files: /dev/zero as weights', area: 'checkpoint', setup: (d) => svd(d, '/dev/zero'), expect: /\/dev\/zero: is a device/ },

  // --- safetensors --------------------------------------------------------------------------------
  {
    name: 'safetensors: K offsets overlap Q',
    area: 'checkpoint',
    before: 'accepted: K read Q\'s bytes (cosine 1.000)',
    setup: (d) => {
      const m = validModel(d);
      editSafetensors(join(m, 'model.safetensors'), (h) => void (h[K0].data_offsets = [...h[Q0].data_offsets]));
      return svd(d, m);
    },
    expect: /model\.safetensors: not a valid safetensors file \(.*overlaps/,
  },
  {
    name: 'safetensors: gap and trailing bytes',
    area: 'checkpoint',
    setup: (d) => {
      const m = validModel(d);
      editSafetensors(join(m, 'model.safetensors'), () => undefined, 64);
      return svd(d, m);
    },
    expect: /not a valid safetensors file \(the tensors cover \d+ bytes of data but the file holds \d+/,
  },
  {
    name: 'safetensors: unknown dtype',
    area: 'checkpoint',
    setup: (d) => {
      const m = validModel(d);
      editSafetensors(join(m, 'model.safetensors'), (h) => void (h[Q0].dtype = 'F33'));
      return svd(d, m);
    },
    expect: /unknown dtype "F33"/,
  },
  {
    name: 'safetensors: header length beyond the file',
    area: 'checkpoint',
    setup: (d) => {
      const p = join(d, 'liar.safetensors');
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(2n ** 62n);
      writeFileSync(p, Buffer.concat([len, Buffer.from('{"a": 1}')]));
      return svd(d, p);
    },
    expect: /liar\.safetensors: .*header length/,
  },
  { name: 'sharded: index lists a missing shard', area: 'checkpoint', setup: (d) => svd(d, badShards(d, 'missing-shard')), expect: /shard listed in .*index\.json is missing/ },
  { name: 'sharded: tensor not in its shard', area: 'checkpoint', setup: (d) => svd(d, badShards(d, 'wrong-shard')), expect: /tensor encoder\.layer\.0\.attention\.attention\.key\.weight is not in this shard although .*index\.json says so/ },

  // --- non-finite weights -------------------------------------------------------------------------
  { name: 'weights: NaN in q (svd)', area: 'checkpoint', before: 'exit 0, NaN written', setup: (d) => svd(d, poisonModel(d, NaN)), expect: /tensor encoder\.layer\.0\.attention\.attention\.query\.weight has 3 non-finite values .*--allow-nonfinite/ },
  {
    name: 'weights: +Inf in q (embed)',
    area: 'checkpoint',
    before: 'exit 0, NaN written',
    setup: (d) => {
      const px = join(d, 'px.npy');
      writeNpy(px, '<f4', [1, 3, 16, 16], new Float32Array(768).fill(0.1));
      mkdirSync(join(d, 'out'));
      return ['embed', poisonModel(d, Infinity, 1), '--pixels', px, '--out', join(d, 'out', 'e')];
    },
    expect: /query\.weight has 1 non-finite value /,
  },

  ...IMAGE_CASES,
];
