// A `secret` on redisStore: what a client that can PUBLISH on the channel, or
// write keys, can still do. Against a real redis-server; the attacker is a
// plain ioredis client that follows the documented message format.
import { createHmac } from 'node:crypto'
import { Redis } from 'ioredis'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { type Invalidation, SmartCache } from '../../src/index.js'
import {
  RECOMMENDED_CLIENT_OPTIONS,
  type RedisStore,
  type RedisStoreOptions,
  redisStore,
} from '../../src/redis/index.js'
import type { RedisServer } from '../helpers/redis-server.js'
import { redisForFile } from '../helpers/redis-suite.js'

const SECRET = 'fleet secret, 32 bytes or more!!'
const CHANNEL = 'signed:1:invalidate'

let server: RedisServer
let attacker: Redis
const clients: Redis[] = []
const stores: RedisStore[] = []
const caches: SmartCache<unknown>[] = []

// Fails, never skips, when redis-server is missing or does not start.
redisForFile(async (s) => {
  server = s
  attacker = new Redis(s.port, '127.0.0.1')
})

afterAll(() => {
  attacker?.disconnect()
})

afterEach(async () => {
  for (const c of caches.splice(0)) c.close()
  for (const s of stores.splice(0)) s.close()
  for (const c of clients.splice(0)) c.disconnect()
  await attacker?.flushall()
})

async function store(options: Partial<RedisStoreOptions> = {}): Promise<RedisStore> {
  const c = new Redis(server.port, '127.0.0.1', { ...RECOMMENDED_CLIENT_OPTIONS, lazyConnect: true })
  c.on('error', () => {})
  clients.push(c)
  await c.connect()
  const s = redisStore({ client: c, prefix: 'signed', secret: SECRET, ...options })
  stores.push(s)
  return s
}

/** The documented format: base64url(HMAC-SHA256(secret, `<context length>:<context>\n<body>`)), a dot, the body. */
function sign(secret: string, context: string, body: string): string {
  const mac = createHmac('sha256', secret).update(`${context.length}:${context}\n`).update(body).digest('base64url')
  return `${mac}.${body}`
}

async function until(check: () => boolean, ms = 2_000): Promise<void> {
  const end = performance.now() + ms
  while (!check()) {
    if (performance.now() > end) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 2))
  }
}

/** A store listening with a secret, and one sending with it: what a fleet of two looks like. */
async function pair(): Promise<{ sender: RedisStore; receiver: RedisStore; heard: Invalidation[] }> {
  const sender = await store()
  const receiver = await store()
  const heard: Invalidation[] = []
  receiver.subscribe((inv) => heard.push(inv))
  await until(() => receiver.stats().listening)
  return { sender, receiver, heard }
}

/**
 * Publishes `messages` as the attacker, then a valid invalidation from
 * `sender`, and waits for that one: everything published before it on the
 * channel has been handled by then (one connection, in order).
 */
async function publishThenSync(sender: RedisStore, heard: Invalidation[], messages: string[]): Promise<void> {
  // Counted by what was heard, not by stats().received: a valid message among
  // `messages` may be handled after that count is read and pass for the sync.
  const syncs = (): number => heard.filter((inv) => 'keys' in inv && inv.keys[0] === 'sync').length
  const before = syncs()
  for (const m of messages) await attacker.publish(CHANNEL, m)
  await sender.invalidate({ keys: ['sync'] })
  await until(() => syncs() > before)
}

