/**
 * A Vite plugin that prints the gzipped size of every JavaScript chunk of the build and their total, and
 * fails the build when the total is over the budget (issue 14: 300 KB gzipped). `gzippedSizes` is the
 * same measure for the UI bench (bench/ui.bench.ts), over the files of a finished build.
 */
import { gzipSync } from 'node:zlib';
import type { Plugin } from 'vite';

export const JS_BUDGET_BYTES = 300 * 1024;

export interface GzippedSizes {
  files: Array<{ name: string; gzip: number }>;
  /** Bytes, gzipped at level 9, all files together. */
  total: number;
}

/** The gzipped size of each JavaScript file (name and code) and their total. */
export function gzippedSizes(files: ReadonlyArray<{ name: string; code: string | Uint8Array }>): GzippedSizes {
  const sized = files.map((f) => ({ name: f.name, gzip: gzipSync(f.code, { level: 9 }).length }));
  return { files: sized, total: sized.reduce((sum, s) => sum + s.gzip, 0) };
}

export const formatKb = (bytes: number) => `${(bytes / 1024).toFixed(1)} KB`;

export function sizeBudget(budget = JS_BUDGET_BYTES): Plugin {
  return {
    name: 'size-budget',
    apply: 'build',
    generateBundle(_options, bundle) {
      const chunks = Object.values(bundle).flatMap((item) => (item.type === 'chunk' ? [{ name: item.fileName, code: item.code }] : []));
      const { files, total } = gzippedSizes(chunks);
      for (const s of files) this.info(`${s.name}: ${formatKb(s.gzip)} gzipped`);
      const line = `JavaScript total ${formatKb(total)} gzipped (budget ${formatKb(budget)})`;
      if (total > budget) this.error(`${line}: over budget`);
      console.log(`size budget: ${line}`);
    },
  };
}
