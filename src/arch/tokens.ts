import type { VitSpec, SpecialToken } from './spec.js';
import { UserError } from '../errors.js';

/**
 * Which token index is what, for a given input size: special tokens first (the spec's
 * `tokenLayout`, registers expanded to one entry each), then the patches in raster order.
 */
export interface TokenLayout {
  /** Total tokens T. */
  tokens: number;
  /** One entry per special token, in order. */
  special: SpecialToken[];
  cls: number | null;
  dist: number | null;
  registers: number[];
  /** Index of the first patch token (= number of special tokens). */
  patchStart: number;
  patches: number;
  /** Patch grid [rows, cols]. */
  grid: [number, number];
  imageSize: [number, number];
  patchSize: number;
}

/** Number of register tokens the spec carries (from the register tensor, else the layout). */
export function registerCount(spec: VitSpec): number {
  const inLayout = spec.tokenLayout.filter((t) => t === 'reg').length;
  if (!spec.registerTokens) return inLayout;
  const n = spec.registerTokens.shape.reduce((a, b) => a * b, 1) / spec.width;
  return Math.max(n, inLayout);
}

/** The special tokens with registers expanded to one entry per register. */
export function expandedLayout(spec: VitSpec): SpecialToken[] {
  const regs = registerCount(spec);
  const inLayout = spec.tokenLayout.filter((t) => t === 'reg').length;
  if (inLayout === regs || inLayout === 0) {
    const out = [...spec.tokenLayout];
    if (inLayout === 0 && regs > 0) {
      // Registers not listed: they follow the CLS / distillation tokens (DINOv2).
      const at = out.length;
      out.splice(at, 0, ...Array<SpecialToken>(regs).fill('reg'));
    }
    return out;
  }
  if (inLayout === 1) {
    const out: SpecialToken[] = [];
    for (const t of spec.tokenLayout) {
      if (t === 'reg') out.push(...Array<SpecialToken>(regs).fill('reg'));
      else out.push(t);
    }
    return out;
  }
  throw new Error(`${spec.modelId}: tokenLayout lists ${inLayout} registers but the register tensor holds ${regs}`);
}

export function tokenLayout(spec: VitSpec, imageSize: [number, number] = spec.imageSize): TokenLayout {
  const p = spec.patchSize;
  const grid: [number, number] = [Math.floor(imageSize[0] / p), Math.floor(imageSize[1] / p)];
  if (grid[0] < 1 || grid[1] < 1) {
    throw new UserError(`${spec.modelId}: image size ${imageSize.join('x')} is smaller than one ${p}x${p} patch`);
  }
  const special = expandedLayout(spec);
  const idx = (t: SpecialToken) => {
    const i = special.indexOf(t);
    return i < 0 ? null : i;
  };
  const registers = special.flatMap((t, i) => (t === 'reg' ? [i] : []));
  const patches = grid[0] * grid[1];
  return {
    tokens: special.length + patches,
    special,
    cls: idx('cls'),
    dist: idx('dist'),
    registers,
    patchStart: special.length,
    patches,
    grid,
    imageSize,
    patchSize: p,
  };
}

/** The `tokens.json` description written next to the embeddings. */
export function tokensJson(layout: TokenLayout): Record<string, unknown> {
  return {
    tokens: layout.tokens,
    layout: [...layout.special, ...(layout.patches ? ['patches...'] : [])],
    cls: layout.cls,
    distillation: layout.dist,
    registers: layout.registers,
    patches: { start: layout.patchStart, count: layout.patches, grid: layout.grid, order: 'raster (row-major)' },
    imageSize: layout.imageSize,
    patchSize: layout.patchSize,
  };
}

/** Index of the patch at grid row r, column c (token index, special tokens first). */
export function patchToken(layout: TokenLayout, r: number, c: number): number {
  return layout.patchStart + r * layout.grid[1] + c;
}

/** The centre patch (raster index among patches): floor(rows/2)·cols + floor(cols/2), as `scan` uses. */
export function centrePatch(layout: TokenLayout): number {
  return Math.floor(layout.grid[0] / 2) * layout.grid[1] + Math.floor(layout.grid[1] / 2);
}
