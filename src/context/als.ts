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

/**
 * A request context the application already keeps, for the pipeline to read
 * instead of its own: an AsyncLocalStorage whose store is an object (yours,
 * `@fastify/request-context`'s `asyncLocalStorage`), or a getter returning
 * the current context object (`requestContext.getStore`, `() => cls.get()`).
 * The object's own keys are what `ctx.context` and `requestEnricher()` read.
 */
export type ContextSource = ContextStorage | (() => object | undefined)

/** What the pipeline uses of an AsyncLocalStorage: any AsyncLocalStorage whose store is an object fits. */
export interface ContextStorage {
  getStore(): unknown
  run<R>(store: object, callback: () => R): R
}

/** AsyncLocalStorage helpers of one pipeline. */
export interface ContextHelpers<C = RequestContext> {
  /**
   * Runs `fn` with `store` as the context of everything it logs, across awaits and timers.
   * @throws TypeError when the context is read through a getter of the application's (nothing to run on)
   */
  run<R>(store: C, fn: () => R): R
  /** The context active now, if any. Never throws: a getter that throws reads as no context. */
  get(): C | undefined
  /** The underlying AsyncLocalStorage, for integrations; `undefined` when the context is read through a getter. */
  readonly storage: ContextStorage | undefined
}

/** Helpers over a context the application owns: the integrations, which would replace its store, refuse them. */
const applications = new WeakSet<object>()

/**
 * Creates context helpers: on a new AsyncLocalStorage, or on the
 * application's own context ({@link ContextSource}).
 *
 * @throws TypeError for a `source` that is neither a function nor an object with `getStore()` and `run()`
 */
export function createContext<C extends object = RequestContext>(source?: ContextSource): ContextHelpers<C> {
  if (source === undefined) {
    const storage = new AsyncLocalStorage<C>()
    return { run: (store, fn) => storage.run(store, fn), get: () => storage.getStore(), storage }
  }
  let helpers: ContextHelpers<C>
  if (typeof source === 'function') {
    const read = source as () => unknown
    helpers = {
      run: () => {
        throw new TypeError(
          'context.run() is not available: this pipeline reads the context through the getter given as its `context` option; set the context where that getter reads it',
        )
      },
      get: () => {
        // The getter is the application's code, called on every line: it must not throw into a log call.
        let c: unknown
        try {
          c = read()
        } catch {
          return undefined
        }
        return typeof c === 'object' && c !== null ? (c as C) : undefined
      },
      storage: undefined,
    }
  } else if (
    typeof source === 'object' &&
    source !== null &&
    typeof source.getStore === 'function' &&
    typeof source.run === 'function'
  ) {
    const storage = source
    helpers = {
      run: (store, fn) => storage.run(store, fn),
      get: () => {
        // Any object with getStore and run is taken: its getStore must not throw into a log call either.
        let c: unknown
        try {
          c = storage.getStore()
        } catch {
          return undefined
        }
        return typeof c === 'object' && c !== null ? (c as C) : undefined
      },
      storage,
    }
  } else {
    throw new TypeError(
      `context must be an AsyncLocalStorage or a function returning the current context, received ${describe(source)}`,
    )
  }
  applications.add(helpers)
  return helpers
}

/**
 * For the integrations, which run a store of their own per request: refuses a
 * pipeline reading the application's context, whose store they would replace.
 * @throws TypeError naming the integration
 */
export function assertOwnContext(helpers: object, integration: string): void {
  if (applications.has(helpers)) {
    throw new TypeError(
      `${integration} sets a request context of its own, but this pipeline reads the application's (its \`context\` option): fill that context with requestId, method, route and userId instead`,
    )
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null'
  if (typeof v === 'object') return `an object with keys ${JSON.stringify(Object.keys(v as object))}`
  return `${typeof v} ${String(v)}`
}
