import pino from 'pino'
import { describe, expectTypeOf, it } from 'vitest'
import { createPipeline, defineEnricher, type Fields, type PipelineEvent } from '../../src/index.js'

describe('pipeline types', () => {
  it('types the README quick start: the key comes from the request context', () => {
    const users = { get: async (id: string, _o: { signal: AbortSignal }) => ({ id, name: 'n' }) }
    const enrich = createPipeline()
    const off = enrich.register(
      defineEnricher({
        name: 'user',
        key: (ctx) => ctx.context?.userId,
        compute: async (userId, _ctx, { signal }) => {
          const id: string = userId
          expectTypeOf(id).toEqualTypeOf<string>()
          return { user: await users.get(userId, { signal }) }
        },
        cache: { ttlMs: 300_000, retryMs: 30_000, max: 10_000 },
        timeoutMs: 50,
      }),
    )
    expectTypeOf(off).toEqualTypeOf<() => void>()
    expectTypeOf(enrich.snapshot()).toEqualTypeOf<Fields>()
    expectTypeOf(enrich.enrich()).toEqualTypeOf<Promise<Fields>>()
    const logger = pino(enrich.pinoOptions({ mode: 'deferred', level: 'info', redact: ['user.email'] }))
    expectTypeOf(logger.info).toBeFunction()
  })

  it('narrows pipeline events by type', () => {
    const enrich = createPipeline()
    enrich.onEvent((e: PipelineEvent) => {
      if (e.type === 'breaker') expectTypeOf(e.to).toEqualTypeOf<'closed' | 'open' | 'half-open'>()
      if (e.type === 'timeout') expectTypeOf(e.timeoutMs).toEqualTypeOf<number>()
    })
  })

  it('rejects a mode that does not exist', () => {
    const enrich = createPipeline()
    // @ts-expect-error: not a mode
    enrich.pinoOptions({ mode: 'async' })
  })
})
