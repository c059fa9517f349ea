// The import-time part of `npm run bench`: how long `await import('pino-enrich')`
// (the built core entry, no built-in enrichers) takes against pino's own, each
// in a fresh process, alternated, timed with performance.now() around the
// import inside the child (Node's own startup is left out: it is the same for
// both). pino-enrich imports pino, so its figure includes pino's.
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { median } from './measure.js'
import type { Row } from './table.js'

const RUNS = Math.max(15, Number(process.env.BENCH_IMPORT_RUNS ?? 21))
const root = fileURLToPath(new URL('..', import.meta.url))

/** Milliseconds `await import(spec)` takes in a fresh process, after `before` has been imported. */
function importMs(spec: string, before?: string): number {
  const code = [
    before === undefined ? '' : `await import(${JSON.stringify(before)})`,
    'const t = performance.now()',
    `await import(${JSON.stringify(spec)})`,
    'process.stdout.write(String(performance.now() - t))',
  ].join('\n')
  // From the repository root: 'pino-enrich' resolves to its own dist through the exports map.
  return Number(execFileSync(process.execPath, ['--input-type=module', '-e', code], { cwd: root, encoding: 'utf8' }))
}

export async function runImportBench(): Promise<Row[]> {
  const ours: number[] = []
  const pinos: number[] = []
  const after: number[] = []
  const empty: number[] = []
  for (let r = 0; r < RUNS; r++) {
    // Alternated, the first of each pair swapped every run, so drift hits both alike.
    if (r % 2 === 0) {
      pinos.push(importMs('pino'))
      ours.push(importMs('pino-enrich'))
    } else {
      ours.push(importMs('pino-enrich'))
      pinos.push(importMs('pino'))
    }
    after.push(importMs('pino-enrich', 'pino'))
    empty.push(importMs('./bench/empty-module.mjs', 'pino'))
  }
  const ratio = median(ours.map((x, i) => x / (pinos[i] as number)))
  return [
    {
      bench: `import time: pino-enrich (core entry, pino included) vs pino, ${RUNS} fresh processes each`,
      value: `${median(ours).toFixed(1)} ms vs ${median(pinos).toFixed(1)} ms`,
      ratio: `${ratio.toFixed(2)}x`,
      target: '<= 1.30x',
      verdict: ratio <= 1.3 ? 'ok' : 'MISSED',
    },
    {
      bench: '  pino-enrich alone, imported after pino (diagnostic)',
      value: `${median(after).toFixed(1)} ms`,
      ratio: `${median(after.map((x, i) => x / (pinos[i] as number))).toFixed(2)}x of pino's`,
      target: '',
      verdict: '',
    },
    {
      // pino is CommonJS: the first ES module file pays for what Node's loader does for such
      // files only (reading them through fs/promises, loaded then; compiling source text
      // modules), whatever the package. An ES module application has paid it for its main file.
      bench: "  an empty ES module file, imported after pino (diagnostic: Node's part of the above)",
      value: `${median(empty).toFixed(1)} ms`,
      ratio: `${median(empty.map((x, i) => x / (pinos[i] as number))).toFixed(2)}x of pino's`,
      target: '',
      verdict: '',
    },
  ]
}
