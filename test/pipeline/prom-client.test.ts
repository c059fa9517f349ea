import parsePrometheusTextFormat from 'parse-prometheus-text-format'
import pino from 'pino'
import { Registry } from 'prom-client'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { createPipeline, defineEnricher, type Pipeline } from '../../src/index.js'
import { registerPipelineMetrics } from '../../src/prom-client.js'
import { sink } from '../helpers/sink.js'

interface Family {
  name: string
  help: string
  type: string
  metrics: Array<{ value: string; labels?: Record<string, string> }>
}

const parse = (text: string): Family[] => parsePrometheusTextFormat(text) as Family[]

/** A family's figures by enricher label ('' for the pipeline's own). */
function figures(families: Family[], name: string): Record<string, number> {
  const f = families.find((x) => x.name === `pino_enrich_${name}`)
  if (f === undefined) throw new Error(`no ${name} in the scrape`)
  return Object.fromEntries(f.metrics.map((m) => [m.labels?.enricher ?? '', Number(m.value)]))
}

let pipelines: Pipeline[] = []
afterEach(async () => {
  vi.useRealTimers()
  await Promise.all(pipelines.map((p) => p.close()))
  pipelines = []
})

/** A pipeline with a global enricher, a keyed one and a failing keyed one, after some lines in both modes. */
async function busyPipeline(): Promise<{ p: Pipeline; log: pino.Logger; deferred: pino.Logger }> {
  const p = createPipeline({ deadlineMs: 1_000 })
  pipelines.push(p)
  p.register(defineEnricher({ name: 'service', compute: () => ({ service: { name: 'api' } }) }))
  p.register(
    defineEnricher<string>({
      name: 'user',
      key: (ctx) => ctx.record.user as string | undefined,
      compute: async (id) => ({ user: { id } }),
    }),
  )
  p.register(
    defineEnricher<string>({
      name: 'tenant',
      key: (ctx) => ctx.record.tenant as string | undefined,
      compute: async () => {
        throw new Error('tenant service down')
      },
      breaker: false,
    }),
  )
  await p.ready()
  const out = sink()
  const log = pino(p.pinoOptions(), out)
  const deferred = pino(p.pinoOptions({ mode: 'deferred' }), out)
  for (let i = 0; i < 20; i++) {
    log.info({ user: `u${i % 3}` }, 'snapshot')
    deferred.info({ user: `u${i % 4}`, tenant: `t${i % 2}` }, 'deferred')
  }
  await p.flush()
  return { p, log, deferred }
}

describe('pino-enrich/prom-client', () => {
  it('a scrape of the registry parses to the same families, help, types and figures as metrics()', async () => {
    const { p } = await busyPipeline()
    const registry = new Registry()
    registerPipelineMetrics(p, { registry })
    const scraped = parse(await registry.metrics())
    const ours = parse(p.metrics())
    expect(scraped.map((f) => [f.name, f.help, f.type])).toEqual(ours.map((f) => [f.name, f.help, f.type]))
    for (const f of ours)
      expect(figures(scraped, f.name.slice('pino_enrich_'.length))).toEqual(
        figures(ours, f.name.slice('pino_enrich_'.length)),
      )
    // And the figures are stats()' own.
    const stats = p.stats()
    const by = (name: string) => stats.enrichers.find((e) => e.name === name)
    expect(figures(scraped, 'cache_hits_total')).toEqual({
      service: by('service')?.cache?.hits,
      user: by('user')?.cache?.hits,
      tenant: by('tenant')?.cache?.hits,
    })
    expect(figures(scraped, 'enricher_errors_total').tenant).toBe(by('tenant')?.errors)
    expect(by('tenant')?.errors).toBeGreaterThan(0)
    expect(figures(scraped, 'records_enriched_total')).toEqual({ '': stats.records.enriched })
    expect(stats.records.enriched).toBe(40)
    expect(figures(scraped, 'breaker_open')).toEqual({ service: 0, user: 0 })
  })

  it('reads the figures on each scrape, with one stats() call per scrape', async () => {
    const { p, log } = await busyPipeline()
    const registry = new Registry()
    registerPipelineMetrics(p, { registry })
    const spy = vi.spyOn(p, 'stats')
    const first = figures(parse(await registry.metrics()), 'records_enriched_total')['']
    expect(spy).toHaveBeenCalledTimes(1)
    for (let i = 0; i < 5; i++) log.info({ user: 'u1' }, 'more')
    const second = figures(parse(await registry.metrics()), 'records_enriched_total')['']
    expect(spy).toHaveBeenCalledTimes(2)
    expect(second).toBe((first as number) + 5)
  })

  it('starts no timer, and its disposer removes every metric', async () => {
    const { p } = await busyPipeline()
    vi.useFakeTimers()
    const registry = new Registry()
    const before = vi.getTimerCount()
    const dispose = registerPipelineMetrics(p, { registry })
    await registry.metrics()
    expect(vi.getTimerCount()).toBe(before)
    expect(registry.getMetricsAsArray()).toHaveLength(parse(p.metrics()).length)
    dispose()
    expect(registry.getMetricsAsArray()).toHaveLength(0)
    // Registered again after disposing: the names are free.
    registerPipelineMetrics(p, { registry })
    expect(registry.getMetricsAsArray()).toHaveLength(parse(p.metrics()).length)
  })

  it("refuses a second pipeline in one registry with prom-client's error, leaving the first as it was", async () => {
    const registry = new Registry()
    const a = createPipeline()
    const b = createPipeline()
    pipelines.push(a, b)
    registerPipelineMetrics(a, { registry })
    const count = registry.getMetricsAsArray().length
    expect(() => registerPipelineMetrics(b, { registry })).toThrow(/already been registered/)
    expect(registry.getMetricsAsArray()).toHaveLength(count)
  })

  it('refuses what is not a pipeline or a registry with a TypeError', () => {
    const p = createPipeline()
    pipelines.push(p)
    expect(() => registerPipelineMetrics({} as Pipeline)).toThrow(TypeError)
    expect(() => registerPipelineMetrics(p, { registry: {} as Registry })).toThrow(/prom-client Registry/)
  })
})
