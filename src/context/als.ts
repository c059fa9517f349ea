import { AsyncLocalStorage } from 'node:async_hooks'

/** The request context of a line: what `ctx.context` holds. */
export interface RequestContext {
  /** The request's id: generated, or a well-formed trusted incoming header (Express), or Fastify's `request.id`. */
  requestId?: string
  /** The HTTP method, `GET`, `POST`, ... */
  method?: string
  /** The route template (`/users/:id`) once the router has matched. Read when a line is logged. */
  route?: string
  /** The user id, from the integration's `user(req)` option, read when a line is logged. Default: none. */
  userId?: string
  [key: string]: unknown
}

/** AsyncLocalStorage helpers of one pipeline. */
export interface ContextHelpers<C = RequestContext> {
  /** Runs `fn` with `store` as the context of everything it logs, across awaits and timers. */
  run<R>(store: C, fn: () => R): R
  /** The context active now, if any. */
  get(): C | undefined
  /** The underlying AsyncLocalStorage, for integrations. */
  readonly storage: AsyncLocalStorage<C>
}

/** Creates context helpers on a new AsyncLocalStorage. */
export function createContext<C = RequestContext>(): ContextHelpers<C> {
  const storage = new AsyncLocalStorage<C>()
  return {
    run: (store, fn) => storage.run(store, fn),
    get: () => storage.getStore(),
    storage,
  }
}
