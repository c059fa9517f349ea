import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { REQUEST_KEYS, requestEnricher } from '../../enrichers/index.js'
import { createPipeline, type EnrichContext, type Pipeline, type RequestContext } from '../../src/index.js'
import { sink } from '../helpers/sink.js'

let pipelines: Pipeline[] = []
afterEach(async () => {
  await Promise.all(pipelines.map((p) => p.close()))
  pipelines = []
})

const ctx = (context: RequestContext | undefined): EnrichContext<RequestContext> => ({
  level: 30,
  time: 0,
  record: {},
  context,
})

describe('requestEnricher', () => {
  it('writes request id, method, route and user id as flat keys', () => {
    const fn = requestEnricher()
    expect(fn(ctx({ requestId: 'r-1', method: 'POST', route: '/orders/:id', userId: 'u-9' }))).toEqual({
      reqId: 'r-1',
      reqMethod: 'POST',
      reqRoute: '/orders/:id',
      userId: 'u-9',
    })
    expect(REQUEST_KEYS).toEqual({ requestId: 'reqId', method: 'reqMethod', route: 'reqRoute', userId: 'userId' })
  })

  it('writes nothing outside a request and skips absent or non-primitive values', () => {
    const fn = requestEnricher()
    expect(fn(ctx(undefined))).toBeUndefined()
    expect(fn(ctx({}))).toBeUndefined()
    expect(fn(ctx({ requestId: 'r-2', userId: { id: 'x' } as unknown as string, tenant: undefined }))).toEqual({
      reqId: 'r-2',
    })
  })

  it('renames keys, leaves keys out with false, and copies context keys of your own', () => {
    const fn = requestEnricher({ keys: { requestId: 'request_id', userId: false, tenantId: 'tenantId' } })
    expect(fn(ctx({ requestId: 'r-3', userId: 'u', method: 'GET', tenantId: 't-1' }))).toEqual({
      request_id: 'r-3',
      reqMethod: 'GET',
      tenantId: 't-1',
    })
    expect(() => requestEnricher({ keys: { requestId: '' } })).toThrow(/keys.requestId .*received/)
  })

  it('is named "request" for the pipeline, or by its name option', () => {
    expect(requestEnricher().enricherName).toBe('request')
    const p = createPipeline({ enrichers: [requestEnricher(), requestEnricher({ name: 'request2' })] })
    pipelines.push(p)
    expect(p.stats().enrichers.map((e) => [e.name, e.kind])).toEqual([
      ['request', 'function'],
      ['request2', 'function'],
    ])
  })

  it('puts the request context on every line logged inside it, and the call site wins', () => {
    const p = createPipeline({ enrichers: [requestEnricher()] })
    pipelines.push(p)
    const out = sink()
    const log = pino(p.pinoOptions(), out)
    log.info('outside')
    p.context.run({ requestId: 'r-4', method: 'GET', route: '/health', userId: 'u-1' }, () => {
      log.info('inside')
      log.info({ userId: 'someone-else' }, 'call site')
    })
    const [outside, inside, callSite] = out.lines()
    expect(outside).not.toHaveProperty('reqId')
    expect(inside).toMatchObject({ reqId: 'r-4', reqMethod: 'GET', reqRoute: '/health', userId: 'u-1' })
    expect(callSite).toMatchObject({ reqId: 'r-4', userId: 'someone-else' })
    expect(p.stats().enrichers[0]?.invalid).toBe(0)
  })
})
