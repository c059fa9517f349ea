import http from 'node:http'
import express from 'express'
import Fastify from 'fastify'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { requestEnricher } from '../../enrichers/index.js'
import { expressContext } from '../../src/context/express.js'
import { fastifyContext } from '../../src/context/fastify.js'
import { ASYNC_USER_WARNING } from '../../src/context/request-store.js'
import { MAX_CONTEXT_VALUE_LENGTH } from '../../src/context/writer.js'
import { createPipeline, defineEnricher, type Pipeline } from '../../src/index.js'
import { closeServer, httpClient, listen } from '../helpers/http.js'
import { type Sink, sink } from '../helpers/sink.js'

type Framework = 'express' | 'fastify'
type Mode = 'snapshot' | 'deferred'

interface App {
  url: string
  p: Pipeline
  out: Sink
  /** Calls of the application's user(req). */
  userCalls: () => number
  close: () => Promise<void>
}

const apps: App[] = []
afterEach(async () => {
  await Promise.all(apps.splice(0).map((a) => a.close()))
})

/**
 * A real server on 127.0.0.1 with the integration, the request fields and a
 * keyed lookup on `userId` (so two enrichers read it per line). `GET /users/:id`
 * logs three lines; anything else is a 404 that logs one. `user(req)` answers
 * `userOf(req)`.
 */
async function start(
  framework: Framework,
  mode: Mode,
  userOf: (req: { headers: http.IncomingHttpHeaders }) => unknown,
): Promise<App> {
  const p = createPipeline({ deadlineMs: 200 })
  p.register(requestEnricher())
  p.register(
    defineEnricher({
      name: 'account',
      key: (ctx) => ctx.context?.userId,
      compute: (id: string) => ({ account: { idLength: id.length } }),
    }),
  )
  const out = sink()
  const log = pino(p.pinoOptions({ mode }), out)
  let calls = 0
  const user = (req: { headers: http.IncomingHttpHeaders }): string | undefined => {
    calls++
    return userOf(req) as string | undefined
  }
  let url: string
  let stop: () => Promise<void>
  if (framework === 'express') {
    const app = express()
    app.use(expressContext(p, { user }))
    app.get('/users/:id', (_req, res) => {
      for (let i = 0; i < 3; i++) log.info({ i }, 'handled')
      res.end('ok')
    })
    app.use((_req, res) => {
      log.info('not found')
      res.status(404).end()
    })
    const server = http.createServer(app)
    url = await listen(server)
    stop = () => closeServer(server)
  } else {
    const app = Fastify()
    await app.register(fastifyContext, { enrich: p, user })
    app.get('/users/:id', async () => {
      for (let i = 0; i < 3; i++) log.info({ i }, 'handled')
      return 'ok'
    })
    app.setNotFoundHandler(async (_request, reply) => {
      log.info('not found')
      return reply.code(404).send()
    })
    url = await app.listen({ port: 0, host: '127.0.0.1' })
    stop = () => app.close()
  }
  const a: App = {
    url,
    p,
    out,
    userCalls: () => calls,
    close: async () => {
      await stop()
      await p.close()
    },
  }
  apps.push(a)
  return a
}

const cases: Array<[Framework, Mode]> = [
  ['express', 'snapshot'],
  ['express', 'deferred'],
  ['fastify', 'snapshot'],
  ['fastify', 'deferred'],
]

