// Redis hung (kill -STOP) and restarted under two real app processes: log
// calls never notice, and the shared tier comes back by itself. Fails, never
// skips, when redis-server cannot start.
import { afterAll, describe, expect, it } from 'vitest'
import { type Instance, startInstance } from '../helpers/instance.js'
import type { RedisServer } from '../helpers/redis-server.js'
import { redisForFile } from '../helpers/redis-suite.js'
import { startUserService, type UserService } from '../helpers/user-service.js'

let redis: RedisServer
let users: UserService
let a: Instance
let b: Instance

interface StoreStats {
  commands: number
  failures: number
  timeouts: number
  rejected: number
  listening: boolean
  breaker: string
  status: string
}
interface Stats {
  written: number
  queued: { command: number; offline: number }
  sample: string[]
  enricherStore: StoreStats
  usersStore: StoreStats
}
interface Samples {
  at: number[]
  us: number[]
  controlUs: number[]
}
interface LoadEnd {
  logged: number
  written: number
  withUser: number
  controlWritten: number
}
type Names = { names: Array<string | null> }
type Stamp = { t: number }

// Fails, never skips, when redis-server cannot start.
redisForFile(async (server) => {
  redis = server
  users = await startUserService()
  const env = {
    REDIS_PORT: String(redis.port),
    USERS_URL: users.url,
    PREFIX: 'faults',
    TTL_MS: '1000',
    STALE_MS: '10000',
  }
  ;[a, b] = await Promise.all([
    startInstance('redis/instance.ts', { env, execArgv: ['--expose-gc'] }),
    startInstance('redis/instance.ts', { env, execArgv: ['--expose-gc'] }),
  ])
  await Promise.all([a, b].map(listening))
})

afterAll(async () => {
  redis?.resume()
  const codes = await Promise.all([a?.stop(), b?.stop()])
  await users?.close()
  if (a !== undefined) expect(codes).toEqual([0, 0])
})

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const wall = (): number => performance.timeOrigin + performance.now()

async function until(check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = performance.now() + ms
  while (!(await check())) {
    if (performance.now() > end) throw new Error('condition not met in time')
    await sleep(20)
  }
}

const stats = (i: Instance): Promise<Stats> => i.request<Stats>({ cmd: 'stats' })

/** Both stores of an instance connected, breakers closed, subscribers listening. */
function listening(i: Instance): Promise<void> {
  return until(async () => {
    const s = await stats(i)
    return [s.enricherStore, s.usersStore].every((x) => x.status === 'ready' && x.breaker === 'closed' && x.listening)
  })
}

function p99(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y)
  return s[Math.min(s.length - 1, Math.floor(s.length * 0.99))] as number
}

/** The shared tier works again: a value computed by one process is read by the other, and an invalidation reaches it. */
async function sharedAgain(key: string): Promise<number> {
  await a.request<Names>({ cmd: 'enrich', users: [key] })
  const rb = await b.request<Names>({ cmd: 'enrich', users: [key] })
  expect(rb.names).toEqual([`name of ${key}`])
  expect(users.hits.get(`enrich:${key}`)).toBe(1)

  await a.request({ cmd: 'get', keys: [key] })
  await b.request({ cmd: 'get', keys: [key] })
  expect(users.hits.get(`users:${key}`)).toBe(1)
  const watched = b.request<Stamp>({ cmd: 'watch', key })
  await sleep(20)
  const sent = await a.request<Stamp>({ cmd: 'delete', key })
  const latency = (await watched).t - sent.t
  // A few ms on a quiet machine, 114 ms once at load average 8; without pub/sub the entry
  // would live on until its TTL (1 s here).
  expect(latency).toBeLessThan(250)
  return latency
}

