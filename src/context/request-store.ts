import type { RequestContext } from './als.js'
import { lineNow } from './line-scope.js'

/**
 * The store a request runs with: `requestId` and `method` are plain values;
 * `route` and `userId` are accessors read when a line is logged, because the
 * store is created before routing and authentication have happened. `route`
 * is the `route` given, or what it returns when it is a function (called on
 * each read: the integration caches what it can). `userId` is
 * `user(req)`, remembered once it returns one; until then `user(req)` is
 * called at most once per line, however many enrichers read `userId` (a key
 * function and the request fields, say).
 * Both accept assignment, which overrides the source from then on
 * (`enrich.context.get().userId = id`).
 *
 * The accessors are own enumerable properties, so spreading,
 * `JSON.stringify` and structured cloning (the transport) see their values.
 * The request object itself is never reachable from the store.
 */
export function createRequestStore<R>(
  requestId: string,
  method: string,
  route: string | undefined | (() => string | undefined),
  req: R,
  user: ((req: R) => unknown) | undefined,
): RequestContext {
  // exactOptionalPropertyTypes: an accessor reads as `string | undefined`, the interface says optional `string`.
  return new RequestStore(requestId, method, route, req, user) as unknown as RequestContext
}

/**
 * Whether `v` is a store {@link createRequestStore} made: a deferred line
 * copies it at the call as it copies a plain object, its accessors read then.
 */
export function isRequestStore(v: object): boolean {
  return RequestStore.is(v)
}

let routeAccessor: PropertyDescriptor
let userIdAccessor: PropertyDescriptor

/**
 * One class, its state in private fields and its two accessors shared by
 * every store: an object literal with `get`/`set` makes four closures and
 * new accessor pairs per request, which V8 builds about 3x slower
 * (measured 5.2 vs 1.6 us a store on the 2-core bench machine).
 */
class RequestStore<R> {
  requestId: string
  method: string
  #route: (() => string | undefined) | undefined
  #routeSet = false
  #routeValue: string | undefined
  readonly #req: R
  readonly #user: ((req: R) => unknown) | undefined
  #userSet = false
  #userValue: string | undefined
  #userLine = 0
  /** While `user(req)` runs: a line it logs reads the id as it is, rather than asking it again. */
  #userAsking = false

  constructor(
    requestId: string,
    method: string,
    route: string | undefined | (() => string | undefined),
    req: R,
    user: ((req: R) => unknown) | undefined,
  ) {
    this.requestId = requestId
    this.method = method
    if (typeof route === 'function') this.#route = route
    else {
      this.#routeSet = true
      this.#routeValue = route
    }
    this.#req = req
    this.#user = user
    Object.defineProperty(this, 'route', routeAccessor)
    Object.defineProperty(this, 'userId', userIdAccessor)
  }

