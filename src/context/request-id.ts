import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'

/** How a request gets its id. Shared by `expressContext`, `fastifyContext` and {@link genReqId}. */
export interface RequestIdOptions {
  /**
   * The header an incoming id is read from (when `trustRequestId` is set) and
   * echoed in (when the integration sets response headers). Case-insensitive.
   * Default `'x-request-id'`.
   */
  requestIdHeader?: string
  /**
   * Use the incoming header's value as the request id, when it is well formed
   * (see {@link isWellFormedRequestId}). Anything else gets a generated id. Only
   * set this behind a proxy or gateway that sets or scrubs the header.
   * Default `false`: every request gets a generated id.
   */
  trustRequestId?: boolean
  /** Makes an id when none is trusted. Its result is used as is. Default `crypto.randomUUID()`. */
  generateId?: (req: IncomingMessage) => string
}

/** Defaults of {@link RequestIdOptions}. */
export const REQUEST_ID_DEFAULTS = {
  requestIdHeader: 'x-request-id',
  trustRequestId: false,
  /** Longest incoming id kept, in characters. */
  maxRequestIdLength: 128,
} as const

// Bounded and free of anything that could break out of a header, a JSON string or a cache key.
const WELL_FORMED = /^[A-Za-z0-9._:-]{1,128}$/
// RFC 9110 token.
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

/**
 * True for an id that may be carried as received: 1 to 128 characters of
 * `A-Z a-z 0-9 . _ : -`. A UUID, a ULID, a W3C trace id or `req-1` pass; a 10 KB
 * value, control characters, spaces, quotes or a JSON fragment do not.
 */
export function isWellFormedRequestId(value: unknown): value is string {
  return typeof value === 'string' && WELL_FORMED.test(value)
}

/** Validated request-id settings, merged once. */
export interface ResolvedRequestIdOptions {
  header: string
  trust: boolean
  generate: (req: IncomingMessage) => string
}

/**
 * Merges and checks request-id options.
 *
 * @throws TypeError for a header name that is not an HTTP token, a non-boolean
 *   `trustRequestId` or a non-function `generateId`, quoting the value
 */
export function resolveRequestIdOptions(options: RequestIdOptions = {}): ResolvedRequestIdOptions {
  const header = options.requestIdHeader ?? REQUEST_ID_DEFAULTS.requestIdHeader
  if (typeof header !== 'string' || !HEADER_NAME.test(header)) {
    throw new TypeError(`requestIdHeader must be an HTTP header name, received ${JSON.stringify(header)}`)
  }
  const trust = options.trustRequestId ?? REQUEST_ID_DEFAULTS.trustRequestId
  if (typeof trust !== 'boolean') {
    throw new TypeError(`trustRequestId must be a boolean, received ${JSON.stringify(trust)}`)
  }
  const generate = options.generateId ?? (() => randomUUID())
  if (typeof generate !== 'function') {
    throw new TypeError(`generateId must be a function, received ${typeof generate}`)
  }
  return { header: header.toLowerCase(), trust, generate }
}

/**
 * The id of a request: the incoming header's value when trusted and well
 * formed, else a generated one. A repeated header (an array, or values Node
 * joined with `, `) is not well formed.
 */
export function requestIdOf(req: IncomingMessage, o: ResolvedRequestIdOptions): string {
  if (o.trust) {
    const incoming = req.headers[o.header]
    if (isWellFormedRequestId(incoming)) return incoming
  }
  return o.generate(req)
}

/**
 * An id an earlier middleware already gave the request (`req.id`, as pino-http
 * sets it), when it is well formed; a safe integer counts (pino-http's default
 * counter).
 */
export function existingRequestId(req: object): string | undefined {
  const id = (req as { id?: unknown }).id
  if (typeof id === 'number' && Number.isSafeInteger(id)) return String(id)
  return isWellFormedRequestId(id) ? id : undefined
}

/**
 * A request-id generator with the same rules as `expressContext`, for
 * frameworks and middleware that make their own id, so a request has one id:
 *
 * - pino-http placed before `expressContext`: `pinoHttp({ logger, genReqId: genReqId({ trustRequestId: true }) })`;
 *   an `req.id` already set (by `expressContext` placed first) is kept.
 * - Fastify: `Fastify({ genReqId: genReqId({ trustRequestId: true }) })`, leaving
 *   Fastify's own `requestIdHeader` unset (it uses the header unchecked).
 *
 * It reads headers only; it never sets a response header.
 *
 * @throws TypeError for bad options (see {@link RequestIdOptions})
 */
export function genReqId(options: RequestIdOptions = {}): (req: IncomingMessage, res?: unknown) => string {
  const o = resolveRequestIdOptions(options)
  return (req) => existingRequestId(req) ?? requestIdOf(req, o)
}
