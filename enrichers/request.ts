import { type ContextFieldsEnricher, defineContextFields, type EnricherFn, type RequestContext } from '../src/index.js'

/** Options of {@link requestEnricher}. */
export interface RequestEnricherOptions {
  /** Enricher name, for stats and problem records. Default `'request'`. */
  name?: string
  /**
   * Output key of each request-context key, merged over {@link REQUEST_KEYS};
   * `false` leaves a key out. Add context keys of your own here
   * (`{ tenantId: 'tenantId' }`). Only string, number and boolean values are
   * copied. Default: {@link REQUEST_KEYS} as they are.
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
 * The request context as flat fields on every line: `reqId`, `reqMethod`,
 * `reqRoute`, `userId` (see {@link REQUEST_KEYS}; rename or drop with `keys`).
 * Declarative ({@link defineContextFields}), so the pipeline writes the fields
 * straight into each line. Lines outside a request get none.
 *
 * @throws TypeError for an empty or reserved output key
 */
export function requestEnricher(options: RequestEnricherOptions = {}): ContextFieldsEnricher {
  return defineContextFields({ name: options.name ?? 'request', keys: { ...REQUEST_KEYS, ...options.keys } })
}
