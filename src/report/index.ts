/** Data files (.npy, .csv) and figures (SVG, PNG) for reports. */
export * from './npy.js';
export * from './csv.js';
export * from './plot.js';
export * from './figures/index.js';
