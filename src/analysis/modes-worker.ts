/**
 * Worker side of `analyzeModel`'s pool: computes one head per message. Runs from the compiled
 * JS (dist/src/analysis/modes-worker.js). Inputs arrive as transferred typed arrays and the
 * result's arrays are transferred back (no copies of the d_h×d vectors).
 */
import { parentPort } from 'node:worker_threads';
import { headModes } from './modes.js';
import type { HeadJob, HeadReply } from './model-modes.js';
import type { HeadModes } from './types.js';

export function resultTransfer(r: HeadModes): ArrayBuffer[] {
  const out: ArrayBuffer[] = [];
  for (const a of [r.sigma, r.U, r.V, r.cosine, r.relGap, r.salience]) if (a) out.push(a.buffer as ArrayBuffer);
  return out;
}

if (parentPort) {
  const port = parentPort;
  port.on('message', (job: HeadJob) => {
    let reply: HeadReply;
    try {
      const r = headModes(job.wq, job.wk, job.bq, job.d, job.dh, job.layer, job.head);
      reply = { id: job.id, ok: true, result: r };
      port.postMessage(reply, resultTransfer(r));
    } catch (e) {
      reply = { id: job.id, ok: false, error: e instanceof Error ? (e.stack ?? e.message) : String(e) };
      port.postMessage(reply);
    }
  });
}
