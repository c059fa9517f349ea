// Request context with Fastify: request.log and the application logger both
// carry the request's id, route template and user, and a user lookup (a
// cached enricher keyed on the context's userId) against a user service.
// Run: npx tsx examples/fastify.ts
//
// In an application the imports are 'pino-enrich' and 'pino-enrich/fastify'.
import { once } from 'node:events'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify, { type FastifyRequest } from 'fastify'
import pino from 'pino'
import { fastifyContext, genReqId } from '../src/context/fastify.js'
import { createPipeline, defineEnricher, type EnrichContext, type RequestContext } from '../src/index.js'

// A user service on loopback, a little slow, as a real one is.
const users: Record<string, { name: string; plan: string }> = {
  u1: { name: 'Ada', plan: 'pro' },
  u2: { name: 'Grace', plan: 'free' },
}
const userService = http.createServer(async (req, res) => {
  await sleep(15)
  const user = users[req.url?.slice('/users/'.length) ?? '']
  res.writeHead(user === undefined ? 404 : 200, { 'content-type': 'application/json' })
  res.end(JSON.stringify(user ?? null))
})
userService.listen(0, '127.0.0.1')
await once(userService, 'listening')
const userServiceUrl = `http://127.0.0.1:${(userService.address() as AddressInfo).port}`
// Node loads fetch's HTTP client on its first call (100 ms or more on a busy
// machine), which a service that has been running paid long ago: pay it here,
// so the lookups below take what they take in a running service.
await (await fetch(`${userServiceUrl}/health`)).arrayBuffer()

// A line waits for its user at most deadlineMs. A lookup takes the service's
// 15 ms; the bound is generous so that a busy machine still shows the user (a
// service sets what its latency budget allows: 10 ms by default).
const enrich = createPipeline({ deadlineMs: 1_000 })
// The request id, route and user as fields. request.log lines also carry
// Fastify's own reqId binding, the same value; app.log lines have only this one.
enrich.register(
  Object.assign(
    ({ context }: EnrichContext<RequestContext>) =>
      context && { reqId: context.requestId, route: context.route, userId: context.userId },
    { enricherName: 'request' },
  ),
)
enrich.register(
  defineEnricher<string>({
    name: 'user',
    key: (ctx) => ctx.context?.userId as string | undefined,
    compute: async (userId, _ctx, { signal }) => {
      const res = await fetch(`${userServiceUrl}/users/${encodeURIComponent(userId)}`, { signal })
      if (!res.ok) return undefined
      const user = (await res.json()) as { name: string; plan: string }
      return { user: { name: user.name, plan: user.plan } }
    },
    cache: { ttlMs: 300_000 },
    timeoutMs: 1_000,
  }),
)
const logger = pino(enrich.pinoOptions({ mode: 'deferred' }))

// genReqId keeps a well-formed incoming x-request-id and generates a UUID otherwise.
const app = Fastify({ loggerInstance: logger, genReqId: genReqId({ trustRequestId: true }) })
type Authed = FastifyRequest & { user: { id: string } | null }
const tokens: Record<string, string> = { 'token-ada': 'u1', 'token-grace': 'u2' }

await app.register(fastifyContext, { enrich, user: (request) => (request as Authed).user?.id })
app.decorateRequest('user', null)
// Authentication runs after the context is set; the user is read when a line is logged.
app.addHook('preHandler', async (request) => {
  const userId = tokens[request.headers.authorization?.replace(/^Bearer /, '') ?? '']
  if (userId !== undefined) (request as Authed).user = { id: userId }
})
app.get('/users/:id/orders', async (request) => {
  request.log.info({ orderCount: 2 }, 'listing orders')
  await sleep(5)
  return [{ id: 1 }, { id: 2 }]
})
app.post('/orders', async (request, reply) => {
  request.log.info({ items: (request.body as { items: string[] }).items.length }, 'placing order')
  await sleep(5)
  // The application logger: the context tells which request this is.
  app.log.info('order placed')
  return reply.code(201).send({ ok: true })
})

const base = await app.listen({ port: 0, host: '127.0.0.1' })
const calls: Array<[string, RequestInit]> = [
  ['/users/u1/orders', { headers: { authorization: 'Bearer token-ada', 'x-request-id': 'edge-4711' } }],
  [
    '/orders',
    {
      method: 'POST',
      headers: { authorization: 'Bearer token-grace', 'content-type': 'application/json' },
      body: JSON.stringify({ items: ['book', 'pen'] }),
    },
  ],
  // A forged id is replaced by a generated one.
  ['/users/u1/orders', { headers: { authorization: 'Bearer token-ada', 'x-request-id': '"},"level":60' } }],
]
for (const res of await Promise.all(calls.map(([path, init]) => fetch(base + path, init)))) {
  await res.arrayBuffer()
  app.log.info({ status: res.status, id: res.headers.get('x-request-id') }, 'client got a response')
}

// Shutdown in order: the app stops taking requests, the lines still waiting
// for a lookup are written, and only then does the user service go away (closed
// first, its in-flight lookups would fail and the lines record an error).
await app.close()
await enrich.flush()
await enrich.close()
userService.closeAllConnections()
userService.close()
