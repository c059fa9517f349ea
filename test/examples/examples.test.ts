import { execFile } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

// Every example runs as a user runs it (`npx tsx examples/<file>`) and exits
// by itself. .mjs files are modules other examples load (the transport's
// enrichers), not programs. examples/transport.ts loads dist/, which the
// global setup builds.

const dir = fileURLToPath(new URL('../../examples/', import.meta.url))
const files = readdirSync(dir).sort()
const runnable = files.filter((f) => f.endsWith('.ts'))
const TIMEOUT_MS = 30_000

interface Result {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  elapsedMs: number
}

function runExample(file: string): Promise<Result> {
  const started = performance.now()
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', `${dir}${file}`],
      {
        cwd: fileURLToPath(new URL('../..', import.meta.url)),
        // The demo's load, shortened: 300 requests over 2 s instead of 3 000 over 10.
        env: { ...process.env, DEMO_REQUESTS: '300', DEMO_SECONDS: '2' },
        timeout: TIMEOUT_MS,
        killSignal: 'SIGKILL',
        maxBuffer: 32 * 1024 * 1024,
      },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null
        const signal = error?.signal ?? null
        resolve({ code, signal, stdout, stderr, elapsedMs: performance.now() - started })
      },
    )
  })
}

describe('examples/', () => {
  it('holds runnable .ts files and .mjs modules only', () => {
    expect(runnable).toContain('demo.ts')
    expect(files.filter((f) => !f.endsWith('.ts') && !f.endsWith('.mjs'))).toEqual([])
  })

  it.each(runnable)(
    '%s runs with tsx, prints, and exits 0 by itself',
    async (file) => {
      const result = await runExample(file)
      const report = `${file}: code ${result.code}, signal ${result.signal} after ${Math.round(result.elapsedMs)} ms\n--- stderr\n${result.stderr}`
      expect(result.signal, report).toBeNull()
      expect(result.code, report).toBe(0)
      expect(result.stdout.trim().length, report).toBeGreaterThan(0)
    },
    TIMEOUT_MS + 10_000,
  )
})
