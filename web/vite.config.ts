// Vite config for the `qkscope serve` front-end. Build: `vite build web` (npm run build:web)
// writes dist/web/, which the server serves. Dev: `vite web` proxies /api to a running
// `qkscope serve` on port 8080.
import { defineConfig } from 'vite';

export default defineConfig({
  base: './',
  build: {
    outDir: '../dist/web',
    emptyOutDir: true,
    target: 'es2022',
    chunkSizeWarningLimit: 1500,
  },
  server: {
    proxy: { '/api': 'http://127.0.0.1:8080' },
  },
});
