/**
 * The one runtime: VitSpec -> ONNX graph (onnx-proto) -> onnxruntime-node session.
 *
 *   const rt = await VitRuntime.create(spec, { outputs: { ln: 'all', attention: [11], logits: true } });
 *   const r = await rt.run(pixels, n); // r.ln [n, L, T, d], r.attention [n, 1, H, T, T], r.logits [n, C]
 *   await rt.close();
 *
 * Appending computations (issue 4's projections + reductions) and editing weights (issue 7's
 * mode ablation): see `VitGraphOptions.extend`, `.weights` and `.overridable`.
 */
export { VitRuntime, type VitRuntimeOptions, type RunResult, type RunOptions } from './vit-runtime.js';
export { buildVitGraph, resolveLayers, posInterpolation, type VitOutputs, type VitTensors, type VitGraph, type VitGraphOptions, type LayerSelection, type ParamBinding } from './vit-graph.js';
export { OnnxGraph, OPSET, MS_DOMAIN, type AttrValue, type Dim, type InitializerInfo } from './onnx-graph.js';
export { tokenLayout, tokensJson, expandedLayout, registerCount, type TokenLayout } from './tokens.js';
export { parseDevice, executionProviders, cudaProviderInstalled, CUDA_INSTALL_HINT, type Device } from './device.js';
export { runEmbedJob, type EmbedJobOptions, type EmbedJobResult } from './embed-job.js';