  /**
   * The store an accessor was read on: `o` itself, or for an object made
   * with `Object.create(store)` the store it inherits from (a few levels at
   * most). Undefined for one that leads to none (the accessors copied with
   * `Object.getOwnPropertyDescriptors`), or whose prototype cannot be read.
   */
  static #of(o: object): RequestStore<unknown> | undefined {
    if (#routeSet in o) return o as RequestStore<unknown>
    let p: unknown = o
    try {
      for (let i = 0; i < MAX_DERIVED_DEPTH; i++) {
        p = Object.getPrototypeOf(p)
        if (typeof p !== 'object' || p === null) return undefined
        if (#routeSet in p) return p as RequestStore<unknown>
      }
    } catch {
      // A Proxy's getPrototypeOf trap threw: no store to read.
    }
    return undefined
  }

  /** Whether `o` is a store itself (not one made from it). */
  static is(o: object): boolean {
    return #routeSet in o
  }

  static {
    routeAccessor = {
      get(this: object): string | undefined {
        const s = RequestStore.#of(this)
        if (s === undefined) return undefined
        return s.#routeSet ? s.#routeValue : (s.#route as () => string | undefined)()
      },
      set(this: object, value: string | undefined) {
        const s = RequestStore.#of(this)
        if (s === undefined) return ownValue(this, 'route', value)
        s.#routeSet = true
        s.#routeValue = value
      },
      enumerable: true,
      configurable: true,
    }
    userIdAccessor = {
      get(this: object): string | undefined {
        const s = RequestStore.#of(this)
        if (s === undefined) return undefined
        const user = s.#user
        if (s.#userValue !== undefined || s.#userSet || user === undefined || s.#userAsking) {
          return s.#userValue
        }
        // Outside a line (the application reading the store) it is asked every time.
        const line = lineNow()
        if (line === 0 || line !== s.#userLine) {
          s.#userLine = line
          s.#userAsking = true
          try {
            s.#userValue = userIdOf(user, s.#req)
          } finally {
            s.#userAsking = false
          }
        }
        return s.#userValue
      },
      set(this: object, value: string | undefined) {
        const s = RequestStore.#of(this)
        if (s === undefined) return ownValue(this, 'userId', value)
        s.#userSet = true
        s.#userValue = value
      },
      enumerable: true,
      configurable: true,
    }
  }
}

/** Prototypes an accessor looks through for the store an object was made from with `Object.create`. */
const MAX_DERIVED_DEPTH = 16

/** An assignment to an accessor of an object that leads to no store: kept as the object's own value. */
function ownValue(o: object, key: string, value: unknown): void {
  Object.defineProperty(o, key, { value, writable: true, enumerable: true, configurable: true })
}

/** `user(req)` as a string id, or undefined; it must never throw into a log call. */
function userIdOf<R>(user: (req: R) => unknown, req: R): string | undefined {
  let v: unknown
  try {
    v = user(req)
  } catch {
    return undefined
  }
  if (typeof v === 'string') return v.length === 0 ? undefined : v
  if ((typeof v === 'number' && Number.isFinite(v)) || typeof v === 'bigint') return String(v)
  return undefined
}

/** Code of the warning emitted when `user(req)` returns a Promise. */
export const ASYNC_USER_WARNING = 'PINO_ENRICH_ASYNC_USER'
let asyncUserWarned = false

/**
 * `user` as the store calls it. A log call cannot wait: the first Promise
 * `user(req)` returns (its rejection handled) turns it off for the
 * integration, with one process warning that says so, rather than a `userId`
 * that is silently never there.
 */
function refusingAsync<R>(user: (req: R) => unknown, integration: string): (req: R) => unknown {
  let refused = false
  return (req) => {
    if (refused) return undefined
    const v = user(req)
    if (
      (typeof v === 'object' || typeof v === 'function') &&
      v !== null &&
      typeof (v as { then?: unknown }).then === 'function'
    ) {
      refused = true
      Promise.resolve(v).catch(() => {})
      if (!asyncUserWarned) {
        asyncUserWarned = true
        process.emitWarning(
          `${integration}: user(req) returned a Promise; it must return the id synchronously, ` +
            'e.g. (req) => req.user?.id once authentication has set it. user() is no longer called and lines carry no userId.',
          { type: 'TypeError', code: ASYNC_USER_WARNING },
        )
      }
      return undefined
    }
    return v
  }
}

/** The path of a request URL: no query, no fragment. */
export function pathOf(url: string | undefined): string | undefined {
  if (url === undefined) return undefined
  const end = url.search(/[?#]/)
  return end === -1 ? url : url.slice(0, end)
}

/**
 * The `user` and `setResponseHeader` options both integrations take, checked.
 * `user` comes back wrapped so that a Promise from it is refused (see
 * `refusingAsync`).
 * @throws TypeError for a `user` that is not a function or a `setResponseHeader` that is not a boolean
 */
export function resolveStoreOptions<R>(
  options: { user?: (req: R) => string | undefined; setResponseHeader?: boolean },
  integration: string,
): {
  user: ((req: R) => unknown) | undefined
  echo: boolean
} {
  const user = options.user
  if (user !== undefined && typeof user !== 'function') {
    throw new TypeError(`user must be a function, received ${typeof user}`)
  }
  const echo = options.setResponseHeader ?? true
  if (typeof echo !== 'boolean') {
    throw new TypeError(`setResponseHeader must be a boolean, received ${JSON.stringify(echo)}`)
  }
  return { user: user === undefined ? undefined : refusingAsync(user, integration), echo }
}
