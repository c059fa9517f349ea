import type { FastifyPluginCallback, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import fp from 'fastify-plugin'
import { assertOwnContext, type ContextHelpers, type RequestContext } from './als.js'
import { REQUEST_ID_DEFAULTS, resolveRequestIdOptions } from './request-id.js'
import { createRequestStore, pathOf, resolveStoreOptions } from './request-store.js'

export { genReqId, isWellFormedRequestId, REQUEST_ID_DEFAULTS, type RequestIdOptions } from './request-id.js'

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * pino-enrich's request context of this request (what `ctx.context`
     * holds), set in `onRequest`; `null` before. Assigning `userId` or
     * `route` on it overrides what the plugin reads.
     */
    enrichContext: RequestContext | null
  }
}

/** Options of {@link fastifyContext}. */
export interface FastifyContextOptions {
  /** The pipeline whose request context the plugin sets (`createPipeline()`). Required. */
  enrich: { readonly context: ContextHelpers<RequestContext> }
  /**
   * The user id of a request, for `ctx.context.userId`. Called when a line is
   * logged (until it returns an id, which is then kept), so it sees what
   * authentication hooks that run later set, e.g. `(request) => request.user?.id`.
   * A throw counts as no user. Default: none.
   */
  user?: (request: FastifyRequest) => string | undefined
  /** The response header the id is echoed in. Default `'x-request-id'`. */
  requestIdHeader?: string
  /** Echo `request.id` in `requestIdHeader` on the response. Default `true`. */
  setResponseHeader?: boolean
}

const plugin: FastifyPluginCallback<FastifyContextOptions> = (fastify, options, done) => {
  // A callback plugin reports a bad option through done(): a throw here would escape avvio.
  let settings: Settings
  try {
    settings = settingsOf(options)
  } catch (e) {
    done(e as Error)
    return
  }
  const { context, header, user, echo } = settings

  // Fastify's guidance: decorate with null (not an object every request would
  // share) and assign per request, so requests keep one shape.
  fastify.decorateRequest('enrichContext', null)

  fastify.addHook('onRequest', (request: FastifyRequest, reply: FastifyReply, next: HookHandlerDoneFunction) => {
    // Fastify has routed before onRequest: the template is known now.
    const route = request.routeOptions?.url ?? pathOf(request.url)
    const store = createRequestStore(String(request.id), request.method, route, request, user)
    request.enrichContext = store
    if (echo) reply.header(header, store.requestId)
    // run(), not enterWith(): enterWith would leak the store into the rest of
    // the server's synchronous work (the next pipelined request on the socket).
    context.run(store, next)
  })

  // Work resumed from the request stream's events or a pooled connection's
  // callback (a body parser on older Fastify versions, a hook that waits on a
  // client library) runs in that emitter's async context, not ours: enter the
  // request's context again after parsing, for validation, preHandler hooks and
  // the handler (the pattern of @fastify/request-context). Free when still in it.
  fastify.addHook('preValidation', (request: FastifyRequest, _reply: FastifyReply, next: HookHandlerDoneFunction) => {
    reenter(context, request, next)
  })
  // onResponse runs from the response's 'finish' event, in the context of
  // whatever sent the reply: enter again so later onResponse hooks and
  // Fastify's own "request completed" line carry the context.
  fastify.addHook('onResponse', (request: FastifyRequest, _reply: FastifyReply, next: HookHandlerDoneFunction) => {
    reenter(context, request, next)
  })

  done()
}

interface Settings {
  context: ContextHelpers<RequestContext>
  header: string
  user: ((request: FastifyRequest) => unknown) | undefined
  echo: boolean
}

function settingsOf(options: FastifyContextOptions | undefined): Settings {
  const enrich = options?.enrich
  if (options === undefined || typeof enrich?.context?.run !== 'function') {
    throw new TypeError(`fastifyContext expects { enrich: createPipeline() }, received enrich: ${String(enrich)}`)
  }
  assertOwnContext(enrich.context, 'fastifyContext')
  const { header } = resolveRequestIdOptions({
    requestIdHeader: options.requestIdHeader ?? REQUEST_ID_DEFAULTS.requestIdHeader,
  })
  const { user, echo } = resolveStoreOptions(options, 'fastifyContext')
  return { context: enrich.context, header, user, echo }
}

function reenter(
  context: ContextHelpers<RequestContext>,
  request: FastifyRequest,
  next: HookHandlerDoneFunction,
): void {
  const store = request.enrichContext
  if (store === null || context.get() === store) next()
  else context.run(store, next)
}

/**
 * Fastify plugin (Fastify 4.10+ and 5, made with fastify-plugin so it applies
 * to the whole app) that runs each request in its own request context, from
 * `onRequest` on, so every line logged while handling it carries `ctx.context`:
 * `requestId` is `request.id` (one id per request: Fastify's own `reqId`
 * binding and ours agree), `method`, `route` (`request.routeOptions.url`, the
 * template such as `/users/:id`; the path for unmatched requests) and `userId`
 * from `user(request)`. The context survives body parsing and `await`s.
 *
 * ```ts
 * const app = Fastify({ loggerInstance: pino(enrich.pinoOptions()), genReqId: genReqId() })
 * await app.register(fastifyContext, { enrich, user: (request) => request.user?.id })
 * ```
 *
 * Trust of an incoming id is Fastify's: its `requestIdHeader` option uses the
 * header unchecked, so prefer leaving it unset and passing
 * `genReqId({ trustRequestId: true })` as Fastify's `genReqId`, which keeps only a
 * well-formed header value. Register the plugin before your own hooks; Fastify's
 * "incoming request" line is written before any hook runs, so it carries
 * Fastify's `reqId` but not the context.
 *
 * @throws TypeError at registration for bad options, quoting the value
 */
export const fastifyContext = fp(plugin, { fastify: '>=4.10', name: 'pino-enrich-context' })

export default fastifyContext
