import type { TestContext } from 'vitest'

/** A figure a reliability test measured: a number, a short text, or a flag. */
export type Figure = number | string | boolean | null

declare module 'vitest' {
  interface TaskMeta {
    /** What a reliability scenario measured, for `npm run reliability`'s table. */
    figures?: Record<string, Figure>
  }
}

/**
 * Records what a test measured, so the reliability report can print it beside
 * pass/fail. Call it before asserting: a failing test still shows its figures.
 * Numbers are rounded to 2 decimals.
 */
export function figures(ctx: TestContext, values: Record<string, Figure | undefined>): void {
  const meta = ctx.task.meta
  meta.figures ??= {}
  for (const [k, v] of Object.entries(values)) {
    if (v === undefined) continue
    meta.figures[k] = typeof v === 'number' && !Number.isInteger(v) ? Math.round(v * 100) / 100 : v
  }
}

/** Parses the `RESULT {json}` line a reliability fixture prints. */
export function resultOf(stdout: string): Record<string, unknown> {
  const line = stdout.split('\n').find((l) => l.startsWith('RESULT '))
  if (line === undefined) throw new Error(`no RESULT line in child output: ${stdout.slice(0, 500)}`)
  return JSON.parse(line.slice('RESULT '.length)) as Record<string, unknown>
}
