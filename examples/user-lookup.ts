// A keyed lookup: each line logged for a user carries that user's profile,
// fetched from a user service by ctx.context.userId, behind its own cache,
// timeout and circuit breaker. The service here is a local one that is fast
// for some users, slow, failing or garbled for others; the lines are written
// on time whatever it does, with the problem recorded under "enrich".
// Run: npx tsx examples/user-lookup.ts
//
// In an application the imports are 'pino-enrich' and 'pino-enrich/enrichers'.
import { randomUUID } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { pathToFileURL } from 'node:url'
import pino from 'pino'
import { requestEnricher } from '../enrichers/index.js'
import {
  type BreakerOptions,
  createPipeline,
  defineEnricher,
  type Enricher,
  type EnricherCacheOptions,
} from '../src/index.js'

/** Options of {@link userEnricher}. */
export interface UserEnricherOptions {
  /** Deadline of one lookup, in ms. Default 50. */
  timeoutMs?: number
  /** Cache tiers. Default: fresh 5 min, failures remembered 10 s, 10 000 users. */
  cache?: EnricherCacheOptions
  /** Breaker. Default: opens after 5 failures in a row, probes after 10 s. */
  breaker?: BreakerOptions | false
  /** Largest answer read, in bytes. Default 16 384. */
  maxBodyBytes?: number
}

/** A failure of the user service, with a code for stats and events (never the URL). */
export class UserServiceError extends Error {
  readonly code: string
  constructor(code: string) {
    super(`user service: ${code}`)
    this.name = 'UserServiceError'
    this.code = code
  }
}

/**
 * `user: { id, name, plan }` from `GET <baseUrl>/users/<id>`, keyed by the
 * request context's `userId`. A 404 is "no such user": cached like a value,
 * so an unknown id is not asked for again on every line.
 */
export function userEnricher(baseUrl: string, options: UserEnricherOptions = {}): Enricher<string> {
  const maxBodyBytes = options.maxBodyBytes ?? 16_384
  return defineEnricher<string>({
    name: 'user',
    // Lines outside a request, or with no user, skip the lookup.
    key: (ctx) => {
      const id = ctx.context?.userId
      return typeof id === 'string' && id.length > 0 ? id : undefined
    },
    compute: async (userId, _ctx, { signal }) => {
      const res = await fetch(`${baseUrl}/users/${encodeURIComponent(userId)}`, {
        signal,
        headers: { accept: 'application/json' },
      })
      if (res.status === 404) {
        await res.body?.cancel()
        return undefined
      }
      if (!res.ok) {
        await res.body?.cancel()
        throw new UserServiceError(`HTTP_${res.status}`)
      }
      const body = await readJson(res, maxBodyBytes)
      const name = typeof body.name === 'string' ? body.name : undefined
      const plan = typeof body.plan === 'string' ? body.plan : undefined
      return { user: { id: userId, name, plan } }
    },
    timeoutMs: options.timeoutMs ?? 50,
    cache: options.cache ?? { ttlMs: 300_000, retryMs: 10_000, max: 10_000 },
    breaker: options.breaker ?? { failureThreshold: 5, halfOpenAfterMs: 10_000 },
  })
}

/** Reads a JSON object, refusing a body past `max` bytes without reading the rest. */
async function readJson(res: Response, max: number): Promise<Record<string, unknown>> {
  if (Number(res.headers.get('content-length')) > max) {
    await res.body?.cancel()
    throw new UserServiceError('TOO_LARGE')
  }
  const chunks: Uint8Array[] = []
  let size = 0
  for await (const chunk of res.body ?? []) {
    size += chunk.byteLength
    if (size > max) throw new UserServiceError('TOO_LARGE')
    chunks.push(chunk)
  }
  let v: unknown
  try {
    v = JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    throw new UserServiceError('INVALID_JSON')
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new UserServiceError('INVALID_JSON')
  return v as Record<string, unknown>
}

/** A local user service: fast for u1 and u2, slow for "slow", 500 for "broken", garbled for "garbled"; `/health` is not counted. */
export async function startUserService(): Promise<{ url: string; requests: () => number; close(): Promise<void> }> {
  const users: Record<string, { name: string; plan: string }> = {
    u1: { name: 'Ada', plan: 'pro' },
    u2: { name: 'Grace', plan: 'free' },
    slow: { name: 'Sloth', plan: 'free' },
  }
  let requests = 0
  const timers = new Set<NodeJS.Timeout>()
  const server = http.createServer((req, res) => {
    if (req.url === '/health') return void res.end('ok')
    requests++
    const id = decodeURIComponent(req.url?.slice('/users/'.length) ?? '')
    const answer = (): void => {
      if (id === 'broken') return void res.writeHead(500).end('internal error')
      if (id === 'garbled') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"name": "Ga')
      const user = users[id]
      res.writeHead(user === undefined ? 404 : 200, { 'content-type': 'application/json' })
      res.end(JSON.stringify(user ?? null))
    }
    if (id !== 'slow') return answer()
    const t = setTimeout(() => {
      timers.delete(t)
      if (!res.destroyed) answer()
    }, 2_000)
    timers.add(t)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests: () => requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t)
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

async function main(): Promise<void> {
  const service = await startUserService()
  // Node loads fetch's HTTP client on its first call (100 ms or more on a busy
  // machine), which a service that has been running paid long ago: pay it
  // here, so the lookups take what they take in one.
  await (await fetch(`${service.url}/health`)).arrayBuffer()
  // Timings with room for a busy machine: a lookup may take 500 ms (the slow
  // user's 2 s is past it), a line waits for its user at most 1 s.
  const enrich = createPipeline({
    deadlineMs: 1_000,
    enrichers: [requestEnricher(), userEnricher(service.url, { timeoutMs: 500 })],
  })
  // Deferred: a line waits for its user at most deadlineMs, then is written with what is ready.
  const logger = pino(enrich.pinoOptions({ mode: 'deferred' }))
  const handle = (userId: string): void =>
    enrich.context.run({ requestId: randomUUID(), method: 'GET', route: '/orders/:id', userId }, () =>
      logger.info('order viewed'),
    )
  for (const round of [1, 2]) {
    for (const userId of ['u1', 'u2', 'slow', 'broken', 'garbled', 'nobody', 'u1']) handle(userId)
    await enrich.flush()
    logger.info({ round, userServiceRequests: service.requests() }, 'round done')
    await enrich.flush()
  }
  const user = enrich.stats().enrichers.find((e) => e.name === 'user')
  logger.info(
    {
      hitRate: user?.cache?.hitRate,
      computes: user?.cache?.computes,
      errors: user?.errors,
      timeouts: user?.timeouts,
      breaker: user?.breaker,
    },
    'user lookup stats',
  )
  await enrich.close()
  await service.close()
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main()
}
