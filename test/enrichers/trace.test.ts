import { AsyncLocalStorage } from 'node:async_hooks'
import {
  type Context,
  type ContextManager,
  context,
  INVALID_SPAN_CONTEXT,
  ROOT_CONTEXT,
  type SpanContext,
  TraceFlags,
  trace,
} from '@opentelemetry/api'
import pino from 'pino'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type OtelTraceApi, traceEnricher } from '../../enrichers/index.js'
import { loadOptional } from '../../enrichers/trace.js'
import { createPipeline, type EnrichContext, type Pipeline } from '../../src/index.js'
import { sink } from '../helpers/sink.js'

/**
 * A context manager on AsyncLocalStorage, what @opentelemetry/context-async-hooks
 * provides (not installed here): context.with() then propagates across awaits.
 */
class AlsContextManager implements ContextManager {
  readonly #als = new AsyncLocalStorage<Context>()
  active(): Context {
    return this.#als.getStore() ?? ROOT_CONTEXT
  }
  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    ctx: Context,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    return this.#als.run(ctx, () => fn.apply(thisArg, args))
  }
  bind<T>(ctx: Context, target: T): T {
    if (typeof target !== 'function') return target
    const fn = target as (...a: unknown[]) => unknown
    return ((...a: unknown[]) => this.with(ctx, fn, undefined, ...a)) as T
  }
  enable(): this {
    return this
  }
  disable(): this {
    this.#als.disable()
    return this
  }
}

beforeAll(() => {
  expect(context.setGlobalContextManager(new AlsContextManager())).toBe(true)
})
afterAll(() => {
  context.disable()
})

let pipelines: Pipeline[] = []
afterEach(async () => {
  await Promise.all(pipelines.map((p) => p.close()))
  pipelines = []
})

const SAMPLED: SpanContext = {
  traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
  spanId: '00f067aa0ba902b7',
  traceFlags: TraceFlags.SAMPLED,
}
const inSpan = <T>(sc: SpanContext, fn: () => T): T =>
  context.with(trace.setSpan(ROOT_CONTEXT, trace.wrapSpanContext(sc)), fn)
const ctx: EnrichContext = { level: 30, time: 0, record: {}, context: undefined }

describe('traceEnricher', () => {
  it('writes trace_id, span_id and trace_flags of the active span, as instrumentation-pino does', () => {
    const fn = traceEnricher()
    expect(inSpan(SAMPLED, () => fn(ctx))).toEqual({
      trace_id: '4bf92f3577b34da6a3ce929d0e0e4736',
      span_id: '00f067aa0ba902b7',
      trace_flags: '01',
    })
    expect(inSpan({ ...SAMPLED, traceFlags: TraceFlags.NONE }, () => fn(ctx))).toMatchObject({ trace_flags: '00' })
  })

  it('writes nothing outside a span or for an invalid span context', () => {
    const fn = traceEnricher()
    expect(fn(ctx)).toBeUndefined()
    expect(inSpan(INVALID_SPAN_CONTEXT, () => fn(ctx))).toBeUndefined()
  })

  it('puts the ids on lines logged in a span, across awaits, through the pipeline', async () => {
    const p = createPipeline({ enrichers: [traceEnricher()] })
    pipelines.push(p)
    const out = sink()
    const log = pino(p.pinoOptions(), out)
    await inSpan(SAMPLED, async () => {
      await new Promise((resolve) => setImmediate(resolve))
      log.info('in span')
    })
    log.info('outside')
    const [inside, outside] = out.lines()
    expect(inside).toMatchObject({ trace_id: SAMPLED.traceId, span_id: SAMPLED.spanId, trace_flags: '01' })
    expect(outside).not.toHaveProperty('trace_id')
    expect(p.stats().enrichers[0]).toMatchObject({ name: 'trace', kind: 'function', invalid: 0, errors: 0 })
  })

  it('with api: null, or without @opentelemetry/api installed, writes nothing and never fails', () => {
    expect(inSpan(SAMPLED, () => traceEnricher({ api: null })(ctx))).toBeUndefined()
    const isApi = (m: unknown): m is OtelTraceApi => typeof m === 'object' && m !== null
    expect(loadOptional('@opentelemetry/not-installed-anywhere', isApi)).toBeUndefined()
    // Installed but not the expected shape: refused too.
    expect(loadOptional('pino', (m): m is OtelTraceApi => typeof (m as { trace?: unknown }).trace === 'object')).toBe(
      undefined,
    )
    expect(loadOptional('@opentelemetry/api', isApi)).toBeDefined()
  })

  it('takes an injected API', () => {
    const api: OtelTraceApi = {
      context: { active: () => 'ctx' },
      trace: { getSpanContext: () => ({ traceId: 'a'.repeat(32), spanId: 'b'.repeat(16), traceFlags: 0x81 }) },
      isSpanContextValid: () => true,
    }
    expect(traceEnricher({ api, name: 'trace2' })(ctx)).toEqual({
      trace_id: 'a'.repeat(32),
      span_id: 'b'.repeat(16),
      trace_flags: '81',
    })
    expect(traceEnricher({ name: 'trace2' }).enricherName).toBe('trace2')
  })
})

describe("mode 'transport': the main thread's capture of the active span", () => {
  const hostileSpans = {
    'a span whose spanContext() throws': {
      spanContext() {
        throw new Error('spanContext failed')
      },
    },
    'a span context whose traceId getter throws': {
      spanContext() {
        return {
          get traceId(): string {
            throw new Error('traceId failed')
          },
          spanId: SAMPLED.spanId,
          traceFlags: 1,
        }
      },
    },
  }
  for (const [name, span] of Object.entries(hostileSpans)) {
    it(`writes the line without a span for ${name}, and captures the next valid one`, () => {
      const p = createPipeline({})
      pipelines.push(p)
      const out = sink()
      const logger = pino(p.pinoOptions({ mode: 'transport' }), out)
      const active = trace.setSpan(ROOT_CONTEXT, span as unknown as ReturnType<typeof trace.wrapSpanContext>)
      expect(() => context.with(active, () => logger.info('hostile'))).not.toThrow()
      inSpan(SAMPLED, () => logger.info('valid'))
      expect(out.lines().map((l) => [l.msg, l['@pino-enrich']])).toEqual([
        ['hostile', {}],
        ['valid', { s: `${SAMPLED.traceId}${SAMPLED.spanId}01` }],
      ])
    })
  }
})
