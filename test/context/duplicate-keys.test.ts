import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import express from 'express'
import Fastify from 'fastify'
import Fastify4 from 'fastify4'
import pino from 'pino'
import { pinoHttp } from 'pino-http'
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest'
import { requestEnricher } from '../../enrichers/index.js'
import { expressContext } from '../../src/context/express.js'
import { fastifyContext } from '../../src/context/fastify.js'
import { createPipeline, type Pipeline } from '../../src/index.js'
import { duplicateKeys, rawLines, topLevelCount } from '../helpers/duplicate-keys.js'
import { type HttpClient, httpClient } from '../helpers/http.js'
import { type Sink, sink } from '../helpers/sink.js'

let pipelines: Pipeline[] = []
let closers: Array<() => Promise<unknown> | unknown> = []

afterEach(async () => {
  for (const c of closers) await c()
  await Promise.all(pipelines.map((p) => p.close()))
  pipelines = []
  closers = []
})

type Mode = 'snapshot' | 'deferred'

/** README's setup: requestEnricher() writes the context's request id as `reqId`. */
function pipelineAndLogger(mode: Mode): { p: Pipeline; out: Sink; log: pino.Logger } {
  const p = createPipeline({ enrichers: [requestEnricher()], deadlineMs: 1_000 })
  pipelines.push(p)
  const out = sink()
  return { p, out, log: pino(p.pinoOptions({ mode }), out) }
}

/**
 * Every raw line has no key twice at any depth, and every line logged inside
 * a request (`inRequest`) carries `reqId` exactly once, with its request's id.
 */
function expectOneReqIdPerLine(
  lines: readonly string[],
  inRequest: (line: Record<string, unknown>) => string | undefined,
): number {
  expect(lines.length).toBeGreaterThan(0)
  let checked = 0
  for (const raw of lines) {
    expect(duplicateKeys(raw), raw).toEqual([])
    const id = inRequest(JSON.parse(raw) as Record<string, unknown>)
    if (id === undefined) continue
    checked++
    expect(topLevelCount(raw, 'reqId'), raw).toBe(1)
    expect((JSON.parse(raw) as { reqId: unknown }).reqId, raw).toBe(id)
  }
  return checked
}

describe('duplicate-key scanner', () => {
  it('finds a key twice at the top and nested, and takes escapes and arrays as JSON does', () => {
    expect(duplicateKeys('{"a":1,"b":{"c":[{"d":1,"d":2}],"c2":"\\"a\\":1"},"a":"x"}')).toEqual([
      { path: 'b.c[0]', key: 'd' },
      { path: '', key: 'a' },
    ])
    expect(duplicateKeys('{"\\u0061":1,"a":2}')).toEqual([{ path: '', key: 'a' }])
    expect(duplicateKeys('{"a":{"a":1},"b":[1,2,{"a":null}]}')).toEqual([])
    expect(() => duplicateKeys('{"a":1')).toThrow(SyntaxError)
    expect(topLevelCount('{"reqId":1,"x":{"reqId":2},"reqId":1}', 'reqId')).toBe(2)
  })
})

// README's two forms: loggerInstance on Fastify 5, logger on Fastify 4.
const fastify5 = (log: pino.Logger) => Fastify({ loggerInstance: log })
type App = ReturnType<typeof fastify5>
const FASTIFY: Array<{ major: string; make: (log: pino.Logger) => App }> = [
  { major: 'Fastify 5', make: fastify5 },
  // Fastify 4's own types differ in detail from 5's; the test drives both through 5's.
  { major: 'Fastify 4', make: (log) => Fastify4({ logger: log }) as unknown as App },
]

