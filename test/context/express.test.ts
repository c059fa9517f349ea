import http from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import express, { type Express } from 'express'
import pino from 'pino'
import { type Options as PinoHttpOptions, pinoHttp } from 'pino-http'
import { afterEach, describe, expect, it } from 'vitest'
import { type ExpressContextOptions, expressContext, genReqId } from '../../src/context/express.js'
import { createPipeline, type Pipeline, type RequestContext } from '../../src/index.js'
import { expectRequestsKeptApart, requestFields, userLookup } from '../helpers/context-enrichers.js'
import { closeServer, type HttpClient, httpClient, listen, rawHeaders, rawRequest } from '../helpers/http.js'
import { type Sink, sink } from '../helpers/sink.js'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

let servers: http.Server[] = []
let clients: HttpClient[] = []
let pipelines: Pipeline[] = []

afterEach(async () => {
  for (const c of clients) c.close()
  await Promise.all(servers.map(closeServer))
  await Promise.all(pipelines.map((p) => p.close()))
  servers = []
  clients = []
  pipelines = []
})

interface Setup {
  p: Pipeline
  out: Sink
  log: pino.Logger
  app: Express
  client: HttpClient
}

function setup(mode: 'snapshot' | 'deferred' = 'snapshot', lookups?: string[]): Setup {
  const p = createPipeline({ deadlineMs: 2_000 })
  pipelines.push(p)
  p.register(requestFields)
  p.register(userLookup(lookups))
  const out = sink()
  const log = pino(p.pinoOptions({ mode }), out)
  const client = httpClient()
  clients.push(client)
  return { p, out, log, app: express(), client }
}

async function start(app: Express, options: http.ServerOptions = {}): Promise<{ url: string; server: http.Server }> {
  const server = http.createServer(options, app)
  servers.push(server)
  return { url: await listen(server), server }
}

const REQUEST_KEYS = ['rid', 'uid', 'route', 'method', 'user'] as const

