import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import http from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { runChild } from '../helpers/child.js'
import { figures } from '../helpers/figures.js'

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

// Starting a TypeScript child takes 10-20 s on a loaded machine (measured at load 25 on 2 cores):
// each child gets 60 s before it is killed, and each test twice that.
const CHILD_MS = 60_000
describe('process exit and signals (real child processes)', { timeout: 2 * CHILD_MS }, () => {
  for (const mode of ['sync', 'async']) {
    it(`process.exit() writes every pending deferred line once (${mode} destination)`, async () => {
      const file = join(dir, `exit-${mode}.ndjson`)
      const r = await runChild('deferred-exit.ts', [file, mode, '20000'], { timeoutMs: CHILD_MS })
      expect(r.stderr).toBe('')
      expect(r.code).toBe(0)
      const lines = readLines(file)
      expectAllOnce(lines, 20_000)
      // Written with what was ready: the host, and the user recorded as timed out.
      expect(lines[0]).toMatchObject({ host: { name: 'box' }, enrich: { timeout: ['user'] } })
    })
  }

  it('process.exit() from a destination write() writes the line that write logged, once', async () => {
    const r = await runChild('deferred-exit-in-write.ts', ['1'], { timeoutMs: CHILD_MS })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const lines = r.stdout
      .split('\n')
      .filter((l) => l.length > 0)
      .map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(lines.map((l) => [l.msg, l.host])).toEqual([
      ['outer', { name: 'box' }],
      ['logged by the write', { name: 'box' }],
    ])
  })

  it('handleSignals(): SIGTERM writes every line and exits with 143', async () => {
    const file = join(dir, 'sigterm.ndjson')
    const r = await runChild('sigterm.ts', [file], {
      timeoutMs: CHILD_MS,
      onStdout: (chunk, pid) => {
        if (chunk.includes('ready')) process.kill(pid, 'SIGTERM')
      },
    })
    expect(r.signal).toBeNull()
    expect(r.code).toBe(143)
    const lines = readLines(file)
    expectAllOnce(lines, 1000)
  })

  it('handleSignals() on two pipelines of one process: SIGTERM closes both, writes every line and exits with 143', async () => {
    const file = join(dir, 'sigterm-two.ndjson')
    const r = await runChild('sigterm-two.ts', [file], {
      timeoutMs: CHILD_MS,
      onStdout: (chunk, pid) => {
        if (chunk.includes('ready')) process.kill(pid, 'SIGTERM')
      },
    })
    expect(r.stderr).toBe('')
    expect(r.signal).toBeNull()
    expect(r.code).toBe(143)
    expectAllOnce(readLines(file), 1000)
  })

  it('handleSignals(): a second SIGTERM during the close is absorbed; every line is written and the exit is 143', async (ctx) => {
    const file = join(dir, 'sigterm-twice.ndjson')
    // The lines wait on a hung enricher with a 5 s deadline: the close holds them for closeTimeoutMs (2 s).
    const r = await runChild('sigterm.ts', [file, '5000'], {
      timeoutMs: CHILD_MS,
      onStdout: (chunk, pid) => {
        if (!chunk.includes('ready')) return
        process.kill(pid, 'SIGTERM')
        setTimeout(() => process.kill(pid, 'SIGTERM'), 200)
      },
    })
    const lines = readLines(file)
    figures(ctx, { signals: 2, written: lines.length, code: r.code, signal: r.signal })
    expect(r.stderr).toBe('')
    expect(r.signal).toBeNull()
    expect(r.code).toBe(143)
    expectAllOnce(lines, 1000)
    expect(lines[0]?.enrich).toEqual({ timeout: ['user'] })
  })

  it("handleSignals() beside the app's own SIGTERM handler: the in-flight request completes, the app's drain logs, and the exit code is the app's", async (ctx) => {
    const file = join(dir, 'http-drain.ndjson')
    let response: Promise<{ status: number; body: string }> | undefined
    const r = await runChild('http-drain.ts', [file], {
      timeoutMs: CHILD_MS,
      onStdout: (chunk, pid) => {
        const port = /port (\d+)/.exec(chunk)?.[1]
        if (port !== undefined) {
          response = new Promise((resolve, reject) => {
            http
              .get(`http://127.0.0.1:${port}/slow`, (res) => {
                let body = ''
                res.setEncoding('utf8').on('data', (c: string) => {
                  body += c
                })
                res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
              })
              .on('error', reject)
          })
        }
        if (chunk.includes('in-flight')) process.kill(pid, 'SIGTERM')
      },
    })
    const settled = await response?.catch((e: unknown) => String(e))
    figures(ctx, { code: r.code, response: JSON.stringify(settled), lines: readLines(file).length })
    expect(r.stderr).toBe('')
    expect(r.signal).toBeNull()
    expect(r.code).toBe(0)
    await expect(response).resolves.toEqual({ status: 200, body: 'done' })
    expect(readLines(file).map((l) => l.msg)).toEqual(['request start', 'draining', 'request done', 'drained'])
  })

  it('handleSignals() refuses an unknown signal name and a non-boolean exit, quoting the value', async () => {
    const { createPipeline } = await import('../../src/index.js')
    const p = createPipeline()
    expect(() => p.handleSignals(['SIGNOPE' as NodeJS.Signals])).toThrow(/SIGNOPE/)
    expect(() => p.handleSignals(undefined, { exit: 'yes' as unknown as boolean })).toThrow(TypeError)
    expect(process.listenerCount('SIGTERM')).toBe(0)
    await p.close()
  })

  it('after close() the process exits by itself, promptly', async () => {
    const r = await runChild('close-exits.ts', [], { timeoutMs: CHILD_MS })
    expect(r.code).toBe(0)
    expect(r.signal).toBeNull()
    const closedAt = Number(/closed ([\d.]+)/.exec(r.stderr)?.[1])
    const exitAt = Number(/exit ([\d.]+)/.exec(r.stderr)?.[1])
    // A few ms; 102 ms once under coverage at load average 7. A timer of ours left
    // running (the 50 ms refresh, the hung compute's) would hold it for good.
    expect(exitAt - closedAt).toBeLessThan(500)
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