describe.each(FASTIFY)('no key twice on a line: $major', ({ make }) => {
  it.each(['snapshot', 'deferred'] as const)(
    'request.log, a child of it, app.log and the logger itself carry reqId once (%s)',
    async (mode) => {
      const { p, out, log } = pipelineAndLogger(mode)
      const app = make(log)
      closers.push(() => app.close())
      await app.register(fastifyContext, { enrich: p })
      app.get('/items/:id', async (request) => {
        request.log.info({ at: 'request.log' })
        request.log.child({ part: 'db' }).info({ at: 'child of request.log' })
        app.log.info({ at: 'app.log' })
        log.info({ at: 'logger' })
        await Promise.resolve()
        request.log.warn({ at: 'after await' })
        return { id: request.id }
      })
      const ids: string[] = []
      for (let i = 0; i < 8; i++) ids.push((await app.inject({ url: `/items/${i}` })).json().id)
      log.info({ at: 'outside' })
      await p.flush()
      const checked = expectOneReqIdPerLine(rawLines(out.chunks), (l) => {
        if (l.at === 'outside') return undefined
        // Every other line, Fastify's own included, was written inside a request and names it.
        expect(ids).toContain(l.reqId)
        return l.reqId as string
      })
      // 5 of ours per request, plus Fastify's "incoming request" and "request completed".
      expect(checked).toBe(8 * 7)
      const outside = out.lines().find((l) => l.at === 'outside')
      expect(outside).not.toHaveProperty('reqId')
    },
  )

  it('keeps the binding when request.log binds another id than the context holds', async () => {
    const { p, out, log } = pipelineAndLogger('snapshot')
    const app = make(log)
    closers.push(() => app.close())
    await app.register(fastifyContext, { enrich: p })
    app.get('/', async (request) => {
      // The context's id changed after Fastify bound its own: the line keeps what pino bound.
      if (request.enrichContext !== null) request.enrichContext.requestId = 'from-context'
      request.log.info({ at: 'request.log' })
      app.log.info({ at: 'app.log' })
      return 'ok'
    })
    await app.inject({ url: '/' })
    const lines = rawLines(out.chunks)
    for (const raw of lines) expect(duplicateKeys(raw), raw).toEqual([])
    const byAt = Object.fromEntries(out.lines().map((l) => [l.at, l.reqId]))
    expect(byAt['request.log']).toMatch(/^req-/)
    expect(byAt['app.log']).toBe('from-context')
  })
})

describe('no key twice on a line: Express with pino-http', () => {
  let client: HttpClient

  async function serve(mode: Mode, quietReqLogger: boolean) {
    const { p, out, log } = pipelineAndLogger(mode)
    const app = express()
    // pino-http after the context middleware takes its id: one id per request.
    app.use(expressContext(p), pinoHttp({ logger: log, quietReqLogger }))
    app.get('/items/:id', async (req, res) => {
      req.log.info({ at: 'req.log' })
      req.log.child({ part: 'db' }).info({ at: 'child of req.log' })
      log.info({ at: 'logger' })
      await Promise.resolve()
      req.log.warn({ at: 'after await' })
      res.json({ id: p.context.get()?.requestId })
    })
    const server = app.listen(0, '127.0.0.1')
    await once(server, 'listening')
    closers.push(() => new Promise((resolve) => server.close(resolve)))
    client = httpClient(4)
    closers.push(() => client.close())
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    return { p, out, log, url }
  }

  it.each([
    ['snapshot', true],
    ['snapshot', false],
    ['deferred', true],
    ['deferred', false],
  ] as const)('every line inside a request carries reqId once (%s, quietReqLogger %s)', async (mode, quiet) => {
    const { p, out, log, url } = await serve(mode, quiet)
    const ids = await Promise.all(
      Array.from({ length: 8 }, async (_, i) => JSON.parse((await client.request(`${url}/items/${i}`)).body).id),
    )
    // pino-http writes "request completed" on the response's finish event.
    await vi.waitFor(() => expect(out.lines().filter((l) => l.msg === 'request completed')).toHaveLength(8))
    log.info({ at: 'outside' })
    await p.flush()
    const checked = expectOneReqIdPerLine(rawLines(out.chunks), (l) => {
      if (l.at === 'outside') return undefined
      expect(ids).toContain(l.reqId)
      return l.reqId as string
    })
    expect(checked).toBe(8 * 5)
  })
})

