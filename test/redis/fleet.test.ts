// Two real Node processes sharing one real redis-server: the fleet behaviour
// of the shared tier. Fails, never skips, when redis-server cannot start.
import { afterAll, describe, expect, it } from 'vitest'
import { type Instance, startInstance } from '../helpers/instance.js'
import type { RedisServer } from '../helpers/redis-server.js'
import { redisForFile } from '../helpers/redis-suite.js'
import { startUserService, type UserService } from '../helpers/user-service.js'

const TTL_MS = 1_500
let redis: RedisServer
let users: UserService
let a: Instance
let b: Instance

// Fails, never skips, when redis-server cannot start.
redisForFile(async (server) => {
  redis = server
  users = await startUserService()
  const env = {
    REDIS_PORT: String(redis.port),
    USERS_URL: users.url,
    PREFIX: 'fleet',
    TTL_MS: String(TTL_MS),
    STALE_MS: '0',
  }
  ;[a, b] = await Promise.all([
    startInstance('redis/instance.ts', { env }),
    startInstance('redis/instance.ts', { env }),
  ])
  // Both subscribers listen before any invalidation is sent.
  for (const i of [a, b]) await until(async () => (await i.request<Stats>({ cmd: 'stats' })).usersStore.listening)
})

afterAll(async () => {
  const codes = await Promise.all([a?.stop(), b?.stop()])
  await users?.close()
  // After close, nothing of ours kept either process alive.
  if (a !== undefined) expect(codes).toEqual([0, 0])
})

interface Stats {
  usersStore: { listening: boolean; breaker: string }
  enricherStore: { listening: boolean; breaker: string }
}
type Names = { names: Array<string | null> }
type Stamp = { t: number }

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

async function until(check: () => Promise<boolean>, ms = 5_000): Promise<void> {
  const end = performance.now() + ms
  while (!(await check())) {
    if (performance.now() > end) throw new Error('condition not met in time')
    await sleep(10)
  }
}

describe('a fleet of two processes sharing one Redis', () => {
  it('makes one request per user per TTL to the user service for the pair', async () => {
    const ids = Array.from({ length: 20 }, (_, i) => `ttl-${i}`)
    const expected = ids.map((id) => `name of ${id}`)
    const round = async (): Promise<void> => {
      const [ra, rb] = await Promise.all([
        a.request<Names>({ cmd: 'enrich', users: ids }),
        b.request<Names>({ cmd: 'enrich', users: ids }),
      ])
      expect(ra.names).toEqual(expected)
      expect(rb.names).toEqual(expected)
    }
    const started = performance.now()
    await round()
    // The values' lives start when they are written, at the end of the first round: on a
    // loaded machine that round alone takes hundreds of ms, so the wait below counts from it.
    const filled = performance.now()
    await round() // within the TTL: neither process asks again
    await b.request<Names>({ cmd: 'enrich', users: ids })
    expect(performance.now() - started).toBeLessThan(TTL_MS)
    expect(users.count('enrich:ttl-')).toBe(20)

    await sleep(TTL_MS + 300 - (performance.now() - filled))
    await round() // the TTL passed for both: one of them asks, once per user
    expect(users.count('enrich:ttl-')).toBe(40)
    for (const id of ids) expect(users.hits.get(`enrich:${id}`)).toBe(2)
  })

  it('sends a 1,000-caller stampede spread over both processes to the user service once', async () => {
    users.delayMs = 100
    try {
      for (const key of ['hot-1', 'hot-2', 'hot-3']) {
        const keys = Array.from({ length: 500 }, () => key)
        const [ra, rb] = await Promise.all([
          a.request<Names>({ cmd: 'get', keys }),
          b.request<Names>({ cmd: 'get', keys }),
        ])
        expect(new Set([...ra.names, ...rb.names])).toEqual(new Set([`name of ${key}`]))
        expect(users.hits.get(`users:${key}`)).toBe(1)
      }
      console.log(`stampede: 3 x 1,000 callers over 2 processes -> ${users.count('users:hot-')} user-service requests`)
    } finally {
      users.delayMs = 0
    }
  })

  it('has the other process drop an entry within 100 ms of delete(), invalidateTags() or invalidatePattern()', async () => {
    const latencies: Record<string, number[]> = { delete: [], tags: [], pattern: [] }
    for (let i = 0; i < 5; i++) {
      for (const kind of ['delete', 'tags', 'pattern'] as const) {
        const key = `inv-${kind}-${i}`
        await a.request({ cmd: 'get', keys: [key], tags: [`tag-${key}`] })
        await b.request({ cmd: 'get', keys: [key] }) // from Redis, with its tags
        expect(users.hits.get(`users:${key}`)).toBe(1)
        expect((await b.request<{ state: string }>({ cmd: 'peek', key })).state).toBe('fresh')

        const watched = b.request<Stamp>({ cmd: 'watch', key })
        await sleep(20)
        const sent =
          kind === 'delete'
            ? await a.request<Stamp>({ cmd: 'delete', key })
            : kind === 'tags'
              ? await a.request<Stamp>({ cmd: 'invalidateTags', tags: [`tag-${key}`] })
              : await a.request<Stamp>({ cmd: 'invalidatePattern', glob: `inv-${kind}-${i}*` })
        const seen = await watched
        latencies[kind]?.push(seen.t - sent.t)
        expect((await a.request<{ state: string }>({ cmd: 'peek', key })).state).toBe('miss')
      }
    }
    const all = Object.values(latencies).flat()
    console.log(
      `invalidation latency, ms: ${Object.entries(latencies)
        .map(([k, v]) => `${k} max ${Math.max(...v).toFixed(2)}`)
        .join(', ')}; overall median ${all.sort((x, y) => x - y)[Math.floor(all.length / 2)]?.toFixed(2)}`,
    )
    for (const l of all) expect(l).toBeLessThan(100)
  })
})
