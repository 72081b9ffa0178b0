/** Installs the static site's data source for main.ts (imported before it by static.ts). */
import { staticSource } from './data-static.js';
import type { DataSource } from './data.js';

const cfg = typeof window.QKSCOPE_STATIC === 'object' ? window.QKSCOPE_STATIC : {};
(globalThis as { qkscopeSource?: DataSource }).qkscopeSource = staticSource(cfg.data ?? 'data/');
