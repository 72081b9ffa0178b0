/** One module per figure; each returns a standalone SVG string (write it as .svg, or svgToPng it). */
export { heatmapFigure, type HeatmapInput } from './heatmap.js';
export { headsFigure, type HeadsInput, type HeadsPanelInput } from './heads.js';
export { compareFigure, type CompareInput, type CompareCurve, type CompareBand } from './compare.js';
