import { Writable } from 'node:stream'
import pino from 'pino'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { defineEnricher, type Fields, type Pipeline } from '../../src/index.js'
import { type Deferred, deferred } from '../helpers/deferred.js'
import { trackPipelines } from '../helpers/pipelines.js'
import { sink } from '../helpers/sink.js'

const { pipeline, closePipelines } = trackPipelines()

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date', 'performance'] })
})

afterEach(async () => {
  await closePipelines()
  vi.useRealTimers()
})

/** A keyed enricher on `ctx.record.user` whose computes the test settles by hand. */
function heldUser() {
  const gates = new Map<string, Deferred<Fields>>()
  const enricher = defineEnricher({
    name: 'user',
    key: (ctx) => ctx.record.user as string | undefined,
    compute: (id: string) => {
      const d = deferred<Fields>()
      gates.set(id, d)
      return d.promise
    },
  })
  return { gates, enricher }
}

describe('a log call made while a deferred line is written', () => {
  // Each way user code runs while pino writes a line. `record` sees every line
  // written; a way returns the options and the destination to log with.
  type Reenter = (
    nested: () => void,
    record: (chunk: string) => void,
  ) => { options: pino.LoggerOptions; stream: pino.DestinationStream }
  const plain = (record: (chunk: string) => void): pino.DestinationStream => ({ write: record })
  const ways: Array<[string, Reenter]> = [
    [
      'a serializer',
      (nested, record) => ({
        options: {
          serializers: {
            a: (v: unknown) => {
              nested()
              return v
            },
          },
        },
        stream: plain(record),
      }),
    ],
    [
      'formatters.log',
      (nested, record) => ({
        options: {
          formatters: {
            log: (o: Record<string, unknown>) => {
              if (o.a !== undefined) nested()
              return o
            },
          },
        },
        stream: plain(record),
      }),
    ],
    [
      'a user mixin',
      (nested, record) => ({
        options: {
          mixin: (o: object) => {
            if ((o as { a?: unknown }).a !== undefined) nested()
            return {}
          },
        },
        stream: plain(record),
      }),
    ],
    [
      "a destination's write()",
      (nested, record) => ({
        options: {},
        stream: {
          write(chunk: string) {
            record(chunk)
            if (chunk.includes('"a":')) nested()
          },
        },
      }),
    ],
    [
      "a multistream's stream",
      (nested, record) => ({
        options: {},
        stream: pino.multistream([
          { stream: plain(record) },
          {
            stream: new Writable({
              write(chunk: Buffer, _e, cb) {
                if (chunk.toString().includes('"a":')) nested()
                cb()
              },
            }),
          },
        ]),
      }),
    ],
  ]

  for (const [name, way] of ways) {
    it(`from ${name}: never throws, keeps call order and writes the nested line after the line being written`, async () => {
      const { gates, enricher } = heldUser()
      const p = pipeline({ deadlineMs: 100, enrichers: [enricher] })
      const written: string[] = []
      let log: pino.Logger | undefined
      let nestedOnce = false
      const { options, stream } = way(
        () => {
          if (nestedOnce) return
          nestedOnce = true
          log?.info('nested')
        },
        (chunk) => {
          written.push((JSON.parse(chunk) as { msg: string }).msg)
        },
      )
      log = pino(p.pinoOptions({ mode: 'deferred', ...options }), stream)
      // 'first' waits for its lookup; 'second' is ready but queued behind it.
      log.info({ a: 1, user: 'u1' }, 'first')
      log.info('second')
      expect(written).toEqual([])
      gates.get('u1')?.resolve({ name: 'one' })
      await vi.advanceTimersByTimeAsync(0)
      expect(written).toEqual(['first', 'second', 'nested'])
      // The queue still works: a waiting line and one behind it, in order.
      log.info({ user: 'u2' }, 'third')
      log.info('fourth')
      gates.get('u2')?.resolve({ name: 'two' })
      await vi.advanceTimersByTimeAsync(0)
      expect(written).toEqual(['first', 'second', 'nested', 'third', 'fourth'])
      expect(p.stats().records.dropped).toBe(0)
    })
  }

  it('from a plain call while a ready line waits behind another: the call itself does not throw', async () => {
    const { gates, enricher } = heldUser()
    const p = pipeline({ deadlineMs: 100, enrichers: [enricher] })
    const out = sink()
    let log: pino.Logger | undefined
    let calls = 0
    log = pino(
      p.pinoOptions({
        mode: 'deferred',
        serializers: {
          a: (v: unknown) => {
            if (calls++ === 0) log?.info('nested')
            return v
          },
        },
      }),
      out,
    )
    log.info({ user: 'u1' }, 'first')
    log.info({ a: 1 }, 'second')
    gates.get('u1')?.resolve({ name: 'one' })
    await vi.advanceTimersByTimeAsync(0)
    expect(() => log?.info('after')).not.toThrow()
    expect(out.lines().map((l) => l.msg)).toEqual(['first', 'second', 'nested', 'after'])
  })
})

describe('an enricher that logs through the logger it enriches', () => {
  const build = (p: Pipeline, mode: 'snapshot' | 'deferred') => {
    const out = sink()
    const holder: { log?: pino.Logger } = {}
    holder.log = pino(p.pinoOptions({ mode }), out)
    return { out, holder }
  }

  for (const mode of ['snapshot', 'deferred'] as const) {
    it(`a function enricher's log call is written once, without re-entering enrichment (${mode})`, () => {
      const p = pipeline()
      let runs = 0
      const { out, holder } = build(p, mode)
      p.register(function audit() {
        runs++
        holder.log?.info('from the enricher')
        return { audited: true }
      })
      holder.log?.info('outer')
      expect(runs).toBe(1)
      const lines = out.lines()
      expect(lines.map((l) => l.msg).sort()).toEqual(['from the enricher', 'outer'])
      expect(lines.find((l) => l.msg === 'outer')).toMatchObject({ audited: true })
      expect(lines.find((l) => l.msg === 'from the enricher')?.audited).toBeUndefined()
    })

    it(`a key() that logs is called once per line, its line written once (${mode})`, async () => {
      const p = pipeline()
      let keys = 0
      const { out, holder } = build(p, mode)
      p.register(
        defineEnricher({
          name: 'tenant',
          key: () => {
            keys++
            holder.log?.info('key asked')
            return 't1'
          },
          compute: (id: string) => ({ tenant: id }),
        }),
      )
      holder.log?.info('outer')
      await vi.advanceTimersByTimeAsync(20)
      expect(keys).toBe(1)
      expect(
        out
          .lines()
          .map((l) => l.msg)
          .sort(),
      ).toEqual(['key asked', 'outer'])
    })
  }
})
