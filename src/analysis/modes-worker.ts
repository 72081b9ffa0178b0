/**
 * Worker side of `analyzeModel`'s pool: computes one head per message. Runs from the compiled
 * JS (dist/src/analysis/modes-worker.js). Inputs are views into the layer's shared buffers;
 * the result's arrays are transferred back (no copies of the d_h×d vectors).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { adoptKernelModule } from '../linalg/kernels.js';
import { headModes } from './modes.js';
import { jobVectors, resultTransfer, sliceView, type HeadJob, type HeadReply } from './shared-slice.js';

if (parentPort) {
  adoptKernelModule((workerData as { kernels?: WebAssembly.Module } | undefined)?.kernels);
  const port = parentPort;
  port.on('message', (job: HeadJob) => {
    let reply: HeadReply;
    try {
      const r = headModes(sliceView(job.wq), sliceView(job.wk), job.bq && sliceView(job.bq), job.d, job.dh, job.layer, job.head, { vectors: jobVectors(job) });
      reply = { id: job.id, ok: true, result: r };
      port.postMessage(reply, resultTransfer(r));
    } catch (e) {
      reply = { id: job.id, ok: false, error: e instanceof Error ? (e.stack ?? e.message) : String(e) };
      port.postMessage(reply);
    }
  });
}