const dir = mkdtempSync(join(tmpdir(), 'pino-enrich-dupes-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
let files = 0

/**
 * README's transport setup with requestEnricher() in the worker. `keyed` adds
 * a keyed lookup there, so that lines take the worker's queued path rather
 * than its in-place one. `finish()` ends the transport and returns the raw
 * lines the worker wrote.
 */
function transportLogger(keyed: boolean) {
  const p = createPipeline()
  pipelines.push(p)
  const file = join(dir, `t${++files}.ndjson`)
  const transport = pino.transport({
    pipeline: [
      {
        target: 'pino-enrich/transport',
        options: { enrichers: './test/fixtures/transport-request.mjs', enricherOptions: { keyed }, deadlineMs: 5_000 },
      },
      { target: 'pino/file', options: { destination: file } },
    ],
  })
  let ended: Promise<unknown> | undefined
  const end = () => {
    if (ended === undefined) {
      ended = once(transport, 'close')
      transport.end()
    }
    return ended
  }
  closers.push(end)
  const log = pino(p.pinoOptions({ mode: 'transport' }), transport)
  const finish = async (): Promise<string[]> => {
    await end()
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l.length > 0)
  }
  return { p, log, finish }
}

const WORKER_PATHS = [
  ['in place', false],
  ['queued', true],
] as const

describe.each(FASTIFY)("no key twice on a line: $major, mode 'transport' (real worker threads)", ({ make }) => {
  it.each(WORKER_PATHS)(
    'request.log, a child of it, app.log and the logger itself carry reqId once (%s)',
    async (_path, keyed) => {
      const { p, log, finish } = transportLogger(keyed)
      const app = make(log)
      await app.register(fastifyContext, { enrich: p })
      app.get('/items/:id', async (request) => {
        request.log.info({ at: 'request.log' })
        request.log.child({ part: 'db' }).info({ at: 'child of request.log' })
        app.log.info({ at: 'app.log' })
        log.info({ at: 'logger' })
        await Promise.resolve()
        request.log.warn({ at: 'after await' })
        return { id: request.id }
      })
      const ids: string[] = []
      for (let i = 0; i < 8; i++) ids.push((await app.inject({ url: `/items/${i}` })).json().id)
      log.info({ at: 'outside' })
      await app.close()
      const lines = await finish()
      const checked = expectOneReqIdPerLine(lines, (l) => {
        if (l.at === 'outside') return undefined
        expect(ids).toContain(l.reqId)
        return l.reqId as string
      })
      expect(checked).toBe(8 * 7)
      const outside = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.at === 'outside')
      expect(outside).toBeDefined()
      expect(outside).not.toHaveProperty('reqId')
    },
  )
})

describe("no key twice on a line: Express with pino-http, mode 'transport' (real worker threads)", () => {
  it.each([
    ['in place', true, false],
    ['in place', false, false],
    ['queued', true, true],
    ['queued', false, true],
  ] as const)('every line inside a request carries reqId once (%s, quietReqLogger %s)', async (_path, quiet, keyed) => {
    const { p, log, finish } = transportLogger(keyed)
    let finished = 0
    const app = express()
    app.use(expressContext(p), pinoHttp({ logger: log, quietReqLogger: quiet }), (_req, res, next) => {
      // After pino-http's own listener: its "request completed" line has been logged.
      res.on('finish', () => finished++)
      next()
    })
    app.get('/items/:id', async (req, res) => {
      req.log.info({ at: 'req.log' })
      req.log.child({ part: 'db' }).info({ at: 'child of req.log' })
      log.info({ at: 'logger' })
      await Promise.resolve()
      req.log.warn({ at: 'after await' })
      res.json({ id: p.context.get()?.requestId })
    })
    const server = app.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const client = httpClient(4)
    closers.unshift(
      () => client.close(),
      () => new Promise((resolve) => server.close(resolve)),
    )
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    const ids = await Promise.all(
      Array.from({ length: 8 }, async (_, i) => JSON.parse((await client.request(`${url}/items/${i}`)).body).id),
    )
    await vi.waitFor(() => expect(finished).toBe(8))
    log.info({ at: 'outside' })
    const lines = await finish()
    const checked = expectOneReqIdPerLine(lines, (l) => {
      if (l.at === 'outside') return undefined
      expect(ids).toContain(l.reqId)
      return l.reqId as string
    })
    expect(checked).toBe(8 * 5)
  })
})
