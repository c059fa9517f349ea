import { AsyncLocalStorage } from 'node:async_hooks'
import { fastifyRequestContext, requestContext } from '@fastify/request-context'
import express from 'express'
import Fastify from 'fastify'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { requestEnricher } from '../../enrichers/index.js'
import { expressContext } from '../../src/context/express.js'
import { fastifyContext } from '../../src/context/fastify.js'
import {
  createPipeline,
  defineEnricher,
  type Pipeline,
  type PipelineOptions,
  type RequestContext,
} from '../../src/index.js'
import { TRANSPORT_KEY } from '../../src/pino/transport-capture.js'
import { sink } from '../helpers/sink.js'

declare module '@fastify/request-context' {
  interface RequestContextData {
    requestId: string
    method: string
    userId?: string
  }
}

let pipelines: Pipeline[] = []
afterEach(async () => {
  await Promise.all(pipelines.map((p) => p.close()))
  pipelines = []
})

function pipeline(options: PipelineOptions): Pipeline {
  const p = createPipeline({ deadlineMs: 1_000, ...options })
  pipelines.push(p)
  return p
}

/** A keyed lookup on ctx.context.userId: it sees the application's context too. */
function userLookup() {
  return defineEnricher<string>({
    name: 'user',
    key: (ctx) => ctx.context?.userId as string | undefined,
    compute: async (id) => ({ user: { name: `name-${id}` } }),
  })
}