describe('the shared tier when Redis hangs or restarts', () => {
  it('writes every line at 2,000 lines/s through a 5 s kill -STOP of Redis, with p99 call time and heap unchanged, then recovers', async () => {
    const WARM_MS = 2_000
    const PHASE_MS = 5_000
    const ATTEMPTS = 3
    const { startedAt } = await a.request<{ startedAt: number }>({
      cmd: 'loadStart',
      rate: 2_000,
      users: 300,
      coldEvery: 10,
      tag: 'stop',
    })
    await sleep(WARM_MS)
    let ratio = Number.POSITIVE_INFINITY
    let controlRatio = Number.POSITIVE_INFINITY
    let hungP99 = Number.POSITIVE_INFINITY
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      await sleep(PHASE_MS) // the baseline: Redis answering
      const heapBefore = (await a.request<{ heapUsed: number }>({ cmd: 'heap' })).heapUsed
      const before = await stats(a)
      redis.pause()
      const pausedAt = wall()
      await sleep(1_000)
      const settled = await stats(a)
      await sleep(PHASE_MS - 1_000)
      const during = await stats(a)
      const heapAfter = (await a.request<{ heapUsed: number }>({ cmd: 'heap' })).heapUsed
      redis.resume()
      const resumedAt = wall()

      // Call time of the log call, measured in the child: the 5 s before the hang against the 5 s of it.
      const s = await a.request<Samples>({ cmd: 'loadSamples' })
      const pause = pausedAt - startedAt
      const resume = resumedAt - startedAt
      const real = { base: [] as number[], hung: [] as number[] }
      const ctl = { base: [] as number[], hung: [] as number[] }
      s.at.forEach((t, i) => {
        const window = t >= pause - PHASE_MS && t < pause ? 'base' : t >= pause && t < resume ? 'hung' : undefined
        if (window === undefined) return
        real[window].push(s.us[i] as number)
        ctl[window].push(s.controlUs[i] as number)
      })
      ratio = p99(real.hung) / p99(real.base)
      controlRatio = p99(ctl.hung) / p99(ctl.base)
      hungP99 = p99(real.hung)
      const heapGrowth = heapAfter - heapBefore
      const commands = (x: Stats): number => x.enricherStore.commands + x.usersStore.commands
      console.log(
        `kill -STOP 5 s at 2,000 lines/s, attempt ${attempt}: p99 call ${p99(real.base).toFixed(1)} us before vs ` +
          `${p99(real.hung).toFixed(1)} us during (${real.base.length} and ${real.hung.length} calls, ratio ${ratio.toFixed(2)}); ` +
          `control without a store ${p99(ctl.base).toFixed(1)} vs ${p99(ctl.hung).toFixed(1)} us (ratio ${controlRatio.toFixed(2)}); ` +
          `heap growth ${(heapGrowth / 1_048_576).toFixed(2)} MB; Redis commands sent: ${commands(settled) - commands(before)} ` +
          `in the first second of the hang (before the breaker opened), ${commands(during) - commands(settled)} in the next 4 s; ` +
          `ioredis queues at the end: ${during.queued.command} sent unanswered, ${during.queued.offline} offline`,
      )
      expect(heapGrowth).toBeLessThan(5 * 1_048_576)
      // Once the breaker is open only its probes go out: nothing per lookup, nothing queued.
      expect(during.enricherStore.breaker).not.toBe('closed')
      expect(commands(during) - commands(settled)).toBeLessThan(40)
      expect(during.queued.offline).toBe(0)

      // Recovery after kill -CONT, without restarting anything.
      await listening(a)
      console.log(`store ready again ${(wall() - resumedAt).toFixed(0)} ms after kill -CONT`)
      if (ratio <= 1.1) break
      // Slower during the hang, but so was the same call without a store: the machine was
      // busy (other processes), not the log call. Measure again; a real slowdown fails now.
      if (controlRatio <= 1.1) break
    }
    const end = await a.request<LoadEnd>({ cmd: 'loadStop' })
    // Every line logged was written, through the hang(s) and after.
    expect(end.written).toBe(end.logged)
    expect(end.controlWritten).toBe(end.logged)
    // The in-process tier kept serving: the never-seen users (one line in ten) lack the field,
    // and on a loaded machine a few more lines of a user whose first lookup was still running
    // (82% carried it in a CI run at load average 7, 74% on Node 22 at load average 6). A
    // tier that stopped serving during the 5 s hang would leave about 40% of the run's lines
    // without it.
    expect(end.withUser).toBeGreaterThan(end.logged * 0.65)
    // p99 unchanged within 20%: outright, or within 20% of how the same call without a
    // store drifted in the same windows (each line goes through both, so the machine's own
    // load, ±15% on this 2-core box, moves both alike; 1.12 in a run on Node 22 at load
    // average 8). One Redis command on the log call would be orders of magnitude more: its
    // timeout alone is 100 ms.
    expect(ratio).toBeLessThanOrEqual(Math.max(1.2, controlRatio * 1.2))
    expect(hungP99).toBeLessThan(1_000)

    const latency = await sharedAgain('after-stop')
    console.log(
      `${end.logged} lines logged, ${end.written} written, ${end.withUser} with the user; invalidation after recovery ${latency.toFixed(2)} ms`,
    )
  }, 60_000)

  it('recovers from a restart of redis-server without restarting the app', async () => {
    await sharedAgain('before-restart')
    const t0 = performance.now()
    await redis.restart()
    // The app keeps serving while Redis is away and after: lookups never fail.
    const during = await a.request<Names>({ cmd: 'enrich', users: ['before-restart', 'during-restart'] })
    expect(during.names).toEqual(['name of before-restart', 'name of during-restart'])
    await Promise.all([a, b].map(listening))
    const back = performance.now() - t0
    const latency = await sharedAgain('after-restart')
    console.log(
      `restart: shared tier back ${back.toFixed(0)} ms after the restart began; invalidation ${latency.toFixed(2)} ms`,
    )
  }, 20_000)
})
