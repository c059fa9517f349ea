// The shared-tier part of `npm run bench`, against a redis-server of its own
// on a free loopback port (Debian's package; the section fails when it is
// missing). Paired rounds as in bench/cache.ts: both sides back to back,
// alternating which goes first, median over rounds after warm-up.
import { Cluster, Redis } from 'ioredis'
import { SmartCache } from '../src/index.js'
import {
  RECOMMENDED_CLIENT_OPTIONS,
  RECOMMENDED_CLUSTER_OPTIONS,
  type RedisClient,
  type RedisStore,
  redisStore,
} from '../src/redis/index.js'
import { startRedisCluster } from '../test/helpers/redis-cluster.js'
import { startRedisServer } from '../test/helpers/redis-server.js'
import { median, paired as pairedRounds } from './measure.js'
import type { Row } from './table.js'

const WARMUP = 3
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 21)
const OPS = 2_000
const HIT_OPS = 300_000
const STAMPEDE_CALLERS = 1_000
const STAMPEDE_INSTANCES = 2
const STAMPEDE_ROUNDS = 10
const HOUR = 3_600_000
// Longer than the 100 ms default: on a loaded machine one slow command would
// turn into a compute and abort the section; the timeout is not what is measured.
const TIMEOUT_MS = 1_000
// A typical enricher value: what the user enricher of the demo caches.
const VALUE = { fields: { user: { id: 'u-1', name: 'Ada Lovelace', plan: 'pro', org: { id: 'o-7' } } }, invalid: false }

let sink = 0

const paired = (a: () => Promise<number> | number, b: () => Promise<number> | number) =>
  pairedRounds(a, b, WARMUP, ROUNDS)

/** Where a section runs: a standalone redis-server or a cluster, and how its rows are labelled. */
interface Target {
  /** '' for standalone, ' (cluster)' for the cluster rows. */
  label: string
  connect(): Promise<RedisClient>
  /** The Redis key name of a value of the store with `prefix`. */
  valueKey(prefix: string, key: string): string
}

function standalone(port: number): Target {
  return {
    label: '',
    async connect() {
      const c = new Redis(port, '127.0.0.1', {
        ...RECOMMENDED_CLIENT_OPTIONS,
        commandTimeout: TIMEOUT_MS,
        lazyConnect: true,
      })
      c.on('error', () => {})
      await c.connect()
      return c
    },
    valueKey: (prefix, key) => `${prefix}:1:v:${key}`,
  }
}

function cluster(startupNodes: Array<{ host: string; port: number }>): Target {
  return {
    label: ' (cluster)',
    async connect() {
      const c = new Cluster(startupNodes, {
        ...RECOMMENDED_CLUSTER_OPTIONS,
        redisOptions: { ...RECOMMENDED_CLUSTER_OPTIONS.redisOptions, commandTimeout: TIMEOUT_MS },
        lazyConnect: true,
      })
      c.on('error', () => {})
      await c.connect()
      return c
    },
    valueKey: (prefix, key) => `{${prefix}:1}:v:${key}`,
  }
}

/** getOrCompute answered by Redis on an in-process miss, against a plain GET of the same value. */
async function servedFromRedis(target: Target): Promise<Row[]> {
  const client = await target.connect()
  const store = redisStore({ client, prefix: 'bench', commandTimeoutMs: TIMEOUT_MS })
  const cache = new SmartCache<typeof VALUE>({ name: 'bench', max: 10_000, ttlMs: HOUR, store })
  const keys = Array.from({ length: OPS }, (_, i) => `user:${i}`)
  for (const k of keys) await store.set(k, { value: VALUE, freshMs: HOUR, staleMs: 0 })
  const redisKeys = keys.map((k) => target.valueKey('bench', k))
  const compute = (): never => {
    throw new Error(`the bench value must come from Redis${target.label}`)
  }
  const p = await paired(
    async () => {
      cache.clear() // in process only: every lookup below is an in-process miss
      const t0 = process.hrtime.bigint()
      for (const k of keys) sink += (await cache.getOrCompute(k, compute)).fields.user.name.length
      return Number(process.hrtime.bigint() - t0) / OPS / 1_000
    },
    async () => {
      const t0 = process.hrtime.bigint()
      for (const k of redisKeys) sink += ((await client.get(k)) as string).length
      return Number(process.hrtime.bigint() - t0) / OPS / 1_000
    },
  )
  const stats = cache.stats()
  if (stats.computes !== 0) throw new Error(`the bench computed ${stats.computes} times`)
  cache.close()
  store.close()
  client.disconnect()
  return [
    {
      bench: `getOrCompute() from Redis on an in-process miss vs ioredis GET${target.label}`,
      value: `${p.a.toFixed(1)} us/op vs ${p.b.toFixed(1)} us/op (+${p.diff.toFixed(1)} us)`,
      ratio: `${p.ratio.toFixed(2)}x`,
      // On loopback a round trip is ~20 us, so the miss path's own cost (a flight, the
      // script, the JSON check) shows as a ratio; over a network it is a few percent.
      target: '<= 1.50x',
      verdict: p.ratio <= 1.5 ? 'ok' : 'MISSED',
    },
  ]
}

