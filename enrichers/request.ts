import type { EnrichContext, EnricherFn, Fields, RequestContext } from '../src/index.js'

/** Options of {@link requestEnricher}. */
export interface RequestEnricherOptions {
  /** Enricher name, for stats and problem records. Default `'request'`. */
  name?: string
  /**
   * Output key of each request-context key, merged over {@link REQUEST_KEYS};
   * `false` leaves a key out. Add context keys of your own here
   * (`{ tenantId: 'tenantId' }`). Only string, number and boolean values are copied.
   */
  keys?: Readonly<Record<string, string | false>>
}

/**
 * Default output keys, by request-context key. Flat, so that the per-line
 * copy is the pipeline's fast path for flat objects of primitives. `reqId`
 * is the request id key of the pino ecosystem (Fastify's request logger and
 * pino-http's `quietReqLogger`); a nested `req` would collide with the `req`
 * object pino-http writes on its lines.
 */
export const REQUEST_KEYS = {
  requestId: 'reqId',
  method: 'reqMethod',
  route: 'reqRoute',
  userId: 'userId',
} as const

/** A per-record enricher with its name for the pipeline. */
export type NamedEnricherFn<C = RequestContext> = EnricherFn<C> & { enricherName: string }

/**
 * The request context of the line (set by `pino-enrich/express`,
 * `pino-enrich/fastify` or `pipeline.context.run()`) as flat fields: `reqId`,
 * `reqMethod`, `reqRoute`, `userId` by default ({@link REQUEST_KEYS}). A plain
 * per-record enricher: it runs on every line, synchronously, and writes
 * nothing outside a request.
 */
export function requestEnricher(options: RequestEnricherOptions = {}): NamedEnricherFn {
  const mapping: Record<string, string | false> = { ...REQUEST_KEYS, ...options.keys }
  const from: string[] = []
  const to: string[] = []
  for (const [key, out] of Object.entries(mapping)) {
    if (out === false) continue
    if (typeof out !== 'string' || out.length === 0) {
      throw new TypeError(`requestEnricher: keys.${key} must be a non-empty string or false, received ${String(out)}`)
    }
    from.push(key)
    to.push(out)
  }
  const n = from.length
  const fn = (ctx: EnrichContext<RequestContext>): Fields | undefined => {
    const c = ctx.context
    if (c === undefined) return undefined
    let out: Fields | undefined
    for (let i = 0; i < n; i++) {
      const v = c[from[i] as string]
      const t = typeof v
      if (t === 'string' || t === 'number' || t === 'boolean') {
        out ??= {}
        out[to[i] as string] = v
      }
    }
    return out
  }
  return Object.assign(fn, { enricherName: options.name ?? 'request' })
}
