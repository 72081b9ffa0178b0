// Real-data check (runs where ../shared holds the real ViT-Tiny and ImageNet photos, skipped
// elsewhere): on trained weights, where some heads are ill-conditioned enough that modes go the
// direct route, the scan's lists equal a brute-force ranking of `embed` output.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { HAVE_SHARED, REAL_IMAGES, REAL_VIT_TINY } from '../helpers/paths.js';
import { listImages } from '../../src/images/sources.js';
import { scanIntoDir } from '../../src/jobs/scan.js';
import { runEmbed, writeEmbed } from '../../src/jobs/embed.js';
import { preprocessFor } from '../../src/images/preprocess.js';
import { readNpy } from '../../src/io/npy.js';
import { bruteList } from './brute.js';
import { loadSpec } from '../../src/arch/load.js';
import { ListingSource } from '../../src/images/source.js';
import { fileListing } from '../../src/images/sources.js';

const skip = HAVE_SHARED ? false : 'needs ../shared (real ViT-Tiny and ImageNet sample)';

test('real ViT-Tiny on ImageNet photos: scan lists equal brute force (layers 0, 6, 11)', { skip }, async () => {
  const root = mkdtempSync(join(tmpdir(), 'qkscope-scan-real-'));
  try {
    const files = readdirSync(REAL_IMAGES)
      .filter((f) => f.endsWith('.JPEG'))
      .sort()
      .filter((_, i) => i % 25 === 0)
      .map((f) => join(REAL_IMAGES, f)); // 20 photos
    const listing = await listImages(files);
    const layers = [0, 6, 11];
    const { spec, close } = await loadSpec(REAL_VIT_TINY, {});
    try {
      const out = join(root, 'run');
      const r = await scanIntoDir(spec, out, { listing, inputs: files, modelInput: REAL_VIT_TINY }, { topK: 3, layers, batch: 10 });
      assert.deepEqual(r.routes, ['fast', 'fast', 'fast']);
      const { pp, options } = preprocessFor(spec);
      await writeEmbed(await runEmbed(spec, new ListingSource(fileListing(files), pp, options), { layers, batch: 10 }), join(root, 'emb'));
      const ln = readNpy(join(root, 'emb', 'ln.npy'));
      const U = readNpy(join(out, 'U.npy'));
      const V = readNpy(join(out, 'V.npy'));
      const db = new Database(join(out, 'run.db'), { readonly: true });
      const get = db.prepare('SELECT image_id, score FROM topk WHERE layer = ? AND head = ? AND mode = ? AND sign = ? ORDER BY rank');
      const ids = files.map((_, i) => i);
      let checked = 0;
      for (const [li, l] of layers.entries())
        for (let h = 0; h < spec.heads; h++)
          for (let n = 0; n < spec.headDim; n += 3)
            for (const sign of [1, -1] as const) {
              const brute = bruteList(ln, U, V, { li, layer: l, head: h, mode: n, sign, patchStart: 1, ids });
              const byId = new Map(brute.map((b) => [b.id, b.score]));
              const got = get.all(l, h, n, sign) as { image_id: number; score: number }[];
              got.forEach((g, rank) => {
                const tol = 1e-4 * Math.max(1, Math.abs(brute[rank].score));
                assert.ok(Math.abs(byId.get(g.image_id)! - brute[rank].score) <= tol, `L${l} H${h} M${n} ${sign} rank ${rank}`);
                assert.ok(Math.abs(g.score - byId.get(g.image_id)!) <= tol, `L${l} H${h} M${n} ${sign} rank ${rank} score ${g.score} vs ${byId.get(g.image_id)}`);
                checked++;
              });
            }
      db.close();
      assert.ok(checked > 600);
    } finally {
      await close();
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
