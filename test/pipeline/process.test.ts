import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { runChild } from '../helpers/child.js'

const dir = mkdtempSync(join(tmpdir(), 'pino-enrich-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

function readLines(file: string): Array<Record<string, unknown>> {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as Record<string, unknown>)
}

function expectAllOnce(lines: Array<Record<string, unknown>>, count: number): void {
  expect(lines).toHaveLength(count)
  const seen = new Set(lines.map((l) => l.i))
  expect(seen.size).toBe(count)
}

describe('process exit and signals (real child processes)', () => {
  for (const mode of ['sync', 'async']) {
    it(`process.exit() writes every pending deferred line once (${mode} destination)`, async () => {
      const file = join(dir, `exit-${mode}.ndjson`)
      const r = await runChild('deferred-exit.ts', [file, mode, '20000'])
      expect(r.stderr).toBe('')
      expect(r.code).toBe(0)
      const lines = readLines(file)
      expectAllOnce(lines, 20_000)
      // Written with what was ready: the host, and the user recorded as timed out.
      expect(lines[0]).toMatchObject({ host: { name: 'box' }, enrich: { timeout: ['user'] } })
    })
  }

  it('handleSignals(): SIGTERM writes every line and exits with 143', async () => {
    const file = join(dir, 'sigterm.ndjson')
    const r = await runChild('sigterm.ts', [file], {
      onStdout: (chunk, pid) => {
        if (chunk.includes('ready')) process.kill(pid, 'SIGTERM')
      },
    })
    expect(r.signal).toBeNull()
    expect(r.code).toBe(143)
    const lines = readLines(file)
    expectAllOnce(lines, 1000)
  })

  it('after close() the process exits by itself, promptly', async () => {
    const r = await runChild('close-exits.ts', [], { timeoutMs: 10_000 })
    expect(r.code).toBe(0)
    expect(r.signal).toBeNull()
    const closedAt = Number(/closed ([\d.]+)/.exec(r.stderr)?.[1])
    const exitAt = Number(/exit ([\d.]+)/.exec(r.stderr)?.[1])
    expect(exitAt - closedAt).toBeLessThan(100)
    expect(r.stdout.trim().split('\n')).toHaveLength(10)
  })
})

describe('waiting keeps the process alive, for its bound only (real child processes)', () => {
  // deadlineMs 200 in the fixture; ready() is given timeoutMs 300.
  const cases: Array<[string, RegExp, number]> = [
    ['flush', /^flushed (\d+)$/m, 200],
    ['ready', /^ready \{"ready":\[\],"failed":\[\],"pending":\["host"\]\} (\d+)$/m, 300],
    ['enrich', /^enriched \{"enrich":\{"timeout":\["user"\]\}\} (\d+)$/m, 200],
  ]
  for (const [what, pattern, bound] of cases) {
    it(`${what}() resolves within its bound when nothing else is alive, then the process exits`, async () => {
      const r = await runChild('waits-alive.ts', [what], { timeoutMs: 15_000 })
      expect(r.stderr).toMatch(pattern)
      expect(r.code).toBe(0)
      const waited = Number(pattern.exec(r.stderr)?.[1])
      // Not before its bound (nothing settled early), and not much after.
      expect(waited).toBeGreaterThanOrEqual(bound - 5)
      expect(waited).toBeLessThan(bound + 1_000)
    })
  }
})
