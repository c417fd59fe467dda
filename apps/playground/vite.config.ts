import preact from '@preact/preset-vite';
import { defineConfig } from 'vite';

// `npm run dev` proxies the API to a server started with `switchyard serve` on port 8000.
export default defineConfig({
  plugins: [preact()],
  build: { outDir: 'dist', emptyOutDir: true, chunkSizeWarningLimit: 400 },
  server: {
    proxy: Object.fromEntries(
      ['/v1', '/metrics', '/health'].map((p) => [p, { target: 'http://127.0.0.1:8000', changeOrigin: true }]),
    ),
  },
});
