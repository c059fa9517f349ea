/** One line of the benchmark report. */
export interface Row {
  bench: string
  value: string
  ratio: string
  target: string
  verdict: string
}

/** Prints rows as an aligned table (and as Markdown when BENCH_MARKDOWN=1). */
export function printTable(rows: Row[]): void {
  const cols: Array<keyof Row> = ['bench', 'value', 'ratio', 'target', 'verdict']
  if (process.env.BENCH_MARKDOWN === '1') {
    console.log(`| ${cols.join(' | ')} |`)
    console.log(`| ${cols.map(() => '---').join(' | ')} |`)
    for (const r of rows) console.log(`| ${cols.map((c) => r[c]).join(' | ')} |`)
    return
  }
  const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => r[c].length)))
  const line = (r: Record<keyof Row, string>): string => cols.map((c, i) => r[c].padEnd(width[i] as number)).join('  ')
  console.log(line({ bench: 'bench', value: 'value', ratio: 'ratio', target: 'target', verdict: 'verdict' }))
  for (const r of rows) console.log(line(r))
}
