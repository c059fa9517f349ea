import { Writable } from 'node:stream'
import pino from 'pino'
import { describe, expect, it } from 'vitest'
import { requestEnricher } from '../../enrichers/index.js'
import { beginLine, endLine } from '../../src/context/line-scope.js'
import { createRequestStore } from '../../src/context/request-store.js'
import { createPipeline, defineContextFields } from '../../src/index.js'

interface Req {
  user?: { id: string }
  secret: string
}

describe('createRequestStore', () => {
  it('has four own enumerable keys, and nothing else that leads to the request', () => {
    const req: Req = { user: { id: 'u1' }, secret: 'token' }
    const store = createRequestStore('r1', 'GET', '/users/:id', req, (r: Req) => r.user?.id)
    expect(Reflect.ownKeys(store)).toEqual(['requestId', 'method', 'route', 'userId'])
    expect({ ...store }).toEqual({ requestId: 'r1', method: 'GET', route: '/users/:id', userId: 'u1' })
    expect(JSON.stringify(store)).toBe('{"requestId":"r1","method":"GET","route":"/users/:id","userId":"u1"}')
    expect(structuredClone(store)).toEqual({ requestId: 'r1', method: 'GET', route: '/users/:id', userId: 'u1' })
    expect(JSON.stringify(Object.getOwnPropertyDescriptors(store))).not.toContain('token')
  })

  it('reads a route function on every read, until the route is assigned', () => {
    let route = '/path'
    const store = createRequestStore('r1', 'GET', () => route, {}, undefined)
    expect(store.route).toBe('/path')
    route = '/users/:id'
    expect(store.route).toBe('/users/:id')
    store.route = 'assigned'
    route = '/other'
    expect(store.route).toBe('assigned')
  })

  it('asks user(req) once per line until it answers, keeps the answer, and lets an assignment win', () => {
    const req: Req = { secret: 's' }
    let calls = 0
    const store = createRequestStore('r1', 'GET', undefined, req, (r: Req) => {
      calls++
      return r.user?.id
    })
    const outer = beginLine()
    expect([store.userId, store.userId]).toEqual([undefined, undefined])
    endLine(outer)
    expect(calls).toBe(1)
    req.user = { id: 'u2' }
    const next = beginLine()
    expect([store.userId, store.userId]).toEqual(['u2', 'u2'])
    endLine(next)
    expect(calls).toBe(2)
    expect(store.userId).toBe('u2')
    expect(calls).toBe(2)
    store.userId = 'set'
    expect(store.userId).toBe('set')
  })

  it('takes a throwing or odd user(req) as no user, and numbers as ids', () => {
    const throwing = createRequestStore('r', 'GET', undefined, {}, () => {
      throw new Error('auth')
    })
    expect(throwing.userId).toBeUndefined()
    expect(createRequestStore('r', 'GET', undefined, {}, () => '').userId).toBeUndefined()
    expect(createRequestStore('r', 'GET', undefined, {}, () => ({ id: 1 })).userId).toBeUndefined()
    expect(createRequestStore('r', 'GET', undefined, {}, () => 42).userId).toBe('42')
    expect(createRequestStore('r', 'GET', undefined, {}, () => 7n).userId).toBe('7')
  })

  it('keeps 10,000 stores apart', () => {
    const stores = Array.from({ length: 10_000 }, (_, i) =>
      createRequestStore(
        `r${i}`,
        'GET',
        `/r/${i}`,
        { user: { id: `u${i}` } },
        (r: { user: { id: string } }) => r.user.id,
      ),
    )
    stores[5]!.userId = 'changed'
    expect(stores.map((s) => s.userId).filter((u, i) => u !== `u${i}`)).toEqual(['changed'])
    expect(stores[9_999]!.route).toBe('/r/9999')
  })

  it('calls a user(req) that logs once for the line, not again for each line it logs', async () => {
    const enrich = createPipeline({ enrichers: [requestEnricher()] })
    const lines: string[] = []
    const dest = new Writable({
      write(chunk, _encoding, cb) {
        lines.push(String(chunk))
        cb()
      },
    })
    const logger = pino(enrich.pinoOptions({}), dest)
    let calls = 0
    const store = createRequestStore('r1', 'GET', '/x', {}, () => {
      calls++
      // Bounded: without a guard every line it logs asks it again.
      if (calls < 1_000) logger.info('resolving user')
      return 'u1'
    })
    enrich.context.run(store, () => logger.info('hello'))
    await new Promise<void>((resolve) => setImmediate(resolve))
    expect(calls).toBe(1)
    expect(lines.map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual(['resolving user', 'hello'])
    expect((JSON.parse(lines[1] as string) as { userId?: string }).userId).toBe('u1')
    await enrich.close()
  })

  it.for(['snapshot', 'deferred'] as const)(
    'asks user(req) once per line while it has no id, however many request-fields enrichers read userId (%s)',
    async (mode) => {
      const enrich = createPipeline()
      enrich.register(defineContextFields({ name: 'a', keys: { userId: 'userId' } }))
      enrich.register(defineContextFields({ name: 'b', keys: { userId: 'uid' } }))
      const lines: string[] = []
      const logger = pino(enrich.pinoOptions({ mode }), { write: (s: string) => void lines.push(s) })
      let calls = 0
      const store = createRequestStore('r1', 'GET', '/x', {}, () => {
        calls++
        return undefined
      })
      enrich.context.run(store, () => {
        for (let i = 0; i < 10; i++) logger.info('line')
      })
      await enrich.flush()
      expect(lines).toHaveLength(10)
      expect(calls).toBe(10)
      await enrich.close()
    },
  )

  it.for(['snapshot', 'deferred'] as const)(
    'lets a context made with Object.create(store) read route and userId through it (%s)',
    async (mode) => {
      const enrich = createPipeline({ enrichers: [requestEnricher()] })
      const lines: string[] = []
      const logger = pino(enrich.pinoOptions({ mode }), { write: (s: string) => void lines.push(s) })
      const store = createRequestStore(
        'r1',
        'GET',
        () => '/users/:id',
        {},
        () => 'u1',
      )
      const derived = Object.assign(Object.create(store) as object, { tenant: 't1' }) as typeof store
      expect([derived.route, derived.userId]).toEqual(['/users/:id', 'u1'])
      enrich.context.run(derived, () => logger.info('derived'))
      await enrich.flush()
      const line = JSON.parse(lines[0] as string) as Record<string, unknown>
      expect([line.reqId, line.reqRoute, line.userId]).toEqual(['r1', '/users/:id', 'u1'])
      derived.userId = 'u2'
      expect([store.userId, derived.userId]).toEqual(['u2', 'u2'])
      // A copy of the accessors alone leads to no store: it reads nothing and keeps what is assigned to it.
      const copied = Object.defineProperties({}, Object.getOwnPropertyDescriptors(store)) as typeof store
      expect(copied.route).toBeUndefined()
      copied.route = '/set'
      expect([copied.route, store.route]).toEqual(['/set', '/users/:id'])
      await enrich.close()
    },
  )
})
