/**
 * A Vite plugin that prints the gzipped size of every JavaScript chunk of the build and their total, and
 * fails the build when the total is over the budget (issue 14: 300 KB gzipped).
 */
import { gzipSync } from 'node:zlib';
import type { Plugin } from 'vite';

export const JS_BUDGET_BYTES = 300 * 1024;

export function sizeBudget(budget = JS_BUDGET_BYTES): Plugin {
  return {
    name: 'size-budget',
    apply: 'build',
    generateBundle(_options, bundle) {
      const sizes = Object.values(bundle)
        .filter((item) => item.type === 'chunk')
        .map((chunk) => ({ name: chunk.fileName, gzip: gzipSync(chunk.code, { level: 9 }).length }));
      const total = sizes.reduce((sum, s) => sum + s.gzip, 0);
      const kb = (n: number) => `${(n / 1024).toFixed(1)} KB`;
      for (const s of sizes) this.info(`${s.name}: ${kb(s.gzip)} gzipped`);
      const line = `JavaScript total ${kb(total)} gzipped (budget ${kb(budget)})`;
      if (total > budget) this.error(`${line}: over budget`);
      console.log(`size budget: ${line}`);
    },
  };
}
