import { defineEnricher, type Enricher, type Fields } from '../src/index.js'
import { round } from './shared.js'

/** The part of systeminformation the resource enricher uses. */
export interface ResourceSource {
  /** CPU load since the previous call, in percent (systeminformation's `currentLoad().currentLoad`). */
  currentLoad(): Promise<{ currentLoad: number }>
  /** Memory in bytes: `total`, and `active` (total minus available, so caches do not count as used). */
  mem(): Promise<{ total: number; active: number }>
}

/** Options of {@link resourceEnricher}. */
export interface ResourceEnricherOptions {
  /** Enricher name, for stats and problem records. Default `'resource'`. */
  name?: string
  /** Sampling period, in ms. Default 5 000. */
  refreshMs?: number
  /**
   * Deadline of one sample, in ms. Default 2 000: systeminformation's first
   * `currentLoad()` measures for about 500 ms.
   */
  timeoutMs?: number
  /** Where figures come from. Default: the `systeminformation` package, imported on the first sample. */
  source?: ResourceSource
}

const DEFAULTS = { name: 'resource', refreshMs: 5_000, timeoutMs: 2_000 } as const

/**
 * Machine load, sampled in the background every `refreshMs` on an unref'd
 * timer and never on a log call (systeminformation takes 0.25 to 50 ms a
 * call; even `process.memoryUsage()` costs 7 us): `system.cpu.utilization`
 * (0..1), `system.memory.usage` and `system.memory.limit` (bytes used and
 * total), `system.memory.utilization` (0..1) and `system.process.memory.rss`
 * (this process's resident set, bytes). Each line carries the last sample.
 */
export function resourceEnricher(options: ResourceEnricherOptions = {}): Enricher {
  const o = { ...DEFAULTS, ...options }
  let source: ResourceSource | undefined = options.source
  return defineEnricher({
    name: o.name,
    refreshMs: o.refreshMs,
    timeoutMs: o.timeoutMs,
    // Fresh until two samples were missed, so a normal refresh never shows as stale.
    cache: { ttlMs: 2 * o.refreshMs + o.timeoutMs, jitter: 0 },
    compute: async () => {
      source ??= await loadSystemInformation()
      const [load, mem] = await Promise.allSettled([source.currentLoad(), source.mem()])
      if (load.status === 'rejected' && mem.status === 'rejected') throw load.reason
      const system: Record<string, unknown> = {}
      if (load.status === 'fulfilled' && Number.isFinite(load.value.currentLoad)) {
        system.cpu = { utilization: round(load.value.currentLoad / 100, 4) }
      }
      if (mem.status === 'fulfilled') {
        const { total, active } = mem.value
        if (Number.isFinite(total) && Number.isFinite(active) && total > 0) {
          system.memory = { usage: active, limit: total, utilization: round(active / total, 4) }
        }
      }
      system.process = { memory: { rss: process.memoryUsage.rss() } }
      return { system } satisfies Fields
    },
  })
}

async function loadSystemInformation(): Promise<ResourceSource> {
  const si = await import('systeminformation')
  return { currentLoad: () => si.currentLoad(), mem: () => si.mem() }
}