describe('expressContext', () => {
  it('keeps 1,000 concurrent requests apart through express.json(), awaits and timers', async () => {
    const { p, out, log, app, client } = setup('deferred')
    app.use(expressContext(p, { trustRequestId: true, user: (req) => req.body?.user }))
    app.use(express.json())
    app.post('/orders/:orderId', async (req, res) => {
      const n = req.body.n as number
      log.info({ n, step: 'start' }, 'handling')
      await sleep(Math.floor(Math.random() * 6))
      log.info({ n, step: 'after await' }, 'handling')
      await new Promise<void>((resolve) =>
        setTimeout(
          () => {
            log.info({ n, step: 'in timer' }, 'handling')
            resolve()
          },
          Math.floor(Math.random() * 3),
        ),
      )
      res.json({ rid: p.context.get()?.requestId })
    })
    const { url, server } = await start(app)
    server.on('connection', () => log.info({ outside: 'connection' }, 'socket'))
    // Runs right after Express's own listener, in the same tick: a context entered with enterWith() would leak here.
    server.on('request', () => log.info({ outside: 'request listener' }, 'after the app'))
    log.info({ outside: 'before' }, 'starting load')

    const N = 1_000
    const responses = await Promise.all(
      Array.from({ length: N }, (_, n) =>
        client.request(`${url}/orders/${n}`, {
          method: 'POST',
          headers: { 'x-request-id': `id-${n}` },
          json: { n, user: `u${n % 37}`, pad: 'x'.repeat(n % 7 === 0 ? 20_000 : 10) },
        }),
      ),
    )
    log.info({ outside: 'after' }, 'load done')
    await p.flush()

    const lines = out.lines()
    expectRequestsKeptApart(responses, lines, N)
    const outside = lines.filter((l) => l.outside !== undefined)
    expect(outside.length).toBeGreaterThanOrEqual(N + 3)
    for (const line of outside) for (const k of REQUEST_KEYS) expect(line).not.toHaveProperty(k)
    expect(p.stats().records.timedOut).toBe(0)
  })

  it('puts the route template on lines once the router has matched, the path before', async () => {
    const { p, out, log, app, client } = setup()
    app.use(expressContext(p))
    app.use((_req, _res, next) => {
      log.info({ at: 'before routing' })
      next()
    })
    app.get('/users/:id', (_req, res) => {
      log.info({ at: 'handler' })
      res.end()
    })
    const api = express.Router()
    api.get('/items/:itemId', async (_req, res) => {
      await sleep(1)
      log.info({ at: 'nested handler' })
      res.end()
    })
    api.get('/', (_req, res) => {
      log.info({ at: 'router root' })
      res.end()
    })
    app.use('/api', api)
    app.use((_req, res) => {
      log.info({ at: 'not found' })
      res.status(404).end()
    })
    const { url } = await start(app)
    await client.request(`${url}/users/42?x=1`)
    await client.request(`${url}/api/items/7`)
    await client.request(`${url}/api`)
    await client.request(`${url}/nothing/here?q=2`)

    const routes = out.lines().map((l) => [l.at, l.route])
    expect(routes).toEqual([
      ['before routing', '/users/42'],
      ['handler', '/users/:id'],
      ['before routing', '/api/items/7'],
      ['nested handler', '/api/items/:itemId'],
      ['before routing', '/api'],
      ['router root', '/api'],
      ['before routing', '/nothing/here'],
      ['not found', '/nothing/here'],
    ])
  })

  it('reads the user when a line is logged, so authentication placed after it counts', async () => {
    const lookups: string[] = []
    const { p, out, log, app, client } = setup('deferred', lookups)
    type Authed = express.Request & { user?: { id: string } }
    app.use(expressContext(p, { user: (req) => (req as Authed).user?.id }))
    app.use((req, _res, next) => {
      log.info({ at: 'before auth' })
      const token = req.headers.authorization
      if (token !== undefined) (req as Authed).user = { id: token.replace('Bearer ', '') }
      next()
    })
    app.get('/me', (_req, res) => {
      log.info({ at: 'handler' })
      res.end()
    })
    const { url } = await start(app)
    await client.request(`${url}/me`, { headers: { authorization: 'Bearer alice' } })
    await client.request(`${url}/me`, { headers: { authorization: 'Bearer bob' } })
    await client.request(`${url}/me`)
    await p.flush()

    const seen = out.lines().map((l) => [l.at, l.uid, (l.user as { name?: string } | undefined)?.name])
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

  for (const mode of ['snapshot', 'deferred', 'transport'] as const) {
    it(`${mode}: a user() that logs is not asked again for the line it logs, and returns`, async () => {
      const p = createPipeline({ deadlineMs: 2_000 })
      pipelines.push(p)
      p.register(requestFields)
      const out = sink()
      const log = pino(p.pinoOptions({ mode, redact: ['secret'] }), out)
      let calls = 0
      const app = express()
      app.use(
        expressContext(p, {
          user: () => {
            calls++
            if (calls > 50) throw new Error('user() called again and again')
            log.info({ at: 'in user()' })
            return 'u1'
          },
        }),
      )
      app.get('/', (_req, res) => {
        log.info({ at: 'handler' })
        res.end()
      })
      const { url } = await start(app)
      const client = httpClient()
      clients.push(client)
      const res = await client.request(`${url}/`)
      expect(res.status).toBe(200)
      await p.flush()
      expect(calls).toBe(1)
      const lines = out.lines()
      expect(lines.map((l) => l.at)).toEqual(['in user()', 'handler'])
      const uid = (l: Record<string, unknown>) =>
        mode === 'transport' ? (l['@pino-enrich'] as { c?: { userId?: string } }).c?.userId : l.uid
      expect(lines.map(uid)).toEqual([undefined, 'u1'])
      if (mode === 'transport') {
        // The line logged from user() still carries the redaction the worker applies to what it adds.
        expect(lines.map((l) => (l['@pino-enrich'] as { r?: unknown }).r)).toEqual([
          { paths: ['secret'] },
          { paths: ['secret'] },
        ])
      }
    })
  }

  it('keeps a plain store whose lazy fields copy and serialize (as the transport mode copies it)', async () => {
    const { p, app, client } = setup()
    app.use(expressContext(p, { trustRequestId: true, user: () => 'u9' }))
    app.get('/users/:id', (_req, res) => {
      const store = p.context.get()
      res.json({ json: JSON.parse(JSON.stringify(store)), copy: { ...store }, cloned: structuredClone(store) })
    })
    const { url } = await start(app)
    const r = await client.request(`${url}/users/42`, { headers: { 'x-request-id': 'abc' } })
    const expected = { requestId: 'abc', method: 'GET', route: '/users/:id', userId: 'u9' }
    expect(JSON.parse(r.body)).toEqual({ json: expected, copy: expected, cloned: expected })
  })

  it('lets the application set userId on the context directly', async () => {
    const { p, out, log, app, client } = setup()
    app.use(expressContext(p, { user: () => 'from-option' }))
    app.get('/', (_req, res) => {
      log.info({ at: 'option' })
      const store = p.context.get()
      if (store !== undefined) store.userId = 'assigned'
      log.info({ at: 'assigned' })
      res.end()
    })
    const { url } = await start(app)
    await client.request(url)
    expect(out.lines().map((l) => l.uid)).toEqual(['from-option', 'assigned'])
  })

  describe('request id', () => {
    async function idApp(options: ExpressContextOptions, serverOptions: http.ServerOptions = {}) {
      const { p, out, log, app, client } = setup()
      app.use(expressContext(p, options))
      app.get('/', (_req, res) => {
        log.info('in handler')
        res.json({ rid: p.context.get()?.requestId })
      })
      const { url } = await start(app, serverOptions)
      const idOf = async (
        header?: string,
        name = 'x-request-id',
      ): Promise<{ line: string; response: string | undefined }> => {
        const before = out.lines().length
        const r = await client.request(url, header === undefined ? {} : { headers: { [name]: header } })
        const line = out.lines()[before]?.rid as string
        expect(JSON.parse(r.body).rid).toBe(line)
        return { line, response: r.headers[name] as string | undefined }
      }
      return { url, out, idOf }
    }

    it('keeps a well-formed trusted id and echoes it', async () => {
      const { idOf } = await idApp({ trustRequestId: true })
      for (const id of ['abc-123', '0f8fad5b-d9cb-469f-a165-70867728950e', 'svc:edge.7_x', 'a'.repeat(128)]) {
        expect(await idOf(id)).toEqual({ line: id, response: id })
      }
    })

    it('replaces any incoming id when the header is not trusted (the default)', async () => {
      const { idOf } = await idApp({})
      const a = await idOf('abc-123')
      const b = await idOf('abc-123')
      expect(a.line).toMatch(UUID)
      expect(b.line).toMatch(UUID)
      expect(a.line).not.toBe(b.line)
      expect(a.response).toBe(a.line)
    })

    it('replaces a trusted but malformed id: 10 KB, spaces, quotes, a JSON fragment, a repeated header', async () => {
      const { idOf } = await idApp({ trustRequestId: true })
      const abuse = [
        'a'.repeat(10 * 1024),
        'a'.repeat(129),
        'two words',
        'tab\there',
        '"},"level":60,"msg":"forged',
        '{"userId":"admin"}',
        '../../etc/passwd',
        '',
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

    it('replaces control characters and folded lines sent raw, past any client-side check', async () => {
      // Node's strict parser answers 400 to most of these before any middleware
      // runs; the lenient one lets them through to show what the middleware does.
      const { url, out } = await idApp({ trustRequestId: true }, { insecureHTTPParser: true })
      const values = ['abc\x01def', 'abc\x7fdef', 'caf\xe9', 'abc\r\n def', 'abc\x1b[31mred']
      for (const value of values) {
        const before = out.lines().length
        const response = await rawRequest(
          url,
          `GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: ${value}\r\nConnection: close\r\n\r\n`,
        )
        expect(response).toMatch(/^HTTP\/1\.1 200 /)
        const line = out.lines()[before]
        expect(line?.rid).toMatch(UUID)
        expect(rawHeaders(response)['x-request-id']).toBe(line?.rid)
      }
      // A header that is well formed on the wire and repeated: Node joins the values with ", ".
      const before = out.lines().length
      await rawRequest(
        url,
        'GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: a\r\nX-Request-Id: b\r\nConnection: close\r\n\r\n',
      )
      expect(out.lines()[before]?.rid).toMatch(UUID)
    })

    it('replaces a newline or control character whatever reaches the middleware', () => {
      const p = createPipeline()
      pipelines.push(p)
      const mw = expressContext(p, { trustRequestId: true, setResponseHeader: false })
      for (const value of ['a\nb', 'a\r\nb', 'a\u0000b', 'a\u2028b', ['a', 'b']]) {
        const req = { headers: { 'x-request-id': value }, method: 'GET', url: '/' } as unknown as express.Request
        let seen: RequestContext | undefined
        mw(req, {} as express.Response, () => {
          seen = p.context.get()
        })
        expect(seen?.requestId).toMatch(UUID)
        expect((req as unknown as { id: string }).id).toBe(seen?.requestId)
      }
    })

    it('uses generateId and a custom header, and leaves the response alone when asked', async () => {
      let n = 0
      const { idOf } = await idApp({ generateId: () => `gen-${++n}`, setResponseHeader: false })
      expect(await idOf('abc')).toEqual({ line: 'gen-1', response: undefined })
      const custom = await idApp({ requestIdHeader: 'X-Correlation-Id', trustRequestId: true })
      expect(await custom.idOf('corr-1', 'x-correlation-id')).toEqual({ line: 'corr-1', response: 'corr-1' })
      expect(await custom.idOf('corr-2', 'x-request-id')).toEqual({
        line: expect.stringMatching(UUID),
        response: undefined,
      })
    })

    it('refuses bad options with a TypeError quoting the value', () => {
      const p = createPipeline()
      pipelines.push(p)
      expect(() => expressContext(p, { requestIdHeader: 'bad header' })).toThrow(/"bad header"/)
      expect(() => expressContext(p, { trustRequestId: 'yes' as unknown as boolean })).toThrow(TypeError)
      expect(() => expressContext(p, { user: 'id' as unknown as () => string })).toThrow(TypeError)
      expect(() => expressContext({} as Pipeline)).toThrow(TypeError)
    })
  })

  describe('beside pino-http', () => {
    async function run(order: 'context first' | 'pino-http first', httpOptions: PinoHttpOptions = {}) {
      const { p, out, log, app, client } = setup()
      const ctx = expressContext(p, { trustRequestId: true })
      const httpLogger = pinoHttp({ logger: log, ...httpOptions })
      if (order === 'context first') app.use(ctx, httpLogger)
      else app.use(httpLogger, ctx)
      app.get('/users/:id', async (req, res) => {
        req.log.info({ at: 'handler' }, 'via req.log')
        await sleep(1)
        req.log.info({ at: 'after await' }, 'via req.log')
        res.json({ id: req.id })
      })
      const { url } = await start(app)
      const responses = await Promise.all(
        ['one', 'two', undefined].map((id) =>
          client.request(`${url}/users/1`, id === undefined ? {} : { headers: { 'x-request-id': id } }),
        ),
      )
      // pino-http writes its "request completed" line on the response's finish event.
      await sleep(5)
      return { responses, lines: out.lines() }
    }

    function expectOneIdPerRequest(
      responses: Array<{ headers: http.IncomingHttpHeaders; body: string }>,
      lines: Array<Record<string, unknown>>,
    ) {
      expect(lines).toHaveLength(9)
      for (const r of responses) {
        const id = r.headers['x-request-id'] as string
        expect(String(JSON.parse(r.body).id)).toBe(id)
        const mine = lines.filter((l) => l.rid === id)
        expect(mine.map((l) => l.msg).sort()).toEqual(['request completed', 'via req.log', 'via req.log'])
        for (const l of mine) {
          expect(String((l.req as { id: unknown }).id)).toBe(id)
          expect(l.route).toBe('/users/:id')
        }
      }
    }

    it('shares one id with pino-http placed after it, on req.log lines and the completed line', async () => {
      const { responses, lines } = await run('context first')
      expect(responses.map((r) => r.headers['x-request-id']).slice(0, 2)).toEqual(['one', 'two'])
      expect(responses[2]?.headers['x-request-id']).toMatch(UUID)
      expectOneIdPerRequest(responses, lines)
    })

    it("reuses pino-http's id when pino-http runs first with genReqId()", async () => {
      const { responses, lines } = await run('pino-http first', { genReqId: genReqId({ trustRequestId: true }) })
      expect(responses.map((r) => r.headers['x-request-id']).slice(0, 2)).toEqual(['one', 'two'])
      expect(responses[2]?.headers['x-request-id']).toMatch(UUID)
      expectOneIdPerRequest(responses, lines)
    })

    it("reuses pino-http's default counter id rather than making a second one", async () => {
      const { responses, lines } = await run('pino-http first')
      for (const r of responses) expect(r.headers['x-request-id']).toMatch(/^\d+$/)
      expectOneIdPerRequest(responses, lines)
    })
  })
})
