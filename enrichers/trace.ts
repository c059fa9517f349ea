import { createRequire } from 'node:module'
import type { EnrichContext, Fields } from '../src/index.js'
import type { NamedEnricherFn } from './request.js'

/** An active span's ids, as `@opentelemetry/api`'s `SpanContext` has them. */
export interface SpanContextLike {
  /** 32 lowercase hex digits; written as `trace_id`. */
  traceId: string
  /** 16 lowercase hex digits; written as `span_id`. */
  spanId: string
  /** W3C trace flags, a byte (1: sampled); written as `trace_flags`, two hex digits. */
  traceFlags: number
}

/** The part of `@opentelemetry/api` the trace enricher uses. */
export interface OtelTraceApi {
  /** `context.active()`: the active context. */
  context: { active(): unknown }
  /** `trace.getSpanContext(context)`: the span context of a context's span, if any. */
  trace: { getSpanContext(context: never): SpanContextLike | undefined }
  /** `isSpanContextValid(spanContext)`: false for malformed or all-zero ids. */
  isSpanContextValid(spanContext: SpanContextLike): boolean
}

/** Options of {@link traceEnricher}. */
export interface TraceEnricherOptions {
  /** Enricher name, for stats and problem records. Default `'trace'`. */
  name?: string
  /**
   * The OpenTelemetry API to read the active span from; `null` for none.
   * Default: `@opentelemetry/api` as installed beside the application, loaded
   * once; when it is not installed the enricher writes nothing.
   */
  api?: OtelTraceApi | null
}

/** Specifier of the optional peer dependency. */
export const OTEL_API = '@opentelemetry/api'

// Every trace_flags byte as two hex digits, built once: no formatting per line.
const FLAGS = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'))

let loaded: { api: OtelTraceApi | undefined } | undefined

/**
 * `trace_id`, `span_id` and `trace_flags` (two hex digits, `'01'` when
 * sampled) of the span active at the log call, as
 * `@opentelemetry/instrumentation-pino` writes them. `@opentelemetry/api` is
 * an optional peer dependency, loaded once, synchronously, when the first
 * trace enricher is created (so the first line already has the ids); without
 * it, or outside a span, the enricher writes nothing and never fails. A plain
 * per-record enricher: a context lookup per line, no allocation outside spans.
 * In the `pino-enrich/transport` worker it writes the span that
 * `pinoOptions({ mode: 'transport' })` captured at the call on the main
 * thread ({@link EnrichContext.trace}).
 */
export function traceEnricher(options: TraceEnricherOptions = {}): NamedEnricherFn {
  const api = options.api === undefined ? defaultApi() : (options.api ?? undefined)
  const fn = (ctx: EnrichContext): Fields | undefined => {
    // In the transport worker the span was captured on the main thread, with the request context.
    const captured = ctx.trace
    if (captured !== undefined) {
      return {
        trace_id: captured.traceId,
        span_id: captured.spanId,
        trace_flags: FLAGS[captured.traceFlags & 0xff] as string,
      }
    }
    if (api === undefined) return undefined
    const sc = api.trace.getSpanContext(api.context.active() as never)
    if (sc === undefined || !api.isSpanContextValid(sc)) return undefined
    return { trace_id: sc.traceId, span_id: sc.spanId, trace_flags: FLAGS[sc.traceFlags & 0xff] as string }
  }
  return Object.assign(fn, { enricherName: options.name ?? 'trace' })
}

function defaultApi(): OtelTraceApi | undefined {
  loaded ??= { api: loadOptional<OtelTraceApi>(OTEL_API, isTraceApi) }
  return loaded.api
}

/**
 * Loads an optional dependency synchronously, resolved from this package
 * (which finds the application's copy). Undefined when it is not installed,
 * fails to load or does not have the expected shape.
 */
export function loadOptional<T>(specifier: string, check: (m: unknown) => m is T): T | undefined {
  try {
    const m: unknown = createRequire(import.meta.url)(specifier)
    return check(m) ? m : undefined
  } catch {
    return undefined
  }
}

function isTraceApi(m: unknown): m is OtelTraceApi {
  const api = m as Partial<Record<keyof OtelTraceApi, Record<string, unknown>>> | null
  return (
    typeof api === 'object' &&
    api !== null &&
    typeof api.context?.active === 'function' &&
    typeof api.trace?.getSpanContext === 'function' &&
    typeof api.isSpanContextValid === 'function'
  )
}
