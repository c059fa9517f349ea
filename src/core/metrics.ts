import type { BreakerState } from '../breaker/circuit-breaker.js'
import type { SmartCacheStats } from '../cache/smart-cache.js'
import type { Slot } from './registry.js'

/** Per-enricher figures of {@link Pipeline.stats}. */
export interface EnricherStats {
  name: string
  kind: 'global' | 'keyed' | 'function'
  cache: SmartCacheStats | undefined
  breaker: BreakerState | 'none'
  /** Computes that failed (timeouts included). */
  errors: number
  /** Computes that passed `timeoutMs`. */
  timeouts: number
  /** Lines written before this enricher answered (deferred mode, `enrich()`). */
  lineTimeouts: number
  /** Outputs with dropped or refused fields. */
  invalid: number
  /** Lookups refused because `maxInflight` computes were running (problem kind `busy`; no compute ran, nothing failed). */
  busy: number
  /** Compute latency over the last 1 024 computes, in ms. */
  latencyMs: { p50: number; p99: number }
}

/** What {@link Pipeline.stats} returns. */
export interface PipelineStats {
  enrichers: EnricherStats[]
  records: {
    /** Lines that went through the pipeline. */
    enriched: number
    /** Lines written with at least one enricher timed out. */
    timedOut: number
    /** Lines that could not be written. */
    dropped: number
    /** Deferred lines waiting now. */
    pending: number
    /** Lines logged after `close()`: written, with what was left. */
    afterClose: number
    /** Largest delay enrichment added to a line, in ms. */
    maxAddedDelayMs: number
  }
}

/** What the log path counts of its lines, as {@link PipelineStats} `records` reports them (but `pending`). */
export interface LineCounters {
  enriched: number
  timedOut: number
  dropped: number
  afterClose: number
  maxAddedDelayMs: number
}

/** The figures of {@link PipelineStats}: per enricher from its slot and cache, per line from the counters. */
export function statsOf(slots: readonly Slot[], counters: Readonly<LineCounters>, pending: number): PipelineStats {
  return {
    enrichers: slots.map((s) => {
      const cache = s.cache?.stats()
      return {
        name: s.name,
        kind: s.fn !== undefined ? 'function' : s.global ? 'global' : 'keyed',
        cache,
        breaker: cache?.breaker ?? 'none',
        errors: s.errors,
        timeouts: s.timeouts,
        lineTimeouts: s.lineTimeouts,
        invalid: s.invalid,
        busy: s.busy,
        latencyMs: s.latency.quantiles(),
      }
    }),
    records: {
      enriched: counters.enriched,
      timedOut: counters.timedOut,
      dropped: counters.dropped,
      pending,
      afterClose: counters.afterClose,
      maxAddedDelayMs: counters.maxAddedDelayMs,
    },
  }
}

/** The prefix of every metric name. */
export const METRIC_PREFIX = 'pino_enrich_'

/** One metric of {@link PipelineStats}: per enricher (labelled `enricher`) or one figure for the pipeline. */
export type MetricDef =
  | {
      readonly name: string
      readonly type: 'counter' | 'gauge'
      readonly help: string
      /** The enricher's figure; `undefined` leaves the enricher out of this metric. */
      readonly perEnricher: (e: EnricherStats) => number | undefined
    }
  | {
      readonly name: string
      readonly type: 'counter' | 'gauge'
      readonly help: string
      readonly total: (s: PipelineStats) => number
    }

const cache =
  (k: keyof SmartCacheStats) =>
  (e: EnricherStats): number | undefined =>
    e.cache?.[k] as number | undefined

/**
 * Every metric, in the order `metrics()` writes them. The one table both
 * `metrics()` (Prometheus text) and `pino-enrich/prom-client` read, so names,
 * help and figures cannot drift apart. Names are without {@link METRIC_PREFIX}.
 */
