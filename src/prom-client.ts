import { Counter, Gauge, register as globalRegistry, type Registry } from 'prom-client'
import type { PipelineStats } from './core/metrics.js'
import { METRIC_PREFIX, METRICS, metricRows } from './core/metrics.js'
import type { Disposer } from './events.js'

/** Options of {@link registerPipelineMetrics}. */
export interface PromClientOptions {
  /** The prom-client `Registry` the metrics are registered in. Default: prom-client's global `register`. */
  registry?: Registry
}

/**
 * Registers a pipeline's figures in a prom-client `Registry`: the metrics of
 * `enrich.metrics()`, with the same names, help, types and labels. They are
 * read when the registry is scraped (prom-client's `collect()`), from one
 * `stats()` call per scrape; no timer runs in between.
 *
 * ```ts
 * import { Registry } from 'prom-client'
 * import { registerPipelineMetrics } from 'pino-enrich/prom-client'
 *
 * const registry = new Registry()
 * registerPipelineMetrics(enrich, { registry })
 * ```
 *
 * One pipeline per registry: the names are fixed, and prom-client refuses a
 * name registered twice.
 *
 * @returns a disposer that removes the metrics from the registry again
 * @throws TypeError for a pipeline without `stats()` or a registry that is not one;
 *   prom-client's own error when a name is already registered (nothing is left registered then)
 */
export function registerPipelineMetrics(enrich: { stats(): PipelineStats }, options: PromClientOptions = {}): Disposer {
  if (typeof enrich?.stats !== 'function') {
    throw new TypeError(`registerPipelineMetrics expects a pipeline (createPipeline()), received ${String(enrich)}`)
  }
  const registry = options.registry ?? globalRegistry
  if (typeof registry?.registerMetric !== 'function' || typeof registry.removeSingleMetric !== 'function') {
    throw new TypeError(`registry must be a prom-client Registry, received ${String(registry)}`)
  }

  // Every metric's collect() runs in the same synchronous pass of a scrape:
  // the first takes the stats, the rest of that pass reuse them.
  let stats: PipelineStats | undefined
  const current = (): PipelineStats => {
    if (stats === undefined) {
      stats = enrich.stats()
      queueMicrotask(() => {
        stats = undefined
      })
    }
    return stats
  }

  const names: string[] = []
  try {
    for (const def of METRICS) {
      const name = METRIC_PREFIX + def.name
      const labelNames = 'total' in def ? [] : ['enricher']
      if (def.type === 'counter') {
        new Counter({
          name,
          help: def.help,
          labelNames,
          registers: [registry],
          collect(this: Counter<string>) {
            // A figure that went down (a cache closed, an enricher removed) is reported as it is now.
            this.reset()
            for (const [enricher, v] of metricRows(def, current())) {
              if (enricher === undefined) this.inc(v)
              else this.inc({ enricher }, v)
            }
          },
        })
      } else {
        new Gauge({
          name,
          help: def.help,
          labelNames,
          registers: [registry],
          collect(this: Gauge<string>) {
            this.reset()
            for (const [enricher, v] of metricRows(def, current())) {
              if (enricher === undefined) this.set(v)
              else this.set({ enricher }, v)
            }
          },
        })
      }
      names.push(name)
    }
  } catch (e) {
    for (const name of names) registry.removeSingleMetric(name)
    throw e
  }
  return () => {
    for (const name of names.splice(0)) registry.removeSingleMetric(name)
  }
}
