import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as Plot from '@observablehq/plot';
import sharp from 'sharp';
import { FONT_FAMILY, deterministic, gridSvg, plotPanel, plotSvg } from '../../src/report/plot.js';
import { assertGolden } from './golden.js';
import { svgToPng } from '../../src/io/png.js';

const simple = (): Plot.PlotOptions => ({
  width: 240,
  height: 160,
  x: { label: 'x' },
  y: { label: 'y' },
  marks: [Plot.lineY([1, 3, 2, 4]), Plot.ruleY([0])],
});

test('plotSvg: standalone SVG with xmlns, white background, DejaVu Sans, no Plot stylesheet', () => {
  const svg = plotSvg(simple());
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" /);
  assert.ok(svg.includes(`font-family="${FONT_FAMILY}"`));
  assert.ok(svg.includes('<rect x="0" y="0" width="240" height="160" fill="white"/>'));
  assert.ok(!svg.includes('system-ui'), 'Plot font replaced');
  assert.ok(!svg.includes(':where('), 'Plot stylesheet dropped');
  assert.ok(!svg.includes('&nbsp;'), 'XML, not HTML, serialisation');
  assert.equal(plotSvg(simple()), svg, 'deterministic');
});

test('clip-path ids (global counters in Plot) are renumbered deterministically', () => {
  const opts = (): Plot.PlotOptions => ({ width: 200, height: 100, marks: [Plot.lineY([1, 5, 2], { clip: true })] });
  const a = plotSvg(opts());
  const b = plotSvg(opts());
  assert.equal(a, b);
  assert.match(a, /id="qk-clip-1"/);
  assert.match(a, /url\(#qk-clip-1\)/);
  assert.ok(!/plot-clip-\d/.test(a));
  assert.equal(deterministic('<a transform="translate(49.99999999999999,3)">0.123456</a>'), '<a transform="translate(50,3)">0.123456</a>');
});

test('gridSvg composes panels with a title', () => {
  const panels = [0, 1, 2].map((k) => plotPanel({ width: 150, height: 100, marks: [Plot.dot([k, k + 1], { x: (d: number) => d, y: (d: number) => d })] }));
  const svg = gridSvg({ title: 'Three panels', panels, columns: 2, gap: 10, margin: 12 });
  // Panel groups carry only their translate (Plot's own groups carry aria-labels too).
  assert.equal((svg.match(/<g transform="translate\([\d.]+,[\d.]+\)">/g) ?? []).length, 3);
  assert.match(svg, /<text[^>]*font-weight="bold"[^>]*>Three panels<\/text>/);
  const m = /width="(\d+)" height="(\d+)"/.exec(svg)!;
  assert.equal(Number(m[1]), 12 + 150 + 10 + 150 + 12);
  assertGolden('grid.svg', svg);
});

test('svgToPng: a valid PNG at scale × the SVG size', async () => {
  const svg = plotSvg(simple());
  const png = await svgToPng(svg, 2);
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  assert.equal(png.readUInt32BE(16), 480); // IHDR width
  assert.equal(png.readUInt32BE(20), 320); // IHDR height
  const meta = await sharp(png).metadata();
  assert.equal(meta.format, 'png');
  // White background: the corner pixel is opaque white.
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  assert.deepEqual([...data.subarray(0, info.channels)].slice(0, 3), [255, 255, 255]);
  const png1 = await svgToPng(svg, 1);
  assert.equal(png1.readUInt32BE(16), 240);
  await assert.rejects(svgToPng(svg, 0), /scale must be positive/);
});
