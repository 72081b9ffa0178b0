// The front-end built for static sites (`qkscope export`): the same app as `serve` (web/src/main.ts,
// which picks the static data source when the page says so), as ONE classic script plus its CSS,
// because browsers refuse module scripts and fetch() from file:// pages. Build:
// `vite build web -c web/vite.static.config.ts` (part of `npm run build`) writes dist/web-static/.
import { defineConfig, type Plugin } from 'vite';

/**
 * onnxruntime-web locates its .wasm with `new URL('ort-wasm….wasm', import.meta.url)`, which a
 * library build would inline (tens of MB of base64 in app.js). The site hands the runtime the
 * binary itself (env.wasm.wasmBinary, from data/ort/), so those references are dropped.
 */
function ortWithoutWasmAsset(): Plugin {
  return {
    name: 'qkscope-ort-without-wasm-asset',
    enforce: 'pre',
    transform(code, id) {
      if (!id.includes('onnxruntime-web')) return null;
      const out = code.replace(/new URL\((["'])ort-wasm[\w.-]*\.wasm\1,\s*import\.meta\.url\)\.href/g, '""');
      return out === code ? null : { code: out, map: null };
    },
  };
}

export default defineConfig({
  base: './',
  publicDir: false,
  build: {
    outDir: '../dist/web-static',
    emptyOutDir: true,
    target: 'es2022',
    chunkSizeWarningLimit: 4000,
    lib: {
      entry: 'src/static.ts',
      name: 'qkscope',
      formats: ['iife'],
      fileName: () => 'app.js',
      cssFileName: 'app',
    },
    rollupOptions: { output: { inlineDynamicImports: true } },
  },
  plugins: [ortWithoutWasmAsset()],
  define: { 'process.env.NODE_ENV': JSON.stringify('production') },
});
