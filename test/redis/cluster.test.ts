// Two real Node processes sharing a real Redis Cluster (three masters, one
// replica each, on loopback): single flight, shared values and invalidations
// across processes, a resharding under load, a master killed under load.
// Fails, never skips, when redis-server or redis-cli cannot start.
import { Cluster, Redis } from 'ioredis'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import type { Invalidation } from '../../src/index.js'
import { RECOMMENDED_CLUSTER_OPTIONS, redisStore } from '../../src/redis/index.js'
import { type Instance, startInstance } from '../helpers/instance.js'
import { keySlot, type RedisCluster, startRedisCluster } from '../helpers/redis-cluster.js'
import { startUserService, type UserService } from '../helpers/user-service.js'

let cluster: RedisCluster | undefined
let failure: unknown
let users: UserService
let a: Instance
let b: Instance
let prefix = ''

interface StoreStats {
  commands: number
  failures: number
  timeouts: number
  rejected: number
  received: number
  listening: boolean
  breaker: string
  status: string
}
interface Stats {
  usersStore: StoreStats
  enricherStore: StoreStats
  users: { store?: { hits: number; misses: number } }
}
type Names = { names: Array<string | null> }
type Stamp = { t: number }
interface LookupsEnd {
  rounds: number
  lookups: number
  wrong: number
  errors: string[]
}
interface LoadEnd {
  logged: number
  written: number
  withUser: number
  controlWritten: number
}
interface Samples {
  us: number[]
  controlUs: number[]
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

async function until(check: () => Promise<boolean> | boolean, ms = 10_000, what = 'condition'): Promise<void> {
  const end = performance.now() + ms
  while (!(await check())) {
    if (performance.now() > end) throw new Error(`${what} not met in ${ms} ms`)
    await sleep(20)
  }
}

const stats = (i: Instance): Promise<Stats> => i.request<Stats>({ cmd: 'stats' })

beforeAll(async () => {
  try {
    cluster = await startRedisCluster({ masters: 3, replicas: 1 })
  } catch (e) {
    failure = e
    return
  }
  // A prefix whose users store sits among the first slots of the first master
  // (0-5460): `redis-cli --cluster reshard` moves a master's lowest slots first.
  for (let n = 0; ; n++) {
    if (keySlot(`{cluster-${n}:users:1}`) < 100) {
      prefix = `cluster-${n}`
      break
    }
  }
  users = await startUserService()
  const env = {
    REDIS_CLUSTER: cluster.nodes.map((n) => n.port).join(','),
    USERS_URL: users.url,
    PREFIX: prefix,
    TTL_MS: '60000',
    STALE_MS: '0',
    // Six redis-servers, redis-cli and two apps on a shared 2-core machine: at 100 ms,
    // the command timeout would measure the machine's load, not the cluster's redirections.
    COMMAND_TIMEOUT_MS: '1000',
  }
  ;[a, b] = await Promise.all([
    startInstance('redis/instance.ts', { env, readyTimeoutMs: 30_000 }),
    startInstance('redis/instance.ts', { env, readyTimeoutMs: 30_000 }),
  ])
  for (const i of [a, b]) {
    await until(
      async () => {
        const s = await stats(i)
        return s.usersStore.listening && s.usersStore.status === 'ready'
      },
      15_000,
      'subscribed',
    )
  }
}, 90_000)

beforeEach(() => {
  if (failure !== undefined) throw failure
})

afterAll(async () => {
  // After a master died, ioredis holds the process up to 2.5 s past disconnect(): its
  // disconnectTimeout (2 s) for connections not yet closed, and a sharded subscriber's
  // retry timer (up to 2.5 s). Under the suite's load on 2 cores, that and the shutdown
  // took more than the helper's 5 s.
  const codes = await Promise.all([a?.stop(15_000), b?.stop(15_000)])
  await users?.close()
  await cluster?.stop()
  // After close, nothing of ours kept either process alive.
  if (a !== undefined) expect(codes, `${a.stderr().slice(-1_000)}\n${b.stderr().slice(-1_000)}`).toEqual([0, 0])
}, 40_000)

describe('a fleet of two processes sharing a Redis Cluster', () => {
  it("keeps one store's keys on one slot, and shares values between the processes", async () => {
    await a.request({ cmd: 'get', keys: ['shared-1', 'shared-2'], tags: ['org:1'] })
    const rb = await b.request<Names>({ cmd: 'get', keys: ['shared-1', 'shared-2'] })
    expect(rb.names).toEqual(['name of shared-1', 'name of shared-2'])
    expect(users.count('users:shared-')).toBe(2)
    const c = cluster as RedisCluster
    const slot = keySlot(`{${prefix}:users:1}`)
    const owner = await c.masterOf(slot)
    const onOwner = (await c.cli(['-p', String(owner), 'cluster', 'getkeysinslot', String(slot), '100'])).trim()
    expect(onOwner.split('\n').sort()).toEqual(
      [`{${prefix}:users:1}:t:org:1`, `{${prefix}:users:1}:v:shared-1`, `{${prefix}:users:1}:v:shared-2`].sort(),
    )
  })

  it('sends 200 callers per process on a cold key to the user service once', async () => {
    users.delayMs = 100
    try {
      for (const key of ['hot-1', 'hot-2', 'hot-3']) {
        const keys = Array.from({ length: 200 }, () => key)
        const [ra, rb] = await Promise.all([
          a.request<Names>({ cmd: 'get', keys }),
          b.request<Names>({ cmd: 'get', keys }),
        ])
        expect(new Set([...ra.names, ...rb.names])).toEqual(new Set([`name of ${key}`]))
        expect(users.hits.get(`users:${key}`)).toBe(1)
      }
    } finally {
      users.delayMs = 0
    }
  })

  it('has the other process drop an entry within 500 ms of delete(), invalidateTags() or invalidatePattern()', async () => {
    const latencies: number[] = []
    for (let i = 0; i < 3; i++) {
      for (const kind of ['delete', 'tags', 'pattern'] as const) {
        const key = `inv-${kind}-${i}`
        await a.request({ cmd: 'get', keys: [key], tags: [`tag-${key}`] })
        await b.request({ cmd: 'get', keys: [key] })
        expect(users.hits.get(`users:${key}`)).toBe(1)
        expect((await b.request<{ state: string }>({ cmd: 'peek', key })).state).toBe('fresh')
        const watched = b.request<Stamp>({ cmd: 'watch', key }, 5_000)
        await sleep(20)
        const sent =
          kind === 'delete'
            ? await a.request<Stamp>({ cmd: 'delete', key })
            : kind === 'tags'
              ? await a.request<Stamp>({ cmd: 'invalidateTags', tags: [`tag-${key}`] })
              : await a.request<Stamp>({ cmd: 'invalidatePattern', glob: `inv-${kind}-${i}*` })
        const seen = await watched
        latencies.push(seen.t - sent.t)
        // Gone from Redis too: the next read computes again.
        await until(async () => (await b.request<{ state: string }>({ cmd: 'peek', key })).state === 'miss')
        await b.request({ cmd: 'get', keys: [key] })
        expect(users.hits.get(`users:${key}`)).toBe(2)
      }
    }
    console.log(`cluster invalidation latency, ms: max ${Math.max(...latencies).toFixed(2)}`)
    for (const l of latencies) expect(l).toBeLessThan(500)
  })

  it('spreads a store over several slots with `slots`, and deletes, invalidates tags and patterns across them', async () => {
    const c = cluster as RedisCluster
    const client = new Cluster(c.startupNodes, {
      ...RECOMMENDED_CLUSTER_OPTIONS,
      redisOptions: { commandTimeout: 1_000 },
    })
    client.on('error', () => {})
    const other = client.duplicate()
    other.on('error', () => {})
    const s = redisStore({ client, prefix: 'spread', slots: 8, commandTimeoutMs: 1_000 })
    const listener = redisStore({ client: other, prefix: 'spread', slots: 8, commandTimeoutMs: 1_000 })
    try {
      const heard: Invalidation[] = []
      listener.subscribe((inv) => heard.push(inv))
      await until(() => s.stats().status === 'ready' && listener.stats().listening, 10_000, 'ready')
      const ids = Array.from({ length: 40 }, (_, i) => i)
      for (const i of ids) await s.set(`k${i}`, { value: i, freshMs: 60_000, staleMs: 0, tags: ['all', `g${i % 2}`] })
      const names: string[] = []
      for (const node of client.nodes('master')) {
        let cursor = '0'
        do {
          const [next, found] = await node.scan(cursor, 'MATCH', '{spread:1:*', 'COUNT', 1_000)
          cursor = next
          names.push(...found)
        } while (cursor !== '0')
      }
      const tags = new Set(names.map((n) => n.slice(0, n.indexOf('}') + 1)))
      expect(tags.size).toBe(8)
      expect(new Set([...tags].map(keySlot)).size).toBe(8)
      expect(names.filter((n) => n.includes('}:v:'))).toHaveLength(40)
      const present = async (): Promise<number[]> =>
        (await Promise.all(ids.map(async (i) => ((await listener.get(`k${i}`)) === undefined ? -1 : i)))).filter(
          (i) => i >= 0,
        )

      await s.invalidate({ keys: ['k0', 'k1', 'k2', 'k3'] })
      await s.invalidate({ tags: ['g1'] })
      await s.invalidate({ pattern: 'k1*' })
      expect(await present()).toEqual(ids.filter((i) => i >= 4 && i % 2 === 0 && !String(i).startsWith('1')))
      await until(() => heard.length === 3, 5_000, 'three invalidations heard')
      expect(heard).toEqual([{ keys: ['k0', 'k1', 'k2', 'k3'] }, { tags: ['g1'] }, { pattern: 'k1*' }])
      await s.invalidate({ tags: ['all'] })
      expect(await present()).toEqual([])
    } finally {
      s.close()
      listener.close()
      client.disconnect()
      other.disconnect()
    }
  })

  it('refuses cluster options that cannot hold: a brace in the namespace, slots out of range or on a standalone client', () => {
    const c = cluster as RedisCluster
    const client = new Cluster(c.startupNodes, { lazyConnect: true })
    const single = new Redis({ lazyConnect: true })
    try {
      expect(() => redisStore({ client, prefix: 'a{b' })).toThrow(TypeError)
      expect(() => redisStore({ client, prefix: 'a', version: '}' })).toThrow(TypeError)
      for (const slots of [0, 1.5, 1_025]) expect(() => redisStore({ client, slots })).toThrow(RangeError)
      expect(() => redisStore({ client: single, slots: 2 })).toThrow(TypeError)
      expect(() => redisStore({ client: single, shardedPubSub: true })).toThrow(TypeError)
      // With sharded pub/sub, a given subscriber must be able to SSUBSCRIBE.
      expect(() => redisStore({ client, subscriber: client })).toThrow(/shardedSubscribers/)
      expect(() => redisStore({ client, subscriber: client, shardedPubSub: false })).not.toThrow()
      // Standalone keeps its layout: braces are fine there.
      expect(() => redisStore({ client: single, prefix: 'a{b}' })).not.toThrow()
    } finally {
      client.disconnect()
      single.disconnect()
    }
  })

  it("loses no lookup while the store's slot is resharded to another master under load", async () => {
    const c = cluster as RedisCluster
    const slot = keySlot(`{${prefix}:users:1}`)
    const from = await c.masterOf(slot)
    const to = (await Promise.all([0, 2_000, 16_000].map((s) => c.masterOf(s)))).find((p) => p !== from) as number
    const keys = Array.from({ length: 50 }, (_, i) => `reshard-${i}`)
    await a.request({ cmd: 'get', keys })
    expect(users.count('users:reshard-')).toBe(50)
    await Promise.all([a, b].map((i) => i.request({ cmd: 'lookupsStart', keys })))
    await sleep(200)
    const t0 = performance.now()
    const out = await c.reshard(from, to, 100)
    const reshardMs = performance.now() - t0
    await sleep(200)
    const ends = await Promise.all([a, b].map((i) => i.request<LookupsEnd>({ cmd: 'lookupsStop' })))
    expect(await c.masterOf(slot)).toBe(to)
    expect(out).toContain(`Moving slot ${slot} from`)
    const computes = users.count('users:reshard-') - 50
    const st = await Promise.all([a, b].map(stats))
    console.log(`reshard: store failures ${st.map((x) => x.usersStore.failures).join(' + ')}`)
    console.log(
      `reshard of 100 slots in ${reshardMs.toFixed(0)} ms under ${ends.map((e) => e.lookups).join(' + ')} lookups: ` +
        `${ends.map((e) => e.wrong).join(' + ')} wrong, ${ends.map((e) => e.errors.length).join(' + ')} failed, ` +
        `${computes} computed again`,
    )
    for (const e of ends) {
      expect(e.errors).toEqual([])
      expect(e.wrong).toBe(0)
      expect(e.rounds).toBeGreaterThan(2)
    }
    // Served from the cluster nearly throughout: ioredis follows MOVED and ASK. What falls to
    // a compute is the burst sent while the connection to the new master opens, refused
    // by ioredis without an offline queue (a one-time cost per node per process).
    const total = ends.reduce((n, e) => n + e.lookups, 0)
    expect(computes).toBeLessThan(Math.max(10, total * 0.1))
    // And invalidations still reach the other process, the channel's slot having moved too.
    const key = 'reshard-0'
    await b.request({ cmd: 'get', keys: [key] })
    const watched = b.request<Stamp>({ cmd: 'watch', key }, 10_000)
    await sleep(20)
    const sent = await a.request<Stamp>({ cmd: 'delete', key })
    expect((await watched).t - sent.t).toBeLessThan(500)
  }, 120_000)

  it('writes every line through a master killed under load, and recovers by itself', async () => {
    const c = cluster as RedisCluster
    const slot = keySlot(`{${prefix}:users:1}`)
    const owner = await c.masterOf(slot)
    await Promise.all(
      [a, b].map((i) => i.request({ cmd: 'loadStart', rate: 1_000, users: 50, tag: 'kill', coldEvery: 10 })),
    )
    await sleep(500)
    const node = c.nodes.find((n) => n.port === owner)
    await node?.kill()
    const killedAt = performance.now()
    await sleep(3_000)
    const samples = await Promise.all([a, b].map((i) => i.request<Samples>({ cmd: 'loadSamples' })))
    const ends = await Promise.all([a, b].map((i) => i.request<LoadEnd>({ cmd: 'loadStop' })))
    for (const e of ends) {
      expect(e.written).toBe(e.logged)
      expect(e.controlWritten).toBe(e.logged)
      expect(e.logged).toBeGreaterThan(2_500)
    }
    const p99 = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length * 0.99)] ?? 0
    const real = samples.map((s) => p99(s.us))
    const control = samples.map((s) => p99(s.controlUs))
    console.log(
      `master killed under 1,000 lines/s per process: p99 call ${real.join(', ')} us, control ${control.join(', ')} us`,
    )
    for (const r of real) expect(r).toBeLessThan(1_000)

    // Recovery: a replica takes over, and the store serves, shares and invalidates again.
    await c.waitOk(20_000)
    let n = 0
    await until(
      async () => {
        const key = `after-kill-${n++}`
        await a.request({ cmd: 'get', keys: [key] })
        await b.request({ cmd: 'get', keys: [key] })
        return users.hits.get(`users:${key}`) === 1
      },
      20_000,
      'values shared again',
    )
    const recoveredMs = performance.now() - killedAt
    const key = `after-kill-${n - 1}`
    const watched = b.request<Stamp>({ cmd: 'watch', key }, 10_000)
    await sleep(20)
    await until(
      async () => {
        await a.request({ cmd: 'delete', key })
        return (await b.request<{ state: string }>({ cmd: 'peek', key })).state === 'miss'
      },
      15_000,
      'invalidations heard again',
    )
    await watched
    const s = await stats(a)
    console.log(
      `master killed: values shared again ${recoveredMs.toFixed(0)} ms after the kill; breaker ${s.usersStore.breaker}`,
    )
    expect(s.usersStore.breaker).toBe('closed')
  }, 90_000)
})
