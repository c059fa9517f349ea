// Values planted in Redis under a store's prefix by another client: they pass
// the same checks as computed output before they reach a line.

import { Redis } from 'ioredis'
import pino from 'pino'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { createPipeline, defineEnricher, type Pipeline } from '../../src/index.js'
import { RECOMMENDED_CLIENT_OPTIONS, type RedisStore, redisStore } from '../../src/redis/index.js'
import type { RedisServer } from '../helpers/redis-server.js'
import { redisForFile } from '../helpers/redis-suite.js'
import { sink } from '../helpers/sink.js'

// Fails, never skips, when redis-server is missing or does not start.
let server: RedisServer
let admin: Redis
const open: Array<{ p: Pipeline; s: RedisStore; c: Redis }> = []

redisForFile(async (s) => {
  server = s
  admin = new Redis(s.port, '127.0.0.1')
})

afterAll(() => {
  admin?.disconnect()
})

afterEach(async () => {
  for (const { p, s, c } of open.splice(0)) {
    await p.close()
    s.close()
    c.disconnect()
  }
  await admin?.flushall()
})

async function setup(): Promise<{ p: Pipeline; computes: string[] }> {
  const c = new Redis(server.port, '127.0.0.1', {
    ...RECOMMENDED_CLIENT_OPTIONS,
    commandTimeout: 5_000,
    lazyConnect: true,
  })
  c.on('error', () => {})
  await c.connect()
  // A loaded machine must not turn a slow read into a local compute: this file is about what is read.
  const s = redisStore({ client: c, prefix: 'planted', commandTimeoutMs: 5_000 })
  const computes: string[] = []
  const p = createPipeline({
    deadlineMs: 1_000,
    enrichers: [
      defineEnricher({
        name: 'user',
        key: (ctx) => ctx.context?.userId as string | undefined,
        compute: (id: string) => {
          computes.push(id)
          return { user: { name: `name of ${id}` } }
        },
        cache: { store: s },
      }),
    ],
  })
  open.push({ p, s, c })
  return { p, computes }
}

/** What another client writes: the store's record layout, a value of its choosing. */
const plant = (id: string, value: unknown): Promise<unknown> =>
  admin.set(`planted:1:v:${id}`, JSON.stringify({ s: 0, v: value }), 'PX', 60_000)

async function until(check: () => boolean | Promise<boolean>, ms = 2_000): Promise<void> {
  const end = performance.now() + ms
  while (!(await check())) {
    if (performance.now() > end) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 2))
  }
}

const planted: Array<[string, unknown]> = [
  [
    'core keys and the errorKey',
    {
      fields: { level: 99, time: 1, msg: 'forged', pid: 1, hostname: 'evil', enrich: { ok: [] }, user: 'u' },
      invalid: false,
    },
  ],
  ['a 900 KB field', { fields: { user: { bio: 'x'.repeat(900_000) } }, invalid: false }],
  ['a string value', 'abcdefgh'],
  ['an array', [{ user: 'a' }]],
  ['a number', 42],
  ['fields that are a string', { fields: 'abcdefgh', invalid: false }],
  ['an unknown shape', { user: { name: 'bare' } }],
]

describe('values planted in Redis under the store prefix', () => {
  it.each(planted)('refuses %s: never written, recorded and counted as invalid, then recomputed', async (_, value) => {
    const { p, computes } = await setup()
    await plant('u1', value)
    const fields = await p.enrich({ context: { userId: 'u1' } })
    expect(fields).toEqual({ enrich: { invalid: ['user'] } })
    const s = p.stats().enrichers[0]
    expect(s?.invalid).toBe(1)
    expect(s?.cache?.store).toMatchObject({ refused: 1 })
    // Recomputed here in the background, and the planted copy overwritten.
    await until(
      async () => JSON.parse((await admin.get('planted:1:v:u1')) ?? '{}').v?.fields?.user?.name === 'name of u1',
    )
    expect(computes).toEqual(['u1'])
    expect(p.stats().enrichers[0]).toMatchObject({ invalid: 1, cache: { store: { refused: 1 } } })
    expect(await p.enrich({ context: { userId: 'u1' } })).toEqual({ user: { name: 'name of u1' } })
  })

  it('keeps pino core keys as pino wrote them on a line whose store value was planted', async () => {
    const { p } = await setup()
    await plant('u2', { fields: { level: 99, msg: 'forged', time: 1, pid: 1, hostname: 'evil' }, invalid: false })
    const out = sink()
    const log = pino(p.pinoOptions({ mode: 'deferred' }), out)
    p.context.run({ userId: 'u2' }, () => log.info('real'))
    await p.flush()
    const [line] = out.lines()
    expect(line).toMatchObject({ level: 30, msg: 'real', pid: process.pid, enrich: { invalid: ['user'] } })
    expect(line?.time).not.toBe(1)
    expect(line?.hostname).not.toBe('evil')
  })

  it('serves a well-formed value from another instance as it is, frozen', async () => {
    const { p, computes } = await setup()
    await plant('u3', { fields: { user: { name: 'from a peer' } }, invalid: false })
    const fields = await p.enrich({ context: { userId: 'u3' } })
    expect(fields).toEqual({ user: { name: 'from a peer' } })
    expect(computes).toEqual([])
    const cache = p.stats().enrichers[0]?.cache
    expect(cache?.store).toMatchObject({ refused: 0, hits: 1 })
    // What the cache holds is frozen, like a computed value.
    const again = await p.enrich({ context: { userId: 'u3' } })
    expect(Object.isFrozen(again.user)).toBe(true)
  })

  it('serves a value another pipeline computed and wrote, without computing it again', async () => {
    const writer = await setup()
    const reader = await setup()
    expect(await writer.p.enrich({ context: { userId: 'u4' } })).toEqual({ user: { name: 'name of u4' } })
    expect(writer.computes).toEqual(['u4'])
    await until(async () => (await admin.exists('planted:1:v:u4')) === 1)
    expect(await reader.p.enrich({ context: { userId: 'u4' } })).toEqual({ user: { name: 'name of u4' } })
    expect(reader.computes).toEqual([])
    expect(reader.p.stats().enrichers[0]?.cache?.store).toMatchObject({ refused: 0, hits: 1 })
  })
})
