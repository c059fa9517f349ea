/**
 * Every failure kind pino-enrich reports has a stable string code. Codes are
 * never reused: a retired code stays in this table, marked as retired.
 */
export const ErrorCodes = {
  CACHED_ERROR: 'ENRICH_CACHED_ERROR',
  BREAKER_OPEN: 'ENRICH_BREAKER_OPEN',
  TIMEOUT: 'ENRICH_TIMEOUT',
  INFLIGHT_FULL: 'ENRICH_INFLIGHT_FULL',
  CLOSED: 'ENRICH_CLOSED',
  ENRICHER_FAILED: 'ENRICH_ENRICHER_FAILED',
  BAD_RESULT: 'ENRICH_BAD_RESULT',
  TRANSPORT_LOAD: 'ENRICH_TRANSPORT_LOAD',
  STORE_UNAVAILABLE: 'ENRICH_STORE_UNAVAILABLE',
} as const

/** One of the {@link ErrorCodes} values. */
export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes]

// A global symbol, so two copies of the package still recognise each other's errors.
const kBrand = Symbol.for('pino-enrich.error')

/** Base class of every error pino-enrich throws or records. */
export class EnrichError extends Error {
  /** Stable machine-readable code, one of {@link ErrorCodes}. */
  readonly code: ErrorCode
  /** The brand {@link isEnrichError} checks. */
  readonly [kBrand] = true

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.name = new.target.name
  }
}

/**
 * Thrown to callers while a key sits in the error tier and no stale value is
 * left to serve. `.cause` is the original failure.
 */
export class CachedError extends EnrichError {
  /** Epoch ms (by the cache's clock) at which a new compute may be attempted. */
  readonly retryAt: number
  /** The cache key whose compute failed. */
  readonly key: string

  constructor(key: string, cause: unknown, retryAt: number) {
    super(ErrorCodes.CACHED_ERROR, `Cached error for ${key}: ${describe(cause)}`, { cause })
    this.key = key
    this.retryAt = retryAt
  }
}

/** Thrown when the circuit breaker is open and no stale value is left to serve. */
export class BreakerOpenError extends EnrichError {
  /** Epoch ms (by the breaker's clock) after which a probe may run. */
  readonly retryAt: number

  constructor(name: string, retryAt: number) {
    super(ErrorCodes.BREAKER_OPEN, `Circuit breaker open for ${name}`)
    this.retryAt = retryAt
  }
}

/** A compute or an enrichment passed its deadline. */
export class TimeoutError extends EnrichError {
  /** The deadline that passed, in ms. */
  readonly timeoutMs: number

  constructor(what: string, timeoutMs: number) {
    super(ErrorCodes.TIMEOUT, `${what} timed out after ${timeoutMs} ms`)
    this.timeoutMs = timeoutMs
  }
}

/** `maxInflight` computes are already running; the new one was not started. */
export class InflightLimitError extends EnrichError {
  constructor(name: string, maxInflight: number) {
    super(ErrorCodes.INFLIGHT_FULL, `${name}: ${maxInflight} computes already in flight`)
  }
}

/** The cache or pipeline was closed. */
export class ClosedError extends EnrichError {
  constructor(name: string) {
    super(ErrorCodes.CLOSED, `${name} is closed`)
  }
}

/**
 * A shared-tier store refused an operation without trying it: not connected,
 * its breaker open, or closed. A cache treats it as a miss; it never reaches a log call.
 */
export class StoreUnavailableError extends EnrichError {
  constructor(name: string, why: string) {
    super(ErrorCodes.STORE_UNAVAILABLE, `${name} unavailable: ${why}`)
  }
}

/** True for any error created by any copy of pino-enrich. */
export function isEnrichError(e: unknown): e is EnrichError {
  return typeof e === 'object' && e !== null && (e as { [kBrand]?: unknown })[kBrand] === true
}

/**
 * The class name and code of an error, never its message: messages from
 * backends may carry URLs with credentials or tokens.
 */
export function errorKind(e: unknown): string {
  if (isEnrichError(e)) return e.code
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code
    return typeof code === 'string' && /^[A-Z0-9_]{1,64}$/.test(code) ? code : e.name
  }
  return typeof e
}

function describe(e: unknown): string {
  return e instanceof Error ? `${e.name}${isEnrichError(e) ? ` ${e.code}` : ''}` : typeof e
}
