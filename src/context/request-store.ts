import type { RequestContext } from './als.js'
import { lineNow } from './line-scope.js'

/** Where a request store reads what is only known later in the request. */
export interface RequestStoreSources {
  requestId: string
  method: string
  /** Read each time `route` is; the integration caches what it can. */
  route: () => string | undefined
  /** The user's `user(req)`, bound to the request; undefined when not configured. */
  user: (() => unknown) | undefined
}

/**
 * The store a request runs with: `requestId` and `method` are plain values;
 * `route` and `userId` are accessors read when a line is logged, because the
 * store is created before routing and authentication have happened. `userId`
 * is remembered once `user(req)` returns one; until then `user(req)` is called
 * at most once per line, however many enrichers read `userId` (a key function
 * and the request fields, say).
 * Both accept assignment, which overrides the source from then on
 * (`enrich.context.get().userId = id`).
 *
 * The accessors are own enumerable properties of a plain object, so spreading,
 * `JSON.stringify` and structured cloning (the transport) see their values.
 * The request object itself is never reachable from the store.
 */
export function createRequestStore(src: RequestStoreSources): RequestContext {
  const { route, user } = src
  let routeSet = false
  let routeValue: string | undefined
  let userSet = false
  let userValue: string | undefined
  let userLine = 0
  const store = {
    requestId: src.requestId,
    method: src.method,
    get route(): string | undefined {
      return routeSet ? routeValue : route()
    },
    set route(value: string | undefined) {
      routeSet = true
      routeValue = value
    },
    get userId(): string | undefined {
      if (userValue !== undefined || userSet || user === undefined) return userValue
      // Outside a line (the application reading the store) it is asked every time.
      const line = lineNow()
      if (line === 0 || line !== userLine) {
        userLine = line
        userValue = userIdOf(user)
      }
      return userValue
    },
    set userId(value: string | undefined) {
      userSet = true
      userValue = value
    },
  }
  // exactOptionalPropertyTypes: an accessor reads as `string | undefined`, the interface says optional `string`.
  return store as RequestContext
}

/** `user(req)` as a string id, or undefined; it must never throw into a log call. */
function userIdOf(user: () => unknown): string | undefined {
  let v: unknown
  try {
    v = user()
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
