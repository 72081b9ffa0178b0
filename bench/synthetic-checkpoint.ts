import { openSync, writeSync, closeSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Writes a full-size timm ViT checkpoint (every tensor, random weights) tensor by tensor, so a
 * 2.5 GB ViT-H/14 is generated without holding it in memory. Benchmarks only.
 */
export interface VitSize {
  arch: string;
  layers: number;
  width: number;
  heads: number;
  patch: number;
  image: number;
  mlp: number;
  classes: number;
}

export const VIT_B16: VitSize = { arch: 'vit_base_patch16_224', layers: 12, width: 768, heads: 12, patch: 16, image: 224, mlp: 3072, classes: 1000 };
export const VIT_H14: VitSize = { arch: 'vit_huge_patch14_224', layers: 32, width: 1280, heads: 16, patch: 14, image: 224, mlp: 5120, classes: 1000 };

function tensors(s: VitSize): [string, number[]][] {
  const d = s.width;
  const n = (s.image / s.patch) ** 2 + 1;
  const t: [string, number[]][] = [
    ['cls_token', [1, 1, d]],
    ['pos_embed', [1, n, d]],
    ['patch_embed.proj.weight', [d, 3, s.patch, s.patch]],
    ['patch_embed.proj.bias', [d]],
  ];
  for (let l = 0; l < s.layers; l++) {
    const b = `blocks.${l}.`;
    t.push(
      [b + 'norm1.weight', [d]], [b + 'norm1.bias', [d]],
      [b + 'attn.qkv.weight', [3 * d, d]], [b + 'attn.qkv.bias', [3 * d]],
      [b + 'attn.proj.weight', [d, d]], [b + 'attn.proj.bias', [d]],
      [b + 'norm2.weight', [d]], [b + 'norm2.bias', [d]],
      [b + 'mlp.fc1.weight', [s.mlp, d]], [b + 'mlp.fc1.bias', [s.mlp]],
      [b + 'mlp.fc2.weight', [d, s.mlp]], [b + 'mlp.fc2.bias', [d]],
    );
  }
  t.push(['norm.weight', [d]], ['norm.bias', [d]], ['head.weight', [s.classes, d]], ['head.bias', [s.classes]]);
  return t;
}

/** Writes `dir/config.json` + `dir/model.safetensors`; returns the q/k bytes and the file size. */
export function writeSyntheticTimm(dir: string, s: VitSize, seed = 1): { qkBytes: number; fileBytes: number } {
  mkdirSync(dir, { recursive: true });
  const list = tensors(s);
  const header: Record<string, unknown> = {};
  let off = 0;
  for (const [name, shape] of list) {
    const bytes = shape.reduce((a, b) => a * b, 1) * 4;
    header[name] = { dtype: 'F32', shape, data_offsets: [off, off + bytes] };
    off += bytes;
  }
  let json = JSON.stringify(header);
  while ((8 + json.length) % 8) json += ' ';
  const fd = openSync(join(dir, 'model.safetensors'), 'w');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeSync(fd, len);
  writeSync(fd, Buffer.from(json));
  let x = seed >>> 0 || 1;
  for (const [name, shape] of list) {
    const count = shape.reduce((a, b) => a * b, 1);
    const a = new Float32Array(count);
    const isNormW = /norm\d?\.weight$/.test(name);
    for (let i = 0; i < count; i++) {
      // xorshift32 → roughly uniform in ±0.035 (std 0.02, like trained ViT weights' scale)
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
      const u = (x >>> 0) / 4294967296 - 0.5;
      a[i] = isNormW ? 1 + u * 0.2 : u * 0.07;
    }
    writeSync(fd, new Uint8Array(a.buffer));
  }
  closeSync(fd);
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({ architecture: s.arch, num_classes: s.classes, num_features: s.width, pretrained_cfg: { input_size: [3, s.image, s.image], interpolation: 'bicubic', crop_pct: 0.9, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], num_classes: s.classes } }, null, 1),
  );
  return { qkBytes: s.layers * 2 * s.width * s.width * 4, fileBytes: 8 + json.length + off };
}
