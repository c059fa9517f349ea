// `npm run reliability`: vitest's usual output, then one table of every
// reliability scenario with the figures it measured (test/helpers/figures.ts)
// and whether it passed.
import type { Reporter, TestModule } from 'vitest/node'

interface Row {
  file: string
  scenario: string
  figures: string
  state: string
  ms: number
}

export default class ReliabilityReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    const rows: Row[] = []
    for (const mod of modules) {
      const file = mod.moduleId.split('/').pop() ?? mod.moduleId
      for (const test of mod.children.allTests()) {
        const figures = test.meta().figures ?? {}
        const state = test.result().state
        rows.push({
          file: file.replace(/\.test\.ts$/, ''),
          scenario: test.name,
          figures: Object.entries(figures)
            .map(([k, v]) => `${k}=${v}`)
            .join(' '),
          state: state === 'passed' ? 'PASS' : state === 'failed' ? 'FAIL' : state.toUpperCase(),
          ms: Math.round(test.diagnostic()?.duration ?? 0),
        })
      }
    }
    const out: string[] = ['', 'Reliability report', '']
    out.push('| area | scenario | measured | result | ms |', '|---|---|---|---|---|')
    for (const r of rows) {
      out.push(`| ${r.file} | ${cell(r.scenario)} | ${cell(r.figures) || '-'} | ${r.state} | ${r.ms} |`)
    }
    const failed = rows.filter((r) => r.state === 'FAIL').length
    out.push('', `${rows.length} scenarios, ${rows.length - failed} passed, ${failed} failed`, '')
    process.stdout.write(`${out.join('\n')}\n`)
  }
}

function cell(s: string): string {
  return s.replace(/\|/g, '\\|')
}
