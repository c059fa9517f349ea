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
  StoreStats,
} from './cache/smart-cache.js'
export { EntryState, SmartCache } from './cache/smart-cache.js'
export type { CacheStore, Invalidation, StoreRecord } from './cache/store.js'
export type { Clock } from './clock.js'
export { systemClock } from './clock.js'
export type { ContextHelpers, ContextSource, ContextStorage, RequestContext } from './context/als.js'
export { createContext } from './context/als.js'
export type {
  AnyEnricher,
  ContextFieldsDefinition,
  ContextFieldsEnricher,
  EnrichContext,
  Enricher,
  EnricherCacheOptions,
  EnricherComputeOptions,
  EnricherDefinition,
  EnricherFn,
  Fields,
  LevelLabel,
  SpanIds,
} from './enricher.js'
export { defineContextFields, defineEnricher, isEnricher, LEVELS } from './enricher.js'
export type { ErrorCode } from './errors.js'
export {
  BreakerOpenError,
  CachedError,
  ClosedError,
  EnrichError,
  ErrorCodes,
  InflightLimitError,
  isEnrichError,
  StoreUnavailableError,
  TimeoutError,
} from './errors.js'
export type { Disposer, EventSource } from './events.js'
export type { EnrichPinoOptions } from './pino/options.js'
export { PinoMode } from './pino/options.js'
export type {
  EnricherStats,
  HandleSignalsOptions,
  PipelineEvent,
  PipelineOptions,
  PipelineStats,
  Problems,
  ReadyResult,
} from './pipeline.js'
export {
  createPipeline,
  defaultPipeline,
  Pipeline,
  ProblemKind,
  registerEnricher,
} from './pipeline.js'