describe.each(cases)('request context bounds (%s, %s mode, real server on 127.0.0.1)', (framework, mode) => {
  it(`a 15 KB user id is refused on every line (recorded invalid), a ${MAX_CONTEXT_VALUE_LENGTH}-character one kept`, async () => {
    const a = await start(framework, mode, (req) => req.headers['x-user'])
    const client = httpClient()
    try {
      const huge = 'u'.repeat(15 * 1024)
      const edge = 'e'.repeat(MAX_CONTEXT_VALUE_LENGTH)
      expect((await client.request(`${a.url}/users/1`, { headers: { 'x-user': huge } })).status).toBe(200)
      expect((await client.request(`${a.url}/users/2`, { headers: { 'x-user': edge } })).status).toBe(200)
      await a.p.flush()
      const lines = a.out.lines()
      expect(lines).toHaveLength(6)
      for (const l of lines.slice(0, 3)) {
        expect(l).not.toHaveProperty('userId')
        expect(l.reqMethod).toBe('GET')
        expect(l.reqRoute).toBe('/users/:id')
        // In snapshot mode the first lines also find the account lookup pending.
        expect((l.enrich as { invalid?: string[] }).invalid).toEqual(['request'])
      }
      for (const l of lines.slice(3)) {
        expect(l.userId).toBe(edge)
        expect((l.enrich as { invalid?: string[] } | undefined)?.invalid).toBeUndefined()
      }
      expect(a.out.chunks.join('')).not.toContain(huge.slice(0, MAX_CONTEXT_VALUE_LENGTH + 1))
      expect(a.p.stats().enrichers.find((e) => e.name === 'request')?.invalid).toBe(3)
    } finally {
      client.close()
    }
  })

  it('an 8 KB unmatched path does not become reqRoute on the 404 line: refused and recorded invalid', async () => {
    const a = await start(framework, mode, () => undefined)
    const client = httpClient()
    try {
      const path = `/${'p'.repeat(8 * 1024)}`
      expect((await client.request(`${a.url}${path}?q=1`)).status).toBe(404)
      expect((await client.request(`${a.url}/short`)).status).toBe(404)
      await a.p.flush()
      const [long, short] = a.out.lines()
      expect(long?.msg).toBe('not found')
      expect(long).not.toHaveProperty('reqRoute')
      expect(long?.enrich).toEqual({ invalid: ['request'] })
      expect(short?.reqRoute).toBe('/short')
      expect(short?.enrich).toBeUndefined()
    } finally {
      client.close()
    }
  })

  it('user() is called at most once per line while it has no id, though two enrichers read userId', async () => {
    const a = await start(framework, mode, () => undefined)
    const client = httpClient()
    try {
      for (let n = 0; n < 5; n++) expect((await client.request(`${a.url}/users/${n}`)).status).toBe(200)
      await a.p.flush()
      const lines = a.out.lines()
      expect(lines).toHaveLength(15)
      expect(lines.every((l) => !('userId' in l) && l.enrich === undefined)).toBe(true)
      expect(a.userCalls()).toBeLessThanOrEqual(15)
      expect(a.userCalls()).toBeGreaterThan(0)
    } finally {
      client.close()
    }
  })
})

describe.each(['express', 'fastify'] as const)('an async user() (%s, real server on 127.0.0.1)', (framework) => {
  it('is refused at the first request with one TypeError warning naming the fix, its rejection handled, and never called again', async () => {
    const warnings: Error[] = []
    const onWarning = (w: Error): void => {
      if ((w as { code?: string }).code === ASYNC_USER_WARNING) warnings.push(w)
    }
    process.on('warning', onWarning)
    const a = await start(framework, 'deferred', () => Promise.reject(new Error('no session store')))
    const client = httpClient()
    try {
      for (let n = 0; n < 3; n++) expect((await client.request(`${a.url}/users/${n}`)).status).toBe(200)
      await a.p.flush()
      // Warnings are emitted on the next tick.
      await new Promise((resolve) => setImmediate(resolve))
      const lines = a.out.lines()
      expect(lines).toHaveLength(9)
      expect(lines.every((l) => !('userId' in l))).toBe(true)
      expect(a.userCalls()).toBe(1)
      // Once per process, whichever integration met it first.
      expect(warnings.length).toBeLessThanOrEqual(1)
      if (warnings.length === 1) {
        expect(warnings[0]?.name).toBe('TypeError')
        expect(warnings[0]?.message).toMatch(/user\(req\) returned a Promise.*synchronously/)
      }
    } finally {
      process.off('warning', onWarning)
      client.close()
    }
  })
})