describe('redisStore with a secret: invalidation messages', () => {
  it('acts on a message signed by another instance, and drops unsigned, forged, wrong-secret and stale ones, counting each', async () => {
    const { sender, receiver, heard } = await pair()
    const now = Date.now()
    await publishThenSync(sender, heard, [
      JSON.stringify({ o: 'x', p: '*' }), // what any client could send before
      JSON.stringify({ o: 'x', p: '*', ts: now }),
      `${'A'.repeat(43)}.${JSON.stringify({ o: 'x', p: '*', ts: now })}`, // signature shape, wrong value
      sign('another secret', CHANNEL, JSON.stringify({ o: 'x', p: '*', ts: now })),
      sign(SECRET, 'other:1:invalidate', JSON.stringify({ o: 'x', p: '*', ts: now })), // signed for another channel
      sign(SECRET, CHANNEL, JSON.stringify({ o: 'x', p: '*', ts: now - 60_000 })), // a minute old
      sign(SECRET, CHANNEL, JSON.stringify({ o: 'x', p: '*', ts: now + 60_000 })), // a minute ahead
      sign(SECRET, CHANNEL, JSON.stringify({ o: 'x', p: '*' })), // no timestamp
    ])
    expect(heard).toEqual([{ keys: ['sync'] }])
    expect(receiver.stats()).toMatchObject({
      received: 1,
      unsignedMessages: 2,
      forgedMessages: 3,
      staleMessages: 3,
      replayedMessages: 0,
    })

    // Signed with the secret and recent: acted on, whoever published it.
    await publishThenSync(sender, heard, [
      sign(SECRET, CHANNEL, JSON.stringify({ o: 'x', t: ['org:7'], ts: Date.now() })),
    ])
    expect(heard.slice(1)).toEqual([{ tags: ['org:7'] }, { keys: ['sync'] }])
  })

  it('drops a captured valid message sent again within the age bound', async () => {
    const { sender, receiver, heard } = await pair()
    const captured: string[] = []
    const spy = attacker.duplicate()
    clients.push(spy)
    spy.on('message', (_c: string, m: string) => captured.push(m))
    await spy.subscribe(CHANNEL)
    await sender.invalidate({ pattern: '*' })
    await until(() => captured.length === 1 && heard.length === 1)
    await publishThenSync(sender, heard, [captured[0] as string, captured[0] as string])
    expect(heard).toEqual([{ pattern: '*' }, { keys: ['sync'] }])
    expect(receiver.stats().replayedMessages).toBe(2)
  })

  it('drops a captured message whose signature is re-spelled to decode to the same digest', async () => {
    const { sender, receiver, heard } = await pair()
    const captured: string[] = []
    const spy = attacker.duplicate()
    clients.push(spy)
    spy.on('message', (_c: string, m: string) => captured.push(m))
    await spy.subscribe(CHANNEL)
    // Until a message's signature holds a `-` or `_`: the `+` and `/` spellings are tried too.
    for (let i = 0; i < 20 && !/[-_]/.test((captured.at(-1) ?? '').slice(0, 43)); i++) {
      await sender.invalidate({ pattern: `p${i}` })
      await until(() => captured.length === i + 1)
    }
    const original = captured.at(-1) as string
    const sig = original.slice(0, 43)
    const body = original.slice(43)
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
    const last = alphabet.indexOf(sig[42] as string)
    const variants = [
      // The last character carries 4 bits of the digest: its low 2 bits are free.
      ...[1, 2, 3].map((x) => `${sig.slice(0, 42)}${alphabet[last ^ x]}${body}`),
      `${sig.replaceAll('-', '+').replaceAll('_', '/')}${body}`,
    ]
    for (const v of variants) expect(Buffer.from(v.slice(0, 43), 'base64url')).toEqual(Buffer.from(sig, 'base64url'))
    const before = heard.length
    const forged = receiver.stats().forgedMessages
    await publishThenSync(sender, heard, variants)
    expect(heard.slice(before)).toEqual([{ keys: ['sync'] }])
    expect(receiver.stats().forgedMessages - forged).toBe(variants.length)
  })

  it('still drops a captured message after 10,000 other valid ones within the age bound (the guard is full)', async () => {
    const { sender, receiver, heard } = await pair()
    const now = Date.now()
    const captured = sign(SECRET, CHANNEL, JSON.stringify({ o: 'x', p: 'captured', ts: now - 1_000 }))
    // What a busy fleet sends within the window, each validly signed, all later than the captured one.
    const traffic = Array.from({ length: 10_000 }, (_, i) =>
      sign(SECRET, CHANNEL, JSON.stringify({ o: 'x', k: [`k${i}`], ts: now })),
    )
    const pipeline = attacker.pipeline()
    for (const m of [captured, ...traffic]) pipeline.publish(CHANNEL, m)
    await pipeline.exec()
    // All handled before the replay (and before the sender's bounded command has to wait behind them).
    await until(() => heard.length === 10_001, 10_000)
    await publishThenSync(sender, heard, [captured])
    expect(heard.filter((inv) => 'pattern' in inv)).toEqual([{ pattern: 'captured' }])
    expect(heard.length).toBe(10_002)
    expect(receiver.stats().replayedMessages + receiver.stats().staleMessages).toBe(1)
  })

  it('keeps a cache whole under a flood of 1,000 unsigned "empty everything" messages', async () => {
    const sender = await store()
    const cacheStore = await store()
    const cache = new SmartCache<string>({ name: 'users', ttlMs: 60_000, store: cacheStore })
    caches.push(cache as SmartCache<unknown>)
    await until(() => cacheStore.stats().listening)
    for (let i = 0; i < 100; i++) cache.set(`user:${i}`, `name ${i}`)
    for (let i = 0; i < 1_000; i++) await attacker.publish(CHANNEL, JSON.stringify({ o: 'x', p: '*' }))
    // A valid message after the flood: once it has acted, the flood has been handled.
    await sender.invalidate({ keys: ['user:0'] })
    await until(() => cache.peek('user:0').state === 'miss')
    expect(cacheStore.stats()).toMatchObject({ unsignedMessages: 1_000, received: 1 })
    for (let i = 1; i < 100; i++) expect(cache.peek(`user:${i}`).state).toBe('fresh')
  })

  it('without a secret, believes the same unsigned message (the threat the secret closes)', async () => {
    const c = new Redis(server.port, '127.0.0.1', { ...RECOMMENDED_CLIENT_OPTIONS })
    c.on('error', () => {})
    clients.push(c)
    const open = redisStore({ client: c, prefix: 'signed' })
    stores.push(open)
    const heard: Invalidation[] = []
    open.subscribe((inv) => heard.push(inv))
    await until(() => open.stats().listening)
    await attacker.publish(CHANNEL, JSON.stringify({ o: 'x', p: '*' }))
    await until(() => heard.length === 1)
    expect(heard).toEqual([{ pattern: '*' }])
  })
})

