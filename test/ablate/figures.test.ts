/** Golden SVGs of the ablate and position-content figures, from deterministic synthetic input. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ablateFigure, type AblateBar } from '../../src/report/figures/ablate.js';
import { positionContentFigure, type ShareRow } from '../../src/report/figures/position-content.js';
import { assertGolden } from '../report/golden.js';

function ablateBars(): AblateBar[] {
  // Twelve modes of one head, effects falling off with the mode index (ranked as the job ranks them).
  const bars = Array.from({ length: 12 }, (_, n) => ({
    label: `L5 H3 M${n}`,
    output: Math.round(0.8 * Math.exp(-n / 2.5) * (1 + 0.3 * Math.sin(n * 1.7)) * 1e4) / 1e4,
    attention: Math.round(1.5 * Math.exp(-n / 3) * (1 + 0.2 * Math.cos(n)) * 1e4) / 1e4,
  }));
  return bars.sort((a, b) => b.output - a.output);
}

test('ablate figure (one head’s modes ranked by effect) matches the golden SVG', () => {
  const input = { title: 'test/vit-base: mode ablation', subtitle: 'each mode of one head removed in turn, 64 images; ranked by effect (0-based indices)', bars: ablateBars(), outputLabel: 'output: mean KL of class probabilities (nats)' };
  const svg = ablateFigure(input);
  assert.equal(ablateFigure(input), svg, 'deterministic');
  for (const b of input.bars) assert.ok(svg.includes(`>${b.label}<`), b.label);
  assert.ok(svg.includes('head attention: mean KL(A ‖ A′) (nats)'));
  // Bars are drawn in the given (ranked) order, top to bottom.
  const order = input.bars.map((b) => svg.indexOf(`>${b.label}<`));
  assert.deepEqual([...order].sort((a, b) => a - b), order);
  assertGolden('ablate.svg', svg);
});

function shareRow(label: string, k: number): ShareRow {
  const raw = [1 + Math.sin(k), 0.4 + 0.3 * Math.cos(k * 1.3), 0.3 + 0.2 * Math.sin(k * 0.7), 0.2 + k / 10];
  const s = raw.reduce((a, b) => a + b, 0);
  return { label, shares: raw.map((v) => Math.round((v / s) * 1e4) / 1e4) };
}

test('position-content figure (3 layers × 4 heads, one zero-energy head) matches the golden SVG', () => {
  const layers = [0, 1, 2].map((l) => shareRow(`L${l}`, l * 3));
  const heads = [0, 1, 2].flatMap((l) => [0, 1, 2, 3].map((h) => shareRow(`L${l} H${h}`, l * 4 + h)));
  heads[5] = { label: heads[5].label, shares: null };
  const input = { title: 'test/vit-tiny: position vs content', subtitle: 'share of each mode’s logit energy, LayerNorm output, 50 images; first letter = query side; 0-based', layers, heads };
  const svg = positionContentFigure(input);
  assert.equal(positionContentFigure(input), svg, 'deterministic');
  for (const p of ['content–content (CC)', 'content–position (CP)', 'position–content (PC)', 'position–position (PP)']) assert.ok(svg.includes(p), p);
  assert.ok(svg.includes('>L2 H3<') && svg.includes('>L1 H1<'));
  assert.equal(svg.split('no logit energy (σ = 0)').length - 1, 1, 'the zero-energy head is marked');
  assertGolden('position-content.svg', svg);
});
