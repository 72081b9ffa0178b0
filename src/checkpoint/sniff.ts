import { readSync, closeSync } from 'node:fs';
import { UserError } from '../errors.js';
import { openRegularSync } from './files.js';

/** What the first bytes of a weights file say it is, whatever its extension claims. */
export type FileKind =
  | 'safetensors'
  | 'zip' // torch.save since 1.6 (and TorchScript archives)
  | 'torch-legacy' // torch.save before 1.6: a pickled magic number, then pickles and raw storages
  | 'tar' // torch.save from the 0.1-0.3 era
  | 'pickle' // a bare pickle (not written by torch.save)
  | 'lfs-pointer' // a Git LFS pointer file: the repository was cloned without `git lfs`
  | 'empty'
  | 'unknown';

// PROTO 2, LONG1 of 10 bytes: torch's legacy MAGIC_NUMBER 0x1950a86a20f9469cfc6c.
const LEGACY_MAGIC = Buffer.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]);

export function classify(head: Buffer, size: number): FileKind {
  if (size === 0) return 'empty';
  if (head.subarray(0, 4).toString('latin1') === 'PK\x03\x04') return 'zip';
  if (head.toString('latin1').startsWith('version https://git-lfs')) return 'lfs-pointer';
  if (head.length >= LEGACY_MAGIC.length && head.subarray(0, LEGACY_MAGIC.length).equals(LEGACY_MAGIC)) return 'torch-legacy';
  if (head.length >= 262 && head.subarray(257, 262).toString('latin1') === 'ustar') return 'tar';
  if (head.length >= 9) {
    const n = Number(head.readBigUInt64LE(0));
    if (n > 1 && 8 + n <= size && head[8] === 0x7b /* { */) return 'safetensors';
  }
  if (head[0] === 0x80 && head[1] >= 2 && head[1] <= 5) return 'pickle';
  return 'unknown';
}

/** Reads the first bytes of a file and classifies it; a missing or non-regular file is a UserError. */
export function sniffFile(path: string): FileKind {
  const { fd, size } = openRegularSync(path);
  try {
    const head = Buffer.alloc(Math.min(512, size));
    readSync(fd, head, 0, head.length, 0);
    return classify(head, size);
  } finally {
    closeSync(fd);
  }
}

export function lfsPointerError(path: string): UserError {
  return new UserError(`${path}: is a Git LFS pointer, not the weights; run \`git lfs pull\` in the clone (or download with huggingface-cli)`);
}

export function legacyTorchError(path: string): UserError {
  return new UserError(
    `${path}: saved in PyTorch's legacy (pre-1.6) format, which is not supported; re-save it with a current torch: torch.save(torch.load(p, map_location='cpu', weights_only=False), p2)`,
  );
}
