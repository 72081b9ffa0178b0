/**
 * sharp (libvips), loaded on first use: its import costs ~0.1 s of start-up, which commands
 * that decode no image and write no PNG (svd --no-figures, compare, ...) should not pay.
 */
export type Sharp = typeof import('sharp');

let sharpModule: Promise<Sharp> | null = null;

export function loadSharp(): Promise<Sharp> {
  return (sharpModule ??= import('sharp').then((m) => (m as unknown as { default: Sharp }).default));
}
