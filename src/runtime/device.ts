/**
 * Execution-provider choice. CPU is always there. CUDA needs onnxruntime-node's CUDA provider
 * libraries, which npm does not download here: this project's .npmrc sets
 * `onnxruntime-node-install=skip`. To install them on a Linux x64 machine with CUDA 12 and
 * cuDNN 9:
 *
 *     ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node
 *
 * (onnxruntime-node's script/install.js reads ONNXRUNTIME_NODE_INSTALL first, then the npm
 * config `onnxruntime-node-install`; the older ONNXRUNTIME_NODE_INSTALL_CUDA=v12 is only
 * consulted when neither is set, so it does not override the .npmrc's `skip`.) The script
 * downloads Microsoft.ML.OnnxRuntime.Gpu.Linux from NuGet and puts
 * libonnxruntime_providers_{cuda,shared}.so next to the binding.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { UserError } from '../errors.js';

export type Device = 'cpu' | 'cuda';

export const CUDA_INSTALL_HINT = 'ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node';

/** Folder holding onnxruntime-node's native binding for this platform. */
export function ortBinDir(): string {
  const require = createRequire(import.meta.url);
  const main = require.resolve('onnxruntime-node');
  return join(dirname(main), '..', 'bin', 'napi-v6', process.platform, process.arch);
}

/** Whether the CUDA execution provider's libraries are installed. */
export function cudaProviderInstalled(): boolean {
  const lib = process.platform === 'win32' ? 'onnxruntime_providers_cuda.dll' : 'libonnxruntime_providers_cuda.so';
  return existsSync(join(ortBinDir(), lib));
}

export function parseDevice(s: string | undefined, flag = '--device'): Device {
  const v = (s ?? 'cpu').toLowerCase();
  if (v === 'cpu' || v === 'cuda') return v;
  throw new UserError(`${flag} ${s}: unknown device; use cpu or cuda`);
}

/** Execution providers for a device; throws a UserError when CUDA is asked for but missing. */
export function executionProviders(device: Device): string[] {
  if (device === 'cpu') return ['cpu'];
  if (!cudaProviderInstalled()) {
    throw new UserError(
      `--device cuda: onnxruntime-node's CUDA provider is not installed (no libonnxruntime_providers_cuda.so in ${ortBinDir()}); install it with \`${CUDA_INSTALL_HINT}\` or use --device cpu`,
    );
  }
  return ['cuda', 'cpu'];
}
