export type { BreakerChange, BreakerOptions } from './breaker/circuit-breaker.js'
export { BreakerState, CircuitBreaker, Permit } from './breaker/circuit-breaker.js'
export type {
  Compute,
  ComputeContext,
  ComputeOptions,
  PeekResult,
  SetOptions,
  SmartCacheOptions,
  SmartCacheStats,
} from './cache/smart-cache.js'
export { EntryState, SmartCache } from './cache/smart-cache.js'
export type { Clock } from './clock.js'
export { systemClock } from './clock.js'
export type { ErrorCode } from './errors.js'
export {
  BreakerOpenError,
  CachedError,
  ClosedError,
  EnrichError,
  ErrorCodes,
  InflightLimitError,
  isEnrichError,
  TimeoutError,
} from './errors.js'
export type { Disposer, EventSource } from './events.js'
