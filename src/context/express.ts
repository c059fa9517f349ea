import type { NextFunction, Request, RequestHandler, Response } from 'express'
import { assertOwnContext, type ContextHelpers, type RequestContext } from './als.js'
import { existingRequestId, type RequestIdOptions, requestIdOf, resolveRequestIdOptions } from './request-id.js'
import { createRequestStore, pathOf, resolveStoreOptions } from './request-store.js'

export { genReqId, isWellFormedRequestId, REQUEST_ID_DEFAULTS, type RequestIdOptions } from './request-id.js'

/** What the integrations need of a pipeline: its request context helpers. */
export interface ContextSource {
  /** The pipeline's request context helpers (`enrich.context`). */
  readonly context: ContextHelpers<RequestContext>
}

/** Options of {@link expressContext}. */
export interface ExpressContextOptions extends RequestIdOptions {
  /**
   * The user id of a request, for `ctx.context.userId`. Called when a line is
   * logged (until it returns an id, which is then kept), so it sees what
   * authentication middleware placed after `expressContext` set, e.g.
   * `(req) => req.user?.id`. A throw counts as no user. Default: none.
   */
  user?: (req: Request) => string | undefined
  /**
   * Echo the request id in the response header named by `requestIdHeader`, so
   * a client or support ticket can quote it. The id is either generated or
   * passed {@link isWellFormedRequestId}, so it is safe to echo. Default `true`.
   */
  setResponseHeader?: boolean
}

/**
 * Express middleware (Express 4.18+ and 5) that runs each request in its own
 * request context, so every line logged while handling it, across `await`s,
 * timers and body parsers, carries `ctx.context`:
 *
 * - `requestId`: an id already set on `req.id` by earlier middleware (such as
 *   pino-http) when well formed; else the `requestIdHeader` value when
 *   `trustRequestId` is set and it is well formed; else `generateId(req)`. The
 *   id is set on `req.id`, so pino-http placed after this middleware reuses it:
 *   one id per request.
 * - `method`: the HTTP method.
 * - `route`: the route template (`/users/:id`, the mount path of a router
 *   included, `req.baseUrl + req.route.path`) once the router has matched;
 *   the request path without its query before that and for unmatched requests.
 *   Read when a line is logged. A router mounted on a path with parameters
 *   contributes its matched path, as `req.baseUrl` holds it.
 * - `userId`: `user(req)`, read when a line is logged until it returns an id.
 *
 * Register it first, before body parsers, authentication and pino-http:
 * `app.use(expressContext(enrich, { user: (req) => req.user?.id }))`.
 *
 * @throws TypeError for bad options, quoting the value
 */
export function expressContext(enrich: ContextSource, options: ExpressContextOptions = {}): RequestHandler {
  if (typeof enrich?.context?.run !== 'function') {
    throw new TypeError(`expressContext expects a pipeline (createPipeline()), received ${String(enrich)}`)
  }
  assertOwnContext(enrich.context, 'expressContext')
  const ids = resolveRequestIdOptions(options)
  const { user, echo } = resolveStoreOptions(options, 'expressContext')
  const context = enrich.context

  return function pinoEnrichContext(req: Request, res: Response, next: NextFunction): void {
    let requestId = existingRequestId(req)
    if (requestId === undefined) {
      requestId = requestIdOf(req, ids)
      ;(req as { id?: unknown }).id = requestId
    }
    if (echo) res.setHeader(ids.header, requestId)
    const store = createRequestStore(requestId, req.method, routeOf(req), req, user)
    // run(), not enterWith(): the context ends with this request's own chain of
    // work and never leaks into the server's connection handling.
    context.run(store, next)
  }
}

/**
 * A reader of a request's route: the template once Express has matched one,
 * computed again only when the matched route or the mount path changes; the
 * path before that.
 */
function routeOf(req: Request): () => string | undefined {
  let seen: unknown
  let seenBase: string | undefined
  let template: string | undefined
  let path: string | undefined
  let pathRead = false
  return () => {
    const route = req.route as { path?: unknown } | undefined | null
    if (route === undefined || route === null) {
      if (!pathRead) {
        pathRead = true
        path = pathOf(req.originalUrl ?? req.url)
      }
      return path
    }
    const base = typeof req.baseUrl === 'string' ? req.baseUrl : ''
    if (route !== seen || base !== seenBase) {
      seen = route
      seenBase = base
      template = joinRoute(base, route.path)
    }
    return template
  }
}

function joinRoute(base: string, path: unknown): string {
  // Express 5 accepts a string, an array of them, or a RegExp as a route path.
  const p = typeof path === 'string' ? path : Array.isArray(path) ? path.map(String).join(',') : String(path)
  if (base === '') return p
  if (p === '/' || p === '') return base
  return base + p
}
