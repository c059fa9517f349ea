import type http from 'node:http'
import { afterEach, describe, expect, it } from 'vitest'
import { userEnricher } from '../../examples/user-lookup.js'
import type { Fields, Pipeline, PipelineEvent } from '../../src/index.js'
import { runChild } from '../helpers/child.js'
import { manualClock } from '../helpers/deferred.js'
import { type Answer, closeModeServers, Mode, modeServer, refusedUrl } from '../helpers/mode-server.js'
import { trackPipelines } from '../helpers/pipelines.js'

// The keyed lookup of examples/user-lookup.ts against a real HTTP user service
// on 127.0.0.1 in each of its modes; real timers, since real I/O is awaited.

const { pipeline, closePipelines } = trackPipelines()

afterEach(async () => {
  await closePipelines()
  await closeModeServers()
})

const USERS: Record<string, { name: string; plan: string }> = {
  u1: { name: 'Ada', plan: 'pro' },
  u2: { name: 'Grace', plan: 'free' },
}

function userRoute(req: http.IncomingMessage): Answer | undefined {
  const user = USERS[req.url?.replace('/users/', '') ?? '']
  return user === undefined ? undefined : { json: user }
}

const DEADLINE_MS = 20
const ctx = (userId: string) => ({ context: { userId } })

async function setup(mode: Mode, options: Parameters<typeof userEnricher>[1] = {}) {
  const service = await modeServer(userRoute, mode)
  const p = pipeline({ deadlineMs: DEADLINE_MS, enrichers: [userEnricher(service.url, options)] })
  const events: PipelineEvent[] = []
  p.onEvent((e) => events.push(e))
  return { service, p, events }
}

/** enrich() with the elapsed real time. */
async function timed(p: Pipeline, userId: string): Promise<{ fields: Fields; ms: number }> {
  const started = performance.now()
  const fields = await p.enrich(ctx(userId))
  return { fields, ms: performance.now() - started }
}