describe('redisStore with a secret: values', () => {
  it('refuses a planted value, a value copied from another key and one signed with another secret, as counted misses', async () => {
    const s = await store()
    await s.set('user:1', { value: { name: 'Ada' }, freshMs: 60_000, staleMs: 0 })
    const signedText = (await attacker.get('signed:1:v:user:1')) as string
    expect(signedText).toMatch(/^[A-Za-z0-9_-]{43}\.\{/)
    expect(await s.get('user:1')).toMatchObject({ value: { name: 'Ada' } })

    const planted = JSON.stringify({ s: 0, v: { name: 'Mallory', admin: true } })
    await attacker.set('signed:1:v:user:2', planted, 'PX', 60_000)
    await attacker.set('signed:1:v:user:3', signedText, 'PX', 60_000) // valid for user:1 only
    await attacker.set('signed:1:v:user:4', sign('another secret', 'signed:1:v:user:4', planted), 'PX', 60_000)
    await attacker.set('signed:1:v:user:5', `${'A'.repeat(43)}.${planted}`, 'PX', 60_000)
    for (const k of ['user:2', 'user:3', 'user:4', 'user:5']) expect(await s.get(k)).toBeUndefined()
    expect(s.stats()).toMatchObject({ forgedValues: 4, dropped: 4 })

    // Behind a cache: the planted value is never served, the compute runs instead.
    s.close()
    const t = await store()
    const cache = new SmartCache<{ name: string }>({ name: 'users', ttlMs: 60_000, store: t })
    caches.push(cache as SmartCache<unknown>)
    const v = await cache.getOrCompute('user:2', () => ({ name: 'Computed' }))
    expect(v).toEqual({ name: 'Computed' })
    // Read before and after taking the compute lock: refused each time.
    expect(t.stats().forgedValues).toBeGreaterThanOrEqual(1)
    // ...and what it wrote is signed, and read back by another instance.
    const u = await store()
    expect(await u.get('user:2')).toMatchObject({ value: { name: 'Computed' } })
  })

  it('serves a signed value put back under a longer PX for no longer than it was written for, and not at all once past it', async () => {
    const s = await store()
    await s.set('user:1', { value: { role: 'admin' }, freshMs: 60_000, staleMs: 0 })
    const one = (await attacker.get('signed:1:v:user:1')) as string
    // As the store wrote it an hour ago for a minute (what a reader of the keys kept back then).
    const two = sign(
      SECRET,
      'signed:1:v:user:2',
      JSON.stringify({ s: 0, v: { role: 'admin' }, e: Date.now() - 3_540_000 }),
    )
    // The values are revoked, then an attacker who can write keys puts the old ones back for a day.
    await s.invalidate({ keys: ['user:1'] })
    await attacker.set('signed:1:v:user:1', one, 'PX', 86_400_000)
    await attacker.set('signed:1:v:user:2', two, 'PX', 86_400_000)
    const r = await s.get('user:1')
    expect(r).toMatchObject({ value: { role: 'admin' } })
    expect((r?.freshMs ?? 0) + (r?.staleMs ?? 0)).toBeLessThanOrEqual(60_000)
    // Its life ended long ago.
    expect(await s.get('user:2')).toBeUndefined()
  })

  it('with signValues: false, signs messages only and reads plain values', async () => {
    const s = await store({ signValues: false })
    await attacker.set('signed:1:v:k', JSON.stringify({ s: 0, v: 1 }), 'PX', 60_000)
    expect(await s.get('k')).toMatchObject({ value: 1 })
    await s.set('j', { value: 2, freshMs: 60_000, staleMs: 0 })
    expect(JSON.parse((await attacker.get('signed:1:v:j')) as string)).toEqual({ s: 0, v: 2 })
  })
})

describe('redisStore secret options', () => {
  it.each([
    ['an empty string', '', TypeError],
    ['an empty Buffer', Buffer.alloc(0), TypeError],
    ['a number', 42, TypeError],
    ['null', null, TypeError],
  ])('refuses %s as secret', async (_what, secret, type) => {
    const c = new Redis(server.port, '127.0.0.1', { lazyConnect: true })
    clients.push(c)
    expect(() => redisStore({ client: c, secret: secret as string })).toThrow(type)
  })

  it.each([0, -1, 1.5, Number.NaN, '100'])('refuses maxMessageAgeMs %s with a RangeError quoting it', (bad) => {
    const c = new Redis(server.port, '127.0.0.1', { lazyConnect: true })
    clients.push(c)
    expect(() => redisStore({ client: c, secret: SECRET, maxMessageAgeMs: bad as number })).toThrow(RangeError)
    expect(() => redisStore({ client: c, secret: SECRET, maxMessageAgeMs: bad as number })).toThrow(String(bad))
  })

  it('refuses signValues without a secret, and takes a Buffer secret', async () => {
    const c = new Redis(server.port, '127.0.0.1', { lazyConnect: true })
    clients.push(c)
    expect(() => redisStore({ client: c, signValues: true })).toThrow(TypeError)
    const s = await store({ secret: Buffer.from(SECRET) })
    await s.set('b', { value: 'x', freshMs: 60_000, staleMs: 0 })
    // The same bytes as a string sign the same way.
    const t = await store()
    expect(await t.get('b')).toMatchObject({ value: 'x' })
  })
})