describe('context option: the application keeps the request context', () => {
  describe.each(['getter', 'AsyncLocalStorage'] as const)('@fastify/request-context on Fastify 5, as a %s', (form) => {
    async function serve(mode: 'snapshot' | 'deferred' | 'transport') {
      // README's snippet: the plugin's own getter, or its AsyncLocalStorage.
      const { asyncLocalStorage } = await import('@fastify/request-context')
      const p = pipeline({
        context: form === 'getter' ? requestContext.getStore : asyncLocalStorage,
        enrichers: [requestEnricher(), userLookup()],
      })
      const out = sink()
      const app = Fastify({ loggerInstance: pino(p.pinoOptions({ mode }), out) })
      await app.register(fastifyRequestContext, {
        defaultStoreValues: (request) => ({ requestId: request.id, method: request.method }),
      })
      app.get('/me', async (request) => {
        request.requestContext.set('userId', String(request.headers['x-user']))
        request.log.info({ at: 'request.log' })
        await new Promise((resolve) => setImmediate(resolve))
        app.log.info({ at: 'app.log' })
        return { same: p.context.get() === requestContext.getStore(), id: request.id }
      })
      return { p, out, app }
    }

    it.each(['snapshot', 'deferred'] as const)('%s: lines carry its requestId, method and userId', async (mode) => {
      const { p, out, app } = await serve(mode)
      for (const user of ['alice', 'bob']) {
        const r = await app.inject({ url: '/me', headers: { 'x-user': user } })
        expect(r.json()).toMatchObject({ same: true })
      }
      app.log.info({ at: 'outside' })
      // Twice: the first line of a user starts its lookup; deferred lines wait for it.
      await app.inject({ url: '/me', headers: { 'x-user': 'alice' } })
      await p.flush()
      await app.close()
      const seen = out
        .lines()
        .filter((l) => l.at !== undefined)
        .map((l) => [l.at, l.reqMethod, l.userId, typeof l.reqId])
      expect(seen).toEqual([
        ['request.log', 'GET', 'alice', 'string'],
        ['app.log', 'GET', 'alice', 'string'],
        ['request.log', 'GET', 'bob', 'string'],
        ['app.log', 'GET', 'bob', 'string'],
        ['outside', undefined, undefined, 'undefined'],
        ['request.log', 'GET', 'alice', 'string'],
        ['app.log', 'GET', 'alice', 'string'],
      ])
      const appLines = out.lines().filter((l) => l.at === 'app.log')
      // app.log has no reqId binding: the id comes from the application's context alone.
      expect(new Set(appLines.map((l) => l.reqId)).size).toBe(3)
      if (mode === 'deferred') {
        for (const l of appLines) expect(l.user).toEqual({ name: `name-${l.userId}` })
      }
    })

    it('transport: the main thread captures its values for the worker', async () => {
      const { app, out } = await serve('transport')
      await app.inject({ url: '/me', headers: { 'x-user': 'carol' } })
      await app.close()
      const captured = out
        .lines()
        .filter((l) => l.at !== undefined)
        .map((l) => (l[TRANSPORT_KEY] as { c?: RequestContext }).c)
      expect(captured).toHaveLength(2)
      for (const c of captured) expect(c).toMatchObject({ method: 'GET', userId: 'carol', requestId: 'req-1' })
    })
  })

  it('a plain AsyncLocalStorage of your own: read in every mode, and run() runs on it', async () => {
    const als = new AsyncLocalStorage<{ requestId: string; userId?: string }>()
    const p = pipeline({ context: als, enrichers: [requestEnricher()] })
    const out = sink()
    const snapshot = pino(p.pinoOptions(), out)
    const deferred = pino(p.pinoOptions({ mode: 'deferred' }), out)
    const transport = pino(p.pinoOptions({ mode: 'transport' }), out)
    als.run({ requestId: 'r1', userId: 'u1' }, () => {
      snapshot.info('snapshot')
      deferred.info('deferred')
      transport.info('transport')
      expect(p.context.get()).toBe(als.getStore())
    })
    p.context.run({ requestId: 'r2' }, () => {
      expect(als.getStore()).toEqual({ requestId: 'r2' })
      snapshot.info('run')
    })
    snapshot.info('outside')
    await p.flush()
    const lines = out.lines()
    const by = (msg: string) => lines.find((l) => l.msg === msg)
    expect(by('snapshot')).toMatchObject({ reqId: 'r1', userId: 'u1' })
    expect(by('deferred')).toMatchObject({ reqId: 'r1', userId: 'u1' })
    expect(by('transport')?.[TRANSPORT_KEY]).toEqual({ c: { requestId: 'r1', userId: 'u1' } })
    expect(by('run')).toMatchObject({ reqId: 'r2' })
    expect(by('outside')).not.toHaveProperty('reqId')
  })

  it('a getter that throws or returns a non-object reads as no context, and the line is written', async () => {
    let value: unknown
    const p = pipeline({
      context: () => {
        if (value === 'throw') throw new Error('getter failed')
        return value as object
      },
      enrichers: [requestEnricher()],
    })
    const out = sink()
    const snapshot = pino(p.pinoOptions(), out)
    const deferred = pino(p.pinoOptions({ mode: 'deferred' }), out)
    for (const v of ['throw', 'a string', 42, null, { requestId: 'ok' }]) {
      value = v
      snapshot.info({ v: String(v) }, 'snapshot')
      deferred.info({ v: String(v) }, 'deferred')
    }
    await p.flush()
    const lines = out.lines()
    expect(lines).toHaveLength(10)
    expect(lines.filter((l) => l.reqId !== undefined).map((l) => [l.msg, l.reqId])).toEqual([
      ['snapshot', 'ok'],
      ['deferred', 'ok'],
    ])
    expect(() => p.context.run({ requestId: 'x' }, () => 1)).toThrow(TypeError)
  })

  it('a store whose getStore throws, or a Proxy store whose every trap throws, reads as no context in every mode', async () => {
    const hostile = new Proxy(
      {},
      {
        get() {
          throw new Error('get trap')
        },
        has() {
          throw new Error('has trap')
        },
        ownKeys() {
          throw new Error('ownKeys trap')
        },
        getOwnPropertyDescriptor() {
          throw new Error('descriptor trap')
        },
        getPrototypeOf() {
          throw new Error('prototype trap')
        },
      },
    )
    let mode: 'throw' | 'proxy' | 'ok' = 'throw'
    const storage = {
      getStore(): unknown {
        if (mode === 'throw') throw new Error('getStore failed')
        return mode === 'proxy' ? hostile : { requestId: 'ok' }
      },
      run<R>(_store: object, fn: () => R): R {
        return fn()
      },
    }
    const p = pipeline({ context: storage, enrichers: [requestEnricher(), userLookup()] })
    const out = sink()
    const loggers = (['snapshot', 'deferred', 'transport'] as const).map((m) => pino(p.pinoOptions({ mode: m }), out))
    for (const m of ['throw', 'proxy', 'ok'] as const) {
      mode = m
      for (const logger of loggers) expect(() => logger.info({ m }, 'line')).not.toThrow()
    }
    await p.flush()
    const lines = out.lines()
    expect(lines).toHaveLength(9)
    expect(lines.filter((l) => l.m === 'ok').map((l) => l.reqId ?? (l[TRANSPORT_KEY] as { c?: unknown }).c)).toEqual([
      'ok',
      'ok',
      { requestId: 'ok' },
    ])
  })

  it('refuses anything else at construction with a TypeError quoting it', () => {
    expect(() => createPipeline({ context: 42 as never })).toThrow(/received number 42/)
    expect(() => createPipeline({ context: { getStore: 1 } as never })).toThrow(/\["getStore"\]/)
    expect(() => createPipeline({ context: null as never })).toThrow(/received null/)
  })

  it("the integrations refuse a pipeline reading the application's context, whose store they would replace", async () => {
    const p = pipeline({ context: requestContext.getStore })
    expect(() => expressContext(p)).toThrow(/expressContext.*application's/)
    const app = Fastify()
    await expect(app.register(fastifyContext, { enrich: p })).rejects.toThrow(TypeError)
    await app.close()
    const als = pipeline({ context: new AsyncLocalStorage() })
    expect(() => express().use(expressContext(als))).toThrow(TypeError)
  })
})