describe('user lookup example: a keyed enricher against an HTTP user service', () => {
  it('healthy: the line carries the user, and a second line for the user costs no request', async () => {
    const { service, p } = await setup(Mode.Healthy, { timeoutMs: 1_000 })
    // The first lookup of a cold user may take longer than the line deadline on a loaded machine.
    await p.enrich(ctx('u1'))
    for (let i = 0; i < 50 && (await p.enrich(ctx('u1'))).user === undefined; i++);
    const { fields, ms } = await timed(p, 'u1')
    expect(fields).toEqual({ user: { id: 'u1', name: 'Ada', plan: 'pro' } })
    expect(ms).toBeLessThan(DEADLINE_MS)
    expect(service.requests).toHaveLength(1)
  })

  it('an unknown user (404) is no user, remembered, not an error', async () => {
    const { service, p, events } = await setup(Mode.Healthy, { timeoutMs: 1_000 })
    const first = await p.enrich(ctx('nobody'))
    const second = await p.enrich(ctx('nobody'))
    expect(first.user).toBeUndefined()
    expect(second).toEqual({})
    expect(events.filter((e) => e.type === 'error')).toEqual([])
    expect(service.requests).toHaveLength(1)
  })

  it('slow: the line is written at the deadline, marked timeout; a later line has the user', async () => {
    const { p, service } = await setup(Mode.Slow, { timeoutMs: 1_000 })
    service.slowMs = 150
    const { fields, ms } = await timed(p, 'u2')
    expect(fields).toEqual({ enrich: { timeout: ['user'] } })
    expect(ms).toBeLessThan(DEADLINE_MS + 50)
    let later: Fields = {}
    for (let i = 0; i < 50 && later.user === undefined; i++) later = await p.enrich(ctx('u2'))
    expect(later).toEqual({ user: { id: 'u2', name: 'Grace', plan: 'free' } })
  })

  it('hanging: no line waits past the deadline, and the lookup is abandoned at its timeoutMs', async () => {
    const { p, events } = await setup(Mode.Hang, { timeoutMs: 100 })
    const timedOut = new Promise<void>((resolve) => p.onTimeout(() => resolve()))
    const results = await Promise.all([timed(p, 'u1'), timed(p, 'u1'), timed(p, 'u2')])
    for (const { fields, ms } of results) {
      expect(fields).toEqual({ enrich: { timeout: ['user'] } })
      expect(ms).toBeLessThan(DEADLINE_MS + 50)
    }
    await timedOut
    expect(events).toContainEqual({ type: 'timeout', enricher: 'user', timeoutMs: 100 })
    // Remembered as failed: the next line is written at once, without asking again.
    const { fields, ms } = await timed(p, 'u1')
    expect(fields).toEqual({ enrich: { timeout: ['user'] } })
    expect(ms).toBeLessThan(DEADLINE_MS)
  })

  const failures: Array<[Mode, string]> = [
    [Mode.Status500, 'HTTP_500'],
    [Mode.InvalidJson, 'INVALID_JSON'],
    [Mode.Huge, 'TOO_LARGE'],
    [Mode.HugeChunked, 'TOO_LARGE'],
  ]
  it.each(failures)('%s: recorded as an error (%s), and the error tier spares the service', async (mode, code) => {
    const { service, p, events } = await setup(mode, { timeoutMs: 1_000 })
    const lines: Fields[] = []
    for (let i = 0; i < 50 && !lines.some((l) => (l.enrich as { error?: unknown })?.error); i++) {
      lines.push(await p.enrich(ctx('u1')))
    }
    expect(lines.at(-1)).toEqual({ enrich: { error: ['user'] } })
    expect(events).toContainEqual(expect.objectContaining({ type: 'error', enricher: 'user', code }))
    const before = service.requests.length
    expect(before).toBe(1)
    expect(await p.enrich(ctx('u1'))).toEqual({ enrich: { error: ['user'] } })
    expect(service.requests).toHaveLength(before)
  })

  it('connection refused: recorded as an error, the line still written by the deadline', async () => {
    const url = await refusedUrl()
    const p = pipeline({ deadlineMs: DEADLINE_MS, enrichers: [userEnricher(url, { timeoutMs: 1_000 })] })
    let fields: Fields = {}
    for (let i = 0; i < 50 && fields.enrich === undefined; i++) {
      const r = await timed(p, 'u1')
      expect(r.ms).toBeLessThan(DEADLINE_MS + 50)
      fields = r.fields
    }
    expect(fields).toEqual({ enrich: { error: ['user'] } })
  })

  it('after the breaker opens the service sees no request until the one half-open probe', async () => {
    const clock = manualClock()
    const service = await modeServer(userRoute, Mode.Status500)
    const p = pipeline({
      clock,
      deadlineMs: 1_000,
      enrichers: [
        userEnricher(service.url, { timeoutMs: 1_000, breaker: { failureThreshold: 3, halfOpenAfterMs: 10_000 } }),
      ],
    })
    // Three users, three failures: the breaker opens.
    for (const id of ['a', 'b', 'c']) await p.enrich(ctx(id))
    expect(service.requests).toHaveLength(3)
    expect(p.stats().enrichers[0]?.breaker).toBe('open')

    service.mode = Mode.Healthy
    for (const id of ['u1', 'u2', 'd', 'e']) expect(await p.enrich(ctx(id))).toEqual({ enrich: { open: ['user'] } })
    clock.advance(9_999)
    expect(await p.enrich(ctx('u1'))).toEqual({ enrich: { open: ['user'] } })
    expect(service.requests).toHaveLength(3)

    clock.advance(1)
    // Several lines at once: one probe goes out; the others fail fast rather than queue behind it.
    const lines = await Promise.all([p.enrich(ctx('u1')), p.enrich(ctx('u2')), p.enrich(ctx('u2'))])
    expect(service.requests).toHaveLength(4)
    expect(lines.filter((l) => l.user !== undefined)).toHaveLength(1)
    expect(p.stats().enrichers[0]?.breaker).toBe('closed')
  })

  it('the example runs with tsx and exits by itself', async () => {
    const result = await runChild('../../examples/user-lookup.ts', [], { timeoutMs: 20_000 })
    expect(result.code).toBe(0)
    const lines = result.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(lines).toContainEqual(
      expect.objectContaining({ userId: 'u1', user: { id: 'u1', name: 'Ada', plan: 'pro' } }),
    )
    expect(lines).toContainEqual(expect.objectContaining({ userId: 'slow', enrich: { timeout: ['user'] } }))
    expect(lines).toContainEqual(expect.objectContaining({ userId: 'broken', enrich: { error: ['user'] } }))
    expect(lines.at(-1)).toMatchObject({ msg: 'user lookup stats', breaker: 'closed' })
  })
})
