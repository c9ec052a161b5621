/**
 * The dashboard's build: `npm run build:ui` writes ui/dist, which the API serves (createApi's uiDir).
 * `npx vite --config ui/vite.config.ts` serves it with hot reload, sending /graphql to the API on :4000.
 */
import { fileURLToPath } from 'node:url';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { defineConfig } from 'vite';
import { sizeBudget } from './size-budget.ts';

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  plugins: [svelte({ configFile: false }), sizeBudget()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: true,
  },
  server: {
    proxy: { '/graphql': process.env.API_URL ?? 'http://127.0.0.1:4000' },
  },
});
