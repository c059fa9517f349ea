import { setTimeout as sleep } from 'node:timers/promises'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import Fastify4 from 'fastify4'
import pino from 'pino'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { type FastifyContextOptions, fastifyContext, genReqId } from '../../src/context/fastify.js'
import { createPipeline, type Pipeline } from '../../src/index.js'
import { expectRequestsKeptApart, requestFields, userLookup } from '../helpers/context-enrichers.js'
import { type HttpClient, httpClient } from '../helpers/http.js'
import { type Sink, sink } from '../helpers/sink.js'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

let apps: FastifyInstance[] = []
let clients: HttpClient[] = []
let pipelines: Pipeline[] = []

afterEach(async () => {
  for (const c of clients) c.close()
  await Promise.all(apps.map((a) => a.close()))
  await Promise.all(pipelines.map((p) => p.close()))
  apps = []
  clients = []
  pipelines = []
})

interface Setup {
  p: Pipeline
  out: Sink
  log: pino.Logger
  app: FastifyInstance
}

/**
 * The plugin runs on both majors the peer range admits, each given the logger
 * as README shows: Fastify 5 takes a pino instance as `loggerInstance`,
 * Fastify 4 as `logger` (it has no `loggerInstance` and would log nothing).
 */
const MAJORS = [
  { major: 'Fastify 5', make: (log: pino.Logger, o?: FastifyServerOptions) => Fastify({ loggerInstance: log, ...o }) },
  {
    major: 'Fastify 4',
    // Fastify 4's own types differ in detail from 5's; the tests drive both through 5's.
    make: (log: pino.Logger, o?: FastifyServerOptions) =>
      Fastify4({ logger: log, ...(o as object) }) as unknown as FastifyInstance,
  },
] as const

