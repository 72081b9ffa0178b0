/**
 * Entry of the static site's build (web/vite.static.config.ts): the static data source is put
 * in place first, then the same app as `serve` (main.ts) starts on it.
 */
import './static-setup.js';
import './main.js';
