/**
 * qkscope as a library: the same functions the commands run, for notebooks and pipelines.
 *
 *   import { loadSpec, runSvd, embedImages, readSvdRun } from 'qkscope';
 *   const { spec, close } = await loadSpec('google/vit-base-patch16-224');
 *   const modes = await runSvd(spec);            // σ, cosines, U, V of every head, in memory
 *   const x = await embedImages(spec, ['cat.jpg'], { layers: [0, 11] });
 *   await close();
 *
 * Every `run…` returns plain data (typed arrays, plain objects) and writes nothing; every
 * `write…` writes a run directory as the CLI does. Progress and early stop go through an
 * optional `{ progress, stop }` context. Indices are 0-based (docs/method.md).
 */

// Opening a model: path, checkpoint file or Hugging Face id → the canonical spec.
export { loadSpec, displayName, type ModelFlags } from './arch/load.js';
export type { VitSpec, PreprocessSpec } from './arch/spec.js';
export { tokenLayout, patchToken, centrePatch, type TokenLayout } from './arch/tokens.js';
export { headWeights, type HeadWeights } from './arch/head-weights.js';
export { supportedFamilies, supportedModelTypes } from './arch/registry.js';

// The modes analysis (what `svd` computes), one head or a whole model.
export { runSvd, writeSvd, svdFigures, type SvdOptions, type SvdResult } from './jobs/svd.js';
export { headModes } from './analysis/modes.js';
export { analyzeModel } from './analysis/model-modes.js';
export type { HeadModes, Band } from './analysis/types.js';
export { chanceBands, modeBand, weightedMeanBand } from './analysis/chance.js';
export { runCompare, writeCompare, compareSvg, type CompareOptions, type CompareResult } from './jobs/compare.js';

// Running images through the model.
export { runEmbed, collectEmbed, writeEmbed, embedImages, type EmbedOptions, type EmbedRun, type EmbedArrays, type EmbedByLayer } from './jobs/embed.js';
export { VitRuntime, type VitRuntimeOptions, type RunResult } from './runtime/vit-runtime.js';
export { imageBatches, DEFAULT_BATCH, type ImageBatch } from './runtime/batch-loop.js';
export { ListingSource, NpyPixels, type ImageSource, type LoadedImage } from './images/source.js';
export { listImages, expandImagePaths, fileListing, type ImageListing } from './images/sources.js';
export { preprocessFor, resizeAndCrop, normalise } from './images/preprocess.js';
export { decodeImage } from './images/decode.js';

// Optimal attention images.
export { scanIntoDir, prepareScan, runScan, type ScanOptions, type ScanSetup, type ScanResult } from './jobs/scan.js';
export { runTop, type TopResult } from './jobs/top.js';
export { runModesFigure, writeModesFigure, type ModesFigureOptions } from './jobs/figure-modes.js';

// Token-level analyses.
export { runContributions, writeContributions } from './jobs/contributions.js';
export { runAnisotropy, writeAnisotropy, anisotropyBaseline } from './jobs/anisotropy.js';
export { runObjects, writeObjects } from './jobs/objects.js';
export { runPairing, writePairing } from './jobs/pairing.js';
export { runAblation, writeAblation } from './jobs/ablate.js';
export { runPositionContent, writePositionContent } from './jobs/position-content.js';

// Reading runs.
export { readSvdSummary, readSvdRun, type SvdSummary, type SvdRunArrays } from './store/svd-run.js';
export { openRun as openScanRun, topList, modeInfo, type ScanRun, type RankedImage } from './store/scan-run.js';
export { readNpy, writeNpy, type NpyArray } from './io/npy.js';

// Figures: pure data → SVG, and SVG → PNG.
export { heatmapFigure } from './report/figures/heatmap.js';
export { headsFigure } from './report/figures/heads.js';
export { compareFigure } from './report/figures/compare.js';
export { modesFigure } from './report/figures/modes.js';
export { contributionsFigure } from './report/figures/contributions.js';
export { anisotropyFigure } from './report/figures/anisotropy.js';
export { objectsFigure } from './report/figures/objects.js';
export { pairingFigure } from './report/figures/pairing.js';
export { ablateFigure } from './report/figures/ablate.js';
export { positionContentFigure } from './report/figures/position-content.js';
export { mapScales, scaleMap, overlayRgb, upsampleGrid, type MapNormalization } from './report/overlay.js';
export { svgToPng } from './io/png.js';

// Context and errors.
export type { Progress, StopSignal } from './progress.js';
export type { JobContext } from './jobs/job.js';
export { UserError } from './errors.js';
export { VERSION } from './version.js';