describe.each(MAJORS)('$major', ({ make }) => {
  function setup(
    options: { mode?: 'snapshot' | 'deferred'; lookups?: string[]; fastify?: FastifyServerOptions } = {},
  ): Setup {
    const p = createPipeline({ deadlineMs: 2_000 })
    pipelines.push(p)
    p.register(requestFields)
    p.register(userLookup(options.lookups))
    const out = sink()
    const log = pino(p.pinoOptions({ mode: options.mode ?? 'snapshot' }), out)
    const app = make(log, options.fastify)
    apps.push(app)
    return { p, out, log, app }
  }

  type Body = { n: number; user: string; pad?: string }
  const REQUEST_KEYS = ['rid', 'uid', 'route', 'method', 'user'] as const

  describe('fastifyContext', () => {
    it('keeps 1,000 concurrent requests apart through the JSON parser, awaits and timers', async () => {
      const { p, out, log, app } = setup({
        mode: 'deferred',
        fastify: { genReqId: genReqId({ trustRequestId: true }) },
      })
      await app.register(fastifyContext, { enrich: p, user: (request) => (request.body as Body | undefined)?.user })
      app.post('/orders/:orderId', async (request) => {
        const { n } = request.body as Body
        request.log.info({ n, step: 'start' }, 'handling')
        await sleep(Math.floor(Math.random() * 6))
        // The application logger, not request.log: the context alone tells the request.
        app.log.info({ n, step: 'after await' }, 'handling')
        await new Promise<void>((resolve) =>
          setTimeout(
            () => {
              log.info({ n, step: 'in timer' }, 'handling')
              resolve()
            },
            Math.floor(Math.random() * 3),
          ),
        )
        return { rid: p.context.get()?.requestId }
      })
      const url = await app.listen({ port: 0, host: '127.0.0.1' })
      app.server.on('connection', () => log.info({ outside: 'connection' }, 'socket'))
      // Runs right after Fastify's own listener, in the same tick: a context entered with enterWith() would leak here.
      app.server.on('request', () => log.info({ outside: 'request listener' }, 'after the app'))
      const client = httpClient()
      clients.push(client)

      const N = 1_000
      const responses = await Promise.all(
        Array.from({ length: N }, (_, n) =>
          client.request(`${url}/orders/${n}`, {
            method: 'POST',
            headers: { 'x-request-id': `id-${n}` },
            // Some bodies span many socket reads, so parsing resumes from later stream events.
            json: { n, user: `u${n % 37}`, pad: 'x'.repeat(n % 7 === 0 ? 64_000 : 10) },
          }),
        ),
      )
      log.info({ outside: 'after' }, 'load done')
      // Fastify writes "request completed" once the response has finished, which
      // may come after the client has read it.
      await vi.waitFor(() => expect(out.lines().filter((l) => l.msg === 'request completed')).toHaveLength(N), {
        timeout: 5_000,
        interval: 5,
      })
      await p.flush()

      const lines = out.lines()
      // A line logged through request.log also carries Fastify's own reqId: the same id.
      expectRequestsKeptApart(responses, lines, N, (l, n) => l.step !== 'start' || l.reqId === `id-${n}`)
      // Fastify's own request lines: every one that carries the context carries its own request's.
      const completed = lines.filter((l) => l.msg === 'request completed')
      expect(completed).toHaveLength(N)
      for (const l of completed) expect(l.rid).toBe(l.reqId)
      expect(lines.filter((l) => l.reqId !== undefined && l.rid !== undefined && l.rid !== l.reqId)).toEqual([])
      const outside = lines.filter((l) => l.outside !== undefined || String(l.msg).startsWith('Server listening'))
      expect(outside.length).toBeGreaterThanOrEqual(N + 3)
      for (const line of outside) for (const k of REQUEST_KEYS) expect(line).not.toHaveProperty(k)
      expect(p.stats().records.timedOut).toBe(0)
    })

    it('keeps the context through an async content-type parser reading the stream', async () => {
      const { p, out, app } = setup()
      await app.register(fastifyContext, { enrich: p })
      app.addContentTypeParser('text/plain', async (_request: unknown, payload: AsyncIterable<Buffer>) => {
        let text = ''
        for await (const chunk of payload) text += chunk.toString('utf8')
        await sleep(1)
        return text.length
      })
      app.post('/upload/:name', async (request) => {
        await sleep(Math.floor(Math.random() * 3))
        request.log.info({ size: request.body }, 'uploaded')
        return p.context.get()?.requestId
      })
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          app.inject({
            method: 'POST',
            url: `/upload/f${i}`,
            headers: { 'content-type': 'text/plain' },
            payload: 'y'.repeat(1_000 * (i + 1)),
          }),
        ),
      )
      const uploaded = out.lines().filter((l) => l.msg === 'uploaded')
      expect(uploaded).toHaveLength(20)
      for (const l of uploaded) {
        expect(l.rid).toBe(l.reqId)
        expect(l.route).toBe('/upload/:name')
      }
      expect(new Set(results.map((r) => r.body)).size).toBe(20)
    })

    it('enters the context again after a hook or handler that lost it, for the handler and the completed line', async () => {
      // Callbacks queued here run from a timer made outside any request, as a
      // pooled connection's callbacks do: in no request's context.
      const queue: Array<() => void> = []
      const timer = setInterval(() => {
        for (const f of queue.splice(0)) f()
      }, 1)
      try {
        const { p, out, app } = setup()
        await app.register(fastifyContext, { enrich: p })
        app.addHook('preParsing', (_request, _reply, payload, done) => {
          queue.push(() => done(null, payload))
        })
        app.post('/pooled', (request, reply) => {
          request.log.info({ at: 'handler' })
          queue.push(() => {
            request.log.info({ at: 'pooled callback' })
            reply.send('ok')
          })
        })
        await Promise.all(
          Array.from({ length: 10 }, (_, i) => app.inject({ method: 'POST', url: '/pooled', payload: { i } })),
        )
        const lines = out.lines()
        const pooled = lines.filter((l) => l.at === 'pooled callback')
        expect(pooled).toHaveLength(10)
        // The premise: the queue does lose the context.
        for (const l of pooled) expect(l.rid).toBeUndefined()
        const kept = lines.filter((l) => l.at === 'handler' || l.msg === 'request completed')
        expect(kept).toHaveLength(20)
        for (const l of kept) expect(l.rid).toBe(l.reqId)
      } finally {
        clearInterval(timer)
      }
    })

    it('puts the route template on lines, with the prefix, and the path for unmatched requests', async () => {
      const { p, out, app } = setup()
      await app.register(fastifyContext, { enrich: p })
      app.get('/users/:id', async (request) => {
        request.log.info({ at: 'handler' })
        return 'ok'
      })
      await app.register(
        async (api) => {
          api.get('/items/:itemId', async (request) => {
            request.log.info({ at: 'prefixed handler' })
            return 'ok'
          })
        },
        { prefix: '/api' },
      )
      app.setNotFoundHandler(async (request, reply) => {
        request.log.info({ at: 'not found' })
        return reply.code(404).send('no')
      })
      await app.inject({ url: '/users/42?x=1' })
      await app.inject({ url: '/api/items/7' })
      await app.inject({ url: '/nothing/here?q=2' })
      const routes = out
        .lines()
        .filter((l) => l.at !== undefined)
        .map((l) => [l.at, l.route])
      expect(routes).toEqual([
        ['handler', '/users/:id'],
        ['prefixed handler', '/api/items/:itemId'],
        ['not found', '/nothing/here'],
      ])
    })

    it('reads the user when a line is logged, so authentication hooks that run later count', async () => {
      const lookups: string[] = []
      const { p, out, app } = setup({ mode: 'deferred', lookups })
      type Authed = { user?: { id: string } | null }
      await app.register(fastifyContext, { enrich: p, user: (request) => (request as Authed).user?.id })
      app.decorateRequest('user', null)
      app.addHook('onRequest', async (request) => {
        request.log.info({ at: 'before auth' })
      })
      app.addHook('preHandler', async (request) => {
        const token = request.headers.authorization
        if (token !== undefined) (request as Authed).user = { id: token.replace('Bearer ', '') }
      })
      app.get('/me', async (request) => {
        request.log.info({ at: 'handler' })
        return 'ok'
      })
      await app.inject({ url: '/me', headers: { authorization: 'Bearer alice' } })
      await app.inject({ url: '/me', headers: { authorization: 'Bearer bob' } })
      await app.inject({ url: '/me' })
      await p.flush()
      const seen = out
        .lines()
        .filter((l) => l.at !== undefined)
        .map((l) => [l.at, l.uid, (l.user as { name?: string } | undefined)?.name])
      expect(seen).toEqual([
        ['before auth', undefined, undefined],
        ['handler', 'alice', 'name-alice'],
        ['before auth', undefined, undefined],
        ['handler', 'bob', 'name-bob'],
        ['before auth', undefined, undefined],
        ['handler', undefined, undefined],
      ])
      expect(lookups.sort()).toEqual(['alice', 'bob'])
    })

    it('decorates the request with its context, null until onRequest, and shares it with ctx.context', async () => {
      const { p, app } = setup()
      await app.register(fastifyContext, { enrich: p })
      app.get('/', async (request) => ({
        same: request.enrichContext === p.context.get(),
        id: request.enrichContext?.requestId === request.id,
      }))
      await app.ready()
      expect(app.hasRequestDecorator('enrichContext')).toBe(true)
      const r = await app.inject({ url: '/' })
      expect(r.json()).toEqual({ same: true, id: true })
    })

    describe('request id', () => {
      async function idApp(fastify: FastifyServerOptions, plugin: Partial<FastifyContextOptions> = {}) {
        const { p, out, app } = setup({ fastify })
        await app.register(fastifyContext, { enrich: p, ...plugin })
        app.get('/', async (request) => {
          request.log.info('in handler')
          return { rid: p.context.get()?.requestId }
        })
        return async (header?: string, name = 'x-request-id') => {
          const before = out.lines().filter((l) => l.msg === 'in handler').length
          const r = await app.inject({ url: '/', headers: header === undefined ? {} : { [name]: header } })
          const line = out.lines().filter((l) => l.msg === 'in handler')[before] as Record<string, unknown>
          expect(line.reqId).toBe(line.rid)
          expect(r.json().rid).toBe(line.rid)
          return { line: line.rid as string, response: r.headers[name] as string | undefined }
        }
      }

      it("reuses Fastify's own request.id and echoes it", async () => {
        const idOf = await idApp({})
        const a = await idOf('abc')
        expect(a.line).toMatch(/^req-/)
        expect(a.response).toBe(a.line)
      })

      it('keeps a well-formed trusted id with genReqId({ trustRequestId: true })', async () => {
        const idOf = await idApp({ genReqId: genReqId({ trustRequestId: true }) })
        for (const id of ['abc-123', '0f8fad5b-d9cb-469f-a165-70867728950e', 'a'.repeat(128)]) {
          expect(await idOf(id)).toEqual({ line: id, response: id })
        }
      })

      it('replaces a trusted but malformed id: 10 KB, control characters, newlines, a JSON fragment', async () => {
        const idOf = await idApp({ genReqId: genReqId({ trustRequestId: true }) })
        const abuse = [
          'a'.repeat(10 * 1024),
          'abc\u0001def',
          'abc\ndef',
          'abc\r\ndef',
          '"},"level":60,"msg":"forged',
          '{"userId":"admin"}',
          'two words',
        ]
        const ids = new Set<string>()
        for (const value of abuse) {
          const { line, response } = await idOf(value)
          expect(line).toMatch(UUID)
          expect(response).toBe(line)
          ids.add(line)
        }
        expect(ids.size).toBe(abuse.length)
      })

      it('replaces every incoming id with genReqId() (not trusted, the default)', async () => {
        const idOf = await idApp({ genReqId: genReqId() })
        const { line, response } = await idOf('abc-123')
        expect(line).toMatch(UUID)
        expect(response).toBe(line)
      })

      it('echoes under a custom header, or not at all when asked', async () => {
        const custom = await idApp(
          { genReqId: genReqId({ requestIdHeader: 'x-correlation-id', trustRequestId: true }) },
          { requestIdHeader: 'x-correlation-id' },
        )
        expect(await custom('corr-1', 'x-correlation-id')).toEqual({ line: 'corr-1', response: 'corr-1' })
        const silent = await idApp({}, { setResponseHeader: false })
        expect((await silent()).response).toBeUndefined()
      })
    })

    it('refuses bad options at registration with a TypeError', async () => {
      const { app } = setup()
      await expect(app.register(fastifyContext, {} as FastifyContextOptions)).rejects.toThrow(TypeError)
      const other = setup()
      await expect(
        other.app.register(fastifyContext, { enrich: other.p, requestIdHeader: 'bad header' }),
      ).rejects.toThrow(/"bad header"/)
    })

    it('is the default export too', async () => {
      const mod = await import('../../src/context/fastify.js')
      expect(mod.default).toBe(fastifyContext)
    })
  })
})