export const METRICS: readonly MetricDef[] = [
  { name: 'cache_hits_total', type: 'counter', help: 'Fresh cache hits.', perEnricher: cache('hits') },
  { name: 'cache_stale_hits_total', type: 'counter', help: 'Stale values served.', perEnricher: cache('staleHits') },
  { name: 'cache_misses_total', type: 'counter', help: 'Cache misses.', perEnricher: cache('misses') },
  {
    name: 'cache_error_hits_total',
    type: 'counter',
    help: 'Lookups answered from the error tier.',
    perEnricher: cache('errorHits'),
  },
  { name: 'cache_computes_total', type: 'counter', help: 'Computes started.', perEnricher: cache('computes') },
  {
    name: 'cache_evictions_total',
    type: 'counter',
    help: 'Entries evicted by the size bound.',
    perEnricher: cache('evictions'),
  },
  { name: 'cache_entries', type: 'gauge', help: 'Entries held.', perEnricher: cache('totalEntries') },
  { name: 'cache_inflight', type: 'gauge', help: 'Computes running.', perEnricher: cache('inflight') },
  { name: 'enricher_errors_total', type: 'counter', help: 'Failed computes.', perEnricher: (e) => e.errors },
  {
    name: 'enricher_timeouts_total',
    type: 'counter',
    help: 'Computes past timeoutMs.',
    perEnricher: (e) => e.timeouts,
  },
  {
    name: 'enricher_line_timeouts_total',
    type: 'counter',
    help: 'Lines written before the enricher answered.',
    perEnricher: (e) => e.lineTimeouts,
  },
  {
    name: 'enricher_invalid_total',
    type: 'counter',
    help: 'Outputs with dropped or refused fields.',
    perEnricher: (e) => e.invalid,
  },
  {
    name: 'enricher_busy_total',
    type: 'counter',
    help: 'Lookups refused because maxInflight computes were running.',
    perEnricher: (e) => e.busy,
  },
  {
    name: 'breaker_open',
    type: 'gauge',
    help: '1 when the breaker is open or half-open.',
    perEnricher: (e) => (e.breaker === 'none' ? undefined : e.breaker === 'closed' ? 0 : 1),
  },
  {
    name: 'compute_latency_p99_ms',
    type: 'gauge',
    help: 'p99 compute latency over the last 1024 computes.',
    perEnricher: (e) => e.latencyMs.p99,
  },
  { name: 'records_enriched_total', type: 'counter', help: 'Lines enriched.', total: (s) => s.records.enriched },
  {
    name: 'records_timed_out_total',
    type: 'counter',
    help: 'Lines written with an enricher timed out.',
    total: (s) => s.records.timedOut,
  },
  {
    name: 'records_dropped_total',
    type: 'counter',
    help: 'Lines that could not be written.',
    total: (s) => s.records.dropped,
  },
  { name: 'records_pending', type: 'gauge', help: 'Deferred lines waiting.', total: (s) => s.records.pending },
  {
    name: 'records_max_added_delay_ms',
    type: 'gauge',
    help: 'Largest delay added to a line.',
    total: (s) => s.records.maxAddedDelayMs,
  },
]

/** A metric's figures: `[enricher name or undefined for the pipeline's own, value]`; a value that is not finite is 0. */
export function metricRows(def: MetricDef, s: PipelineStats): Array<[string | undefined, number]> {
  if ('total' in def) return [[undefined, finite(def.total(s))]]
  const rows: Array<[string | undefined, number]> = []
  for (const e of s.enrichers) {
    const v = def.perEnricher(e)
    if (v !== undefined) rows.push([e.name, finite(v)])
  }
  return rows
}

function finite(v: number): number {
  return Number.isFinite(v) ? v : 0
}

/** {@link PipelineStats} in the Prometheus text exposition format (0.0.4). */
export function formatMetrics(s: PipelineStats): string {
  const lines: string[] = []
  for (const def of METRICS) {
    const name = METRIC_PREFIX + def.name
    lines.push(`# HELP ${name} ${def.help}`, `# TYPE ${name} ${def.type}`)
    for (const [enricher, v] of metricRows(def, s)) {
      lines.push(`${name}${enricher === undefined ? '' : `{enricher=${JSON.stringify(enricher)}}`} ${v}`)
    }
  }
  return `${lines.join('\n')}\n`
}
