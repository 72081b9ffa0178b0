/** What the app shell (main.ts) gives every view. Views import this, never main.ts. */
import type { DataSource } from './data.js';

export interface ViewContext {
  root: HTMLElement;
  /** False once the user navigated elsewhere: late replies must not draw. */
  alive: () => boolean;
  setCrumbs: (items: [string, string | null][]) => void;
  data: DataSource;
}
