// One server of the HTTP benchmark, in a process of its own (no heap or GC
// shared with the other variants or the load generator). Arguments: the
// framework (express | fastify), the variant (plain | hand | snapshot |
// deferred) and the log destination path. It listens on 127.0.0.1:0, sends
// { port } to its parent once it takes requests, and on { close } writes the
// lines still waiting and exits.
//
// The route, GET /users/:id/orders, logs two lines through the request logger
// (pino-http's req.log, Fastify's request.log); the framework's own logger
// adds its lines. The user is the x-user-id header, set by an authentication
// step placed after the request context, as in an application. pino-enrich is
// imported by its package name: the built dist, as a user gets it.
import { AsyncLocalStorage } from 'node:async_hooks'
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import type { IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import express, { type NextFunction, type Request, type Response } from 'express'
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify'
import { LRUCache } from 'lru-cache'
import pino from 'pino'
import { createPipeline, defineEnricher, type Pipeline } from 'pino-enrich'
import { deploymentEnricher, hostEnricher, processEnricher, requestEnricher } from 'pino-enrich/enrichers'
import { expressContext } from 'pino-enrich/express'
import { fastifyContext, genReqId } from 'pino-enrich/fastify'
import { pinoHttp } from 'pino-http'

const FRAMEWORKS = ['express', 'fastify'] as const
const VARIANTS = ['plain', 'hand', 'snapshot', 'deferred'] as const
type Framework = (typeof FRAMEWORKS)[number]
type Variant = (typeof VARIANTS)[number]

/** What a user lookup answers: a small object, after a short wait as a user service would. */
interface User {
  id: string
  name: string
  plan: string
}
const HOUR = 3_600_000
const lookupUser = async (id: string): Promise<User> => {
  await sleep(2)
  return { id, name: `name of ${id}`, plan: id.endsWith('7') ? 'free' : 'pro' }
}
const DEPLOYMENT = { serviceName: 'checkout', version: '1.4.2', environment: 'production' }
const ORDERS = [
  { id: 1, total: 12.5 },
  { id: 2, total: 7 },
]

/** The pino-enrich pipeline of the snapshot and deferred variants. */
function pipeline(): Pipeline {
  return createPipeline({
    enrichers: [
      hostEnricher(),
      processEnricher(),
      deploymentEnricher(DEPLOYMENT),
      requestEnricher(),
      defineEnricher<string>({
        name: 'user',
        key: (ctx) => ctx.context?.userId as string | undefined,
        compute: async (id) => ({ user: await lookupUser(id) }),
        cache: { ttlMs: HOUR, max: 10_000 },
      }),
    ],
  })
}

/**
 * The static fields the pino-enrich pipeline writes, read once from a pipeline
 * closed before the server starts: the hand-written variant sets them in pino's
 * `base`, as one would write them by hand, for the same output.
 */
async function staticFields(): Promise<Record<string, unknown>> {
  const enrich = createPipeline({
    enrichers: [hostEnricher(), processEnricher(), deploymentEnricher(DEPLOYMENT)],
  })
  await enrich.ready({ timeoutMs: 5_000 })
  const fields = enrich.snapshot()
  delete fields.enrich
  await enrich.close()
  return fields
}

interface HandStore {
  requestId: string
  method: string
  /** The framework's request, for what is known only later (route, user). */
  route: () => string | undefined
  userId: () => string | undefined
}

/**
 * The hand-written equivalent: static fields in `base`; request id, method,
 * route and user id from an AsyncLocalStorage in a `mixin`; the user from an
 * lru-cache that fills itself in the background (fetch() on a miss, not
 * awaited: the line goes out without it, as pino-enrich's snapshot does).
 * `withRequestId` false on Fastify, whose request.log binds reqId already.
 */
function handLogger(
  dest: pino.DestinationStream,
  base: Record<string, unknown>,
  withRequestId: boolean,
): { logger: pino.Logger; als: AsyncLocalStorage<HandStore> } {
  const als = new AsyncLocalStorage<HandStore>()
  const users = new LRUCache<string, User>({ max: 10_000, ttl: HOUR, fetchMethod: lookupUser })
  const mixin = (): Record<string, unknown> => {
    const s = als.getStore()
    if (s === undefined) return {}
    const userId = s.userId()
    const out: Record<string, unknown> = withRequestId
      ? { reqId: s.requestId, reqMethod: s.method, reqRoute: s.route(), userId }
      : { reqMethod: s.method, reqRoute: s.route(), userId }
    if (userId !== undefined) {
      const user = users.get(userId)
      if (user !== undefined) out.user = user
      else users.fetch(userId).catch(() => {})
    }
    return out
  }
  return { logger: pino({ base: { pid: process.pid, hostname: 'bench', ...base }, mixin }, dest), als }
}

const userOf = (header: unknown): string | undefined => (typeof header === 'string' ? header : undefined)

async function expressServer(
  variant: Variant,
  dest: pino.DestinationStream,
  base: Record<string, unknown>,
): Promise<{ listen: () => Promise<number>; enrich?: Pipeline }> {
  type AuthedRequest = Request & { user?: { id: string } }
  const app = express()
  let logger: pino.Logger
  let enrich: Pipeline | undefined
  if (variant === 'plain') {
    logger = pino({ base: { pid: process.pid, hostname: 'bench' } }, dest)
  } else if (variant === 'hand') {
    const hand = handLogger(dest, base, true)
    logger = hand.logger
    app.use((req: AuthedRequest, res: Response, next: NextFunction) => {
      const requestId = randomUUID()
      ;(req as { id?: string }).id = requestId
      res.setHeader('x-request-id', requestId)
      const store: HandStore = {
        requestId,
        method: req.method,
        route: () => (req.route === undefined ? req.path : req.baseUrl + (req.route as { path: string }).path),
        userId: () => req.user?.id,
      }
      hand.als.run(store, next)
    })
  } else {
    enrich = pipeline()
    await enrich.ready({ timeoutMs: 5_000 })
    logger = pino(enrich.pinoOptions({ mode: variant, base: { pid: process.pid, hostname: 'bench' } }), dest)
    app.use(expressContext(enrich, { user: (req) => (req as AuthedRequest).user?.id }))
  }
  app.use(pinoHttp({ logger }))
  app.use((req: AuthedRequest, _res: Response, next: NextFunction) => {
    const id = userOf(req.headers['x-user-id'])
    if (id !== undefined) req.user = { id }
    next()
  })
  app.get('/users/:id/orders', (req, res) => {
    req.log.info({ orderCount: ORDERS.length }, 'listing orders')
    req.log.info('orders listed')
    res.json(ORDERS)
  })
  return {
    listen: async () => {
      const server = app.listen(0, '127.0.0.1')
      await once(server, 'listening')
      return (server.address() as AddressInfo).port
    },
    ...(enrich === undefined ? {} : { enrich }),
  }
}

async function fastifyServer(
  variant: Variant,
  dest: pino.DestinationStream,
  base: Record<string, unknown>,
): Promise<{ listen: () => Promise<number>; enrich?: Pipeline }> {
  type Authed = FastifyRequest & { user: { id: string } | null }
  let logger: pino.Logger
  let requestId: ((req: IncomingMessage) => string) | undefined
  let hand: ReturnType<typeof handLogger> | undefined
  let enrich: Pipeline | undefined
  if (variant === 'plain') {
    logger = pino({ base: { pid: process.pid, hostname: 'bench' } }, dest)
  } else if (variant === 'hand') {
    hand = handLogger(dest, base, false)
    logger = hand.logger
    requestId = () => randomUUID()
  } else {
    enrich = pipeline()
    await enrich.ready({ timeoutMs: 5_000 })
    logger = pino(enrich.pinoOptions({ mode: variant, base: { pid: process.pid, hostname: 'bench' } }), dest)
    requestId = genReqId()
  }
  const app = Fastify({ loggerInstance: logger, ...(requestId === undefined ? {} : { genReqId: requestId }) })
  if (hand !== undefined) {
    const { als } = hand
    const stores = new WeakMap<FastifyRequest, HandStore>()
    // As fastifyContext does: enter in onRequest, again after body parsing and for Fastify's completion line.
    app.addHook('onRequest', (request, reply, done) => {
      const route = request.routeOptions.url
      const store: HandStore = {
        requestId: String(request.id),
        method: request.method,
        route: () => route,
        userId: () => (request as Authed).user?.id,
      }
      stores.set(request, store)
      reply.header('x-request-id', store.requestId)
      als.run(store, done)
    })
    const reenter = (request: FastifyRequest, _reply: FastifyReply, done: () => void): void => {
      const store = stores.get(request)
      if (store === undefined || als.getStore() === store) done()
      else als.run(store, done)
    }
    app.addHook('preValidation', reenter)
    app.addHook('onResponse', reenter)
  } else if (enrich !== undefined) {
    await app.register(fastifyContext, { enrich, user: (request) => (request as Authed).user?.id ?? undefined })
  }
  app.decorateRequest('user', null)
  app.addHook('onRequest', (request, _reply, done) => {
    const id = userOf(request.headers['x-user-id'])
    if (id !== undefined) (request as Authed).user = { id }
    done()
  })
  app.get('/users/:id/orders', (request, reply) => {
    request.log.info({ orderCount: ORDERS.length }, 'listing orders')
    request.log.info('orders listed')
    reply.send(ORDERS)
  })
  return {
    listen: async () => {
      await app.listen({ port: 0, host: '127.0.0.1' })
      return (app.server.address() as AddressInfo).port
    },
    ...(enrich === undefined ? {} : { enrich }),
  }
}

async function main(): Promise<void> {
  const [framework, variant, destPath = '/dev/null'] = process.argv.slice(2) as [Framework, Variant, string?]
  if (!FRAMEWORKS.includes(framework) || !VARIANTS.includes(variant)) {
    throw new RangeError(`usage: http-server.ts <${FRAMEWORKS.join('|')}> <${VARIANTS.join('|')}> [destination]`)
  }
  const base = variant === 'hand' ? await staticFields() : {}
  const dest = pino.destination({ dest: destPath, sync: false, minLength: 4096 })
  await once(dest, 'ready')
  const server =
    framework === 'express' ? await expressServer(variant, dest, base) : await fastifyServer(variant, dest, base)
  const port = await server.listen()
  process.on('message', (m: { close?: boolean }) => {
    if (m.close !== true) return
    void (async () => {
      await server.enrich?.flush()
      dest.flushSync()
      process.exit(0)
    })()
  })
  // A parent that died (a failed check, ^C) leaves no server behind.
  process.on('disconnect', () => process.exit(0))
  process.send?.({ port })
}

await main()