/** A fresh in-process hit costs the same with a store configured: the store is off the hot path. */
async function hitWithStore(target: Target): Promise<Row> {
  const client = await target.connect()
  const store = redisStore({ client, prefix: 'bench-hit', commandTimeoutMs: TIMEOUT_MS })
  const withStore = new SmartCache<string>({ name: 'with', max: 10_000, ttlMs: HOUR, store })
  const without = new SmartCache<string>({ name: 'without', max: 10_000, ttlMs: HOUR })
  const keys = Array.from({ length: 1_024 }, (_, i) => `key:${i}`)
  for (const k of keys) {
    withStore.set(k, k)
    without.set(k, k)
  }
  const compute = (k: string): string => k
  const run = (cache: SmartCache<string>) => async (): Promise<number> => {
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < HIT_OPS; i++) sink += (await cache.getOrCompute(keys[i & 1023] as string, compute)).length
    return Number(process.hrtime.bigint() - t0) / HIT_OPS
  }
  const p = await paired(run(withStore), run(without))
  withStore.close()
  without.close()
  store.close()
  client.disconnect()
  return {
    bench: `getOrCompute() fresh hit, store configured vs none${target.label}`,
    value: `${p.a.toFixed(1)} ns/op vs ${p.b.toFixed(1)} ns/op`,
    ratio: `${p.ratio.toFixed(2)}x`,
    target: '<= 1.05x',
    verdict: p.ratio <= 1.05 ? 'ok' : 'MISSED',
  }
}

/**
 * The fleet stampede: `STAMPEDE_INSTANCES` caches, each with its own Redis
 * connections as separate processes would have, 1 000 callers spread over
 * them on a key cold everywhere; the compute takes 20 ms, like a user service.
 */
async function stampede(target: Target): Promise<Row> {
  const clients: RedisClient[] = []
  const stores: RedisStore[] = []
  const caches: SmartCache<string>[] = []
  for (let i = 0; i < STAMPEDE_INSTANCES; i++) {
    const client = await target.connect()
    const store = redisStore({ client, prefix: 'bench-stampede', commandTimeoutMs: TIMEOUT_MS })
    clients.push(client)
    stores.push(store)
    caches.push(new SmartCache<string>({ name: `instance-${i}`, ttlMs: HOUR, timeoutMs: 2_000, store }))
  }
  let computes = 0
  const compute = async (k: string): Promise<string> => {
    computes++
    await new Promise((r) => setTimeout(r, 20))
    return `value of ${k}`
  }
  const ms: number[] = []
  const perRound: number[] = []
  for (let r = 0; r < STAMPEDE_ROUNDS; r++) {
    const before = computes
    const key = `cold:${r}`
    const t0 = performance.now()
    const all = Array.from({ length: STAMPEDE_CALLERS }, (_, i) =>
      (caches[i % STAMPEDE_INSTANCES] as SmartCache<string>).getOrCompute(key, compute),
    )
    for (const v of await Promise.all(all)) sink += v.length
    ms.push(performance.now() - t0)
    perRound.push(computes - before)
  }
  for (const c of caches) c.close()
  for (const s of stores) s.close()
  for (const c of clients) c.disconnect()
  const worst = Math.max(...perRound)
  return {
    bench: `fleet stampede: ${STAMPEDE_CALLERS.toLocaleString('en')} callers over ${STAMPEDE_INSTANCES} instances, cold key, 20 ms compute${target.label}`,
    value: `${worst} compute (worst of ${STAMPEDE_ROUNDS}), all served in ${median(ms).toFixed(1)} ms`,
    ratio: '',
    target: '1 compute',
    verdict: worst === 1 ? 'ok' : 'MISSED',
  }
}

async function section(target: Target): Promise<Row[]> {
  return [...(await servedFromRedis(target)), await hitWithStore(target), await stampede(target)]
}

/**
 * The shared tier: Redis-served miss vs plain GET, the hot path with a store,
 * the fleet stampede; against a standalone redis-server, then the same rows
 * against a three-master cluster on loopback.
 */
export async function runRedisBench(): Promise<Row[]> {
  const rows: Row[] = []
  const server = await startRedisServer()
  try {
    rows.push(...(await section(standalone(server.port))))
  } finally {
    await server.stop()
  }
  const nodes = await startRedisCluster({ masters: 3, replicas: 0 })
  try {
    rows.push(...(await section(cluster(nodes.startupNodes))))
  } finally {
    await nodes.stop()
  }
  if (sink === -1) console.log(sink)
  return rows
}
