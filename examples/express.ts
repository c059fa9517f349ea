// Request context with Express: every line logged while a request is handled
// carries its id, route template and user, and a user lookup (a cached
// enricher keyed on the context's userId) against a user service.
// Run: npx tsx examples/express.ts
//
// In an application the imports are 'pino-enrich' and 'pino-enrich/express'.
import { once } from 'node:events'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import express from 'express'
import pino from 'pino'
import { expressContext } from '../src/context/express.js'
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
// The request context as fields (the built-in requestEnricher does this with more options).
enrich.register(
  Object.assign(
    ({ context }: EnrichContext<RequestContext>) =>
      context && { reqId: context.requestId, route: context.route, userId: context.userId },
    { enricherName: 'request' },
  ),
)
// One lookup per user per 5 minutes, whatever the number of lines.
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
// Deferred: a line waits (up to deadlineMs) for a user not yet cached, instead of going out without it.
const logger = pino(enrich.pinoOptions({ mode: 'deferred' }))

type AuthedRequest = express.Request & { user?: { id: string } }
const tokens: Record<string, string> = { 'token-ada': 'u1', 'token-grace': 'u2' }

const app = express()
// First, so body parsers, authentication and handlers all run in the request's context.
app.use(expressContext(enrich, { trustRequestId: true, user: (req) => (req as AuthedRequest).user?.id }))
app.use(express.json())
app.use((req: AuthedRequest, _res, next) => {
  const userId = tokens[req.get('authorization')?.replace(/^Bearer /, '') ?? '']
  if (userId !== undefined) req.user = { id: userId }
  next()
})
app.get('/users/:id/orders', async (_req, res) => {
  logger.info({ orderCount: 2 }, 'listing orders')
  await sleep(5)
  res.json([{ id: 1 }, { id: 2 }])
})
app.post('/orders', async (req, res) => {
  logger.info({ items: req.body.items.length }, 'placing order')
  await sleep(5)
  logger.info('order placed')
  res.status(201).json({ ok: true })
})

const server = app.listen(0, '127.0.0.1')
await once(server, 'listening')
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
logger.info('listening')

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
  ['/users/u2/orders', {}],
]
for (const res of await Promise.all(calls.map(([path, init]) => fetch(base + path, init)))) {
  await res.arrayBuffer()
  logger.info({ status: res.status, id: res.headers.get('x-request-id') }, 'client got a response')
}

// Shutdown in order: the app stops taking requests, the lines still waiting
// for a lookup are written, and only then does the user service go away (closed
// first, its in-flight lookups would fail and the lines record an error).
await new Promise<void>((resolve) => server.close(() => resolve()))
await enrich.flush()
await enrich.close()
userService.closeAllConnections()
userService.close()
