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
        // The demo's load, lighter: 160 requests over 8 s instead of 3 000 over 10
        // (each phase long enough for the breaker to probe and close again, and
        // light enough for a loaded 2-core machine to keep the schedule).
        env: { ...process.env, DEMO_REQUESTS: '160', DEMO_SECONDS: '8' },
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

type Line = Record<string, unknown>

/** stdout as NDJSON: every line must parse. */
function linesOf(stdout: string): Line[] {
  return stdout
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as Line)
}

const ADA = { name: 'Ada', plan: 'pro' }
const GRACE = { name: 'Grace', plan: 'free' }
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/**
 * What each example claims, checked on its output. A file not listed here
 * fails the suite: a new example says what it shows.
 */
const claims: Record<string, (stdout: string) => void> = {
  'express.ts': (stdout) => {
    const lines = linesOf(stdout)
    const inRequest = lines.filter((l) => ['listing orders', 'placing order', 'order placed'].includes(String(l.msg)))
    expect(inRequest).toHaveLength(5)
    // Every line logged in a request carries its id and route, and its user's looked-up profile.
    for (const line of inRequest) {
      expect(line.enrich, JSON.stringify(line)).toBeUndefined()
      expect(typeof line.reqId).toBe('string')
      expect(typeof line.route).toBe('string')
      if (line.userId === 'u1') expect(line.user).toEqual(ADA)
      else if (line.userId === 'u2') expect(line.user).toEqual(GRACE)
      else expect(line.user).toBeUndefined()
    }
    expect(inRequest.filter((l) => l.user !== undefined)).toHaveLength(4)
    // A well-formed incoming id is kept; the forged one and the missing ones are generated.
    const ids = inRequest.map((l) => String(l.reqId))
    expect(ids).toContain('edge-4711')
    expect(ids.filter((id) => id !== 'edge-4711').every((id) => UUID.test(id))).toBe(true)
    expect(stdout).not.toContain('"level":60')
    // Both lines of the POST share its id, and the client got that id back.
    const post = inRequest.filter((l) => l.route === '/orders')
    expect(post.map((l) => l.msg)).toEqual(['placing order', 'order placed'])
    expect(post[0]?.reqId).toBe(post[1]?.reqId)
    const echoed = lines.filter((l) => l.msg === 'client got a response').map((l) => l.id)
    expect(new Set(echoed)).toEqual(new Set(ids))
  },
  'fastify.ts': (stdout) => {
    const lines = linesOf(stdout)
    const handled = lines.filter((l) => ['listing orders', 'placing order', 'order placed'].includes(String(l.msg)))
    expect(handled).toHaveLength(4)
    for (const line of [...handled, ...lines.filter((l) => l.msg === 'request completed')]) {
      expect(line.enrich, JSON.stringify(line)).toBeUndefined()
      expect(typeof line.route).toBe('string')
      expect(line.user).toEqual(line.userId === 'u1' ? ADA : GRACE)
    }
    // app.log, not request.log: the request id comes from the context.
    const placed = handled.find((l) => l.msg === 'order placed')
    const placing = handled.find((l) => l.msg === 'placing order')
    expect(typeof placed?.reqId).toBe('string')
    expect(placed?.reqId).toBe(placing?.reqId)
    const ids = handled.map((l) => String(l.reqId))
    expect(ids).toContain('edge-4711')
    expect(stdout).not.toContain('"level":60')
  },
  'user-lookup.ts': (stdout) => {
    const lines = linesOf(stdout)
    const viewed = (userId: string) => lines.filter((l) => l.msg === 'order viewed' && l.userId === userId)
    for (const line of [...viewed('u1'), ...viewed('u2')]) {
      expect(line.enrich, JSON.stringify(line)).toBeUndefined()
      expect(line.user).toMatchObject(line.userId === 'u1' ? ADA : GRACE)
    }
    for (const line of viewed('slow')) expect(line.enrich).toEqual({ timeout: ['user'] })
    for (const line of [...viewed('broken'), ...viewed('garbled')]) expect(line.enrich).toEqual({ error: ['user'] })
    // An unknown user is "no such user": no field, no problem.
    for (const line of viewed('nobody')) expect(line).not.toHaveProperty('user')
    for (const line of viewed('nobody')) expect(line).not.toHaveProperty('enrich')
    expect(viewed('u1')).toHaveLength(4)
    expect(viewed('slow')).toHaveLength(2)
    // Round two is served from the caches: no new request reaches the service.
    const rounds = lines.filter((l) => l.msg === 'round done')
    expect(rounds.map((l) => l.userServiceRequests)).toEqual([6, 6])
  },
  'demo.ts': (stdout) => {
    // One line of introduction, before anything else.
    expect(stdout.split('\n')[0]).toMatch(
      /^160 requests over 8 s to an Express app .* healthy, then failing, then slow, then hanging/,
    )
    // Every sample shows, each from its phase.
    for (const sample of [
      'a request line with its user, served from the cache',
      'the user service failing, a new user: the error is recorded, the line written',
      'the user service failing, a known user: its stale value served',
      'the user service hanging: written at the deadline',
      'the breaker open: no call made, the line written at once',
    ]) {
      expect(stdout).toMatch(new RegExp(`  ${sample}:\n {4}\\d{4}-`))
    }
    expect(stdout).not.toContain('(none in this run)')
    expect(stdout).toMatch(/^ {2}timeouts: computes that ran past/m)
    expect(stdout).toMatch(/^lines written at deadline +\d+ \(written when the 20 ms deadline passed/m)
    const logged = /^lines logged +(\d+)$/m.exec(stdout)?.[1]
    expect(logged).toBeDefined()
    expect(/^lines written +(\d+)$/m.exec(stdout)?.[1]).toBe(logged)
  },
  'transport.ts': (stdout) => {
    const lines = linesOf(stdout)
    expect(lines.map((l) => l.msg)).toEqual(['service started', 'request handled', 'request handled'])
    for (const line of lines) expect(line.service).toEqual({ name: 'checkout', version: '1.4.2' })
    expect(lines.slice(1).map((l) => [l.requestId, l.user])).toEqual([
      ['req-1', { id: 'user-17', plan: 'pro' }],
      ['req-2', { id: 'user-42', plan: 'free' }],
    ])
  },
}

describe('examples/', () => {
  it('holds runnable .ts files and .mjs modules only', () => {
    expect(runnable).toContain('demo.ts')
    expect(files.filter((f) => !f.endsWith('.ts') && !f.endsWith('.mjs'))).toEqual([])
  })

  it.each(runnable)(
    '%s runs with tsx, exits 0 by itself, and shows what it claims',
    async (file) => {
      const result = await runExample(file)
      const report = `${file}: code ${result.code}, signal ${result.signal} after ${Math.round(result.elapsedMs)} ms\n--- stderr\n${result.stderr}`
      expect(result.signal, report).toBeNull()
      expect(result.code, report).toBe(0)
      expect(result.stdout.trim().length, report).toBeGreaterThan(0)
      if (file === 'demo.ts') {
        // stderr is a pipe here: plain progress lines, no carriage-return frames, ending at the total.
        expect(result.stderr).not.toContain('\r')
        expect(result.stderr.trim().split('\n').at(-1)).toBe('160/160 requests, done')
      }
      const claim = claims[file]
      expect(claim, `${file} has no check of its output in test/examples`).toBeDefined()
      claim?.(result.stdout)
    },
    TIMEOUT_MS + 10_000,
  )
})
