/** The benches' result table, as Markdown: one row per measure, its value, its target and PASS/FAIL. */
export type Row = [measure: string, value: string, target: string, result: string];

export function printTable(rows: readonly Row[]): void {
  const header: Row = ['measure', 'value', 'target', 'result'];
  const all = [header, ...rows];
  const widths = header.map((_, c) => Math.max(...all.map((r) => r[c]!.length)));
  const line = (r: readonly string[]) => `| ${r.map((cell, c) => cell.padEnd(widths[c]!)).join(' | ')} |`;
  console.log(line(header));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const r of rows) console.log(line(r));
}
