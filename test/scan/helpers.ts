/** Shared fixtures for the scan tests: generated images, tar shards, database dumps. */
import { createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import tar from 'tar-stream';
import Database from 'better-sqlite3';

/** A deterministic RGB image with some structure (blobs on noise), w × h. */
export function imagePixels(seed: number, w: number, h: number): Buffer {
  const data = Buffer.alloc(w * h * 3);
  let x = (seed * 2654435761) >>> 0 || 1;
  const rnd = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 4294967296;
  };
  const cx = rnd() * w;
  const cy = rnd() * h;
  const r = 2 + rnd() * Math.min(w, h) * 0.4;
  const col = [rnd() * 255, rnd() * 255, rnd() * 255];
  for (let yy = 0; yy < h; yy++)
    for (let xx = 0; xx < w; xx++) {
      const inside = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r;
      for (let c = 0; c < 3; c++) data[(yy * w + xx) * 3 + c] = inside ? col[c] : Math.floor(rnd() * 256);
    }
  return data;
}

export async function writeImage(path: string, seed: number, w = 16, h = 16, format: 'png' | 'jpeg' | 'webp' = 'png'): Promise<Buffer> {
  mkdirSync(dirname(path), { recursive: true });
  const img = sharp(imagePixels(seed, w, h), { raw: { width: w, height: h, channels: 3 } });
  const buf = await (format === 'png' ? img.png() : format === 'jpeg' ? img.jpeg({ quality: 95 }) : img.webp({ lossless: true })).toBuffer();
  writeFileSync(path, buf);
  return buf;
}

export async function encodeImage(seed: number, w = 16, h = 16): Promise<Buffer> {
  return sharp(imagePixels(seed, w, h), { raw: { width: w, height: h, channels: 3 } }).png().toBuffer();
}

/** Writes a webdataset-style shard: members `name` → bytes, in order. */
export async function writeTar(path: string, members: [string, Uint8Array][]): Promise<void> {
  const pack = tar.pack();
  const out = createWriteStream(path);
  const done = new Promise<void>((res, rej) => {
    out.on('finish', () => res());
    out.on('error', rej);
  });
  pack.pipe(out);
  for (const [name, bytes] of members) {
    await new Promise<void>((res, rej) => pack.entry({ name, size: bytes.length }, Buffer.from(bytes), (e) => (e ? rej(e) : res())));
  }
  pack.finalize();
  await done;
}

/** Every row of the tables that define a scan's result, for equality checks. */
export function dumpContent(dbPath: string): Record<string, unknown[]> {
  const db = new Database(dbPath, { readonly: true });
  try {
    const q = (sql: string) => db.prepare(sql).raw().all();
    return {
      modes: q('SELECT * FROM modes ORDER BY layer, head, mode'),
      vectors: q('SELECT * FROM vectors ORDER BY layer, head'),
      images: q('SELECT * FROM images ORDER BY id'),
      heap_state: q('SELECT * FROM heap_state ORDER BY layer, head, mode, sign'),
      topk: q('SELECT * FROM topk ORDER BY layer, head, mode, sign, rank'),
      anisotropy: q('SELECT * FROM anisotropy ORDER BY layer'),
      progress: q('SELECT total, done, skipped FROM progress'),
      meta: q("SELECT key, value FROM meta WHERE key NOT IN ('created', 'shard', 'id_ranges', 'merged_from', 'routes', 'tool_version', 'inputs', 'model') ORDER BY key"),
    };
  } finally {
    db.close();
  }
}
