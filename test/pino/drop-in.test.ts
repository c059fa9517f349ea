import pino, { type DestinationStream, type LoggerOptions } from 'pino'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { defineEnricher, type Pipeline } from '../../src/index.js'
import { onAsJson } from '../helpers/as-json.js'
import { trackPipelines } from '../helpers/pipelines.js'

// `pino(pinoOptions(opts), stream)` must behave as `pino(opts, stream)` plus the
// enriched fields. Each case of the matrix below runs the same user code on
// plain pino and through pinoOptions() (snapshot and deferred, with an empty
// pipeline and with one global enricher) and compares what the user can see.

const { pipeline, closePipelines } = trackPipelines()

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date', 'performance'] })
  vi.setSystemTime(1_796_000_000_000)
})

afterEach(async () => {
  await closePipelines()
  vi.useRealTimers()
})

/** The global enricher's one field, removed from what is seen for a field-blind comparison. */
const FIELD = 'enrichedField'

type Make = (options: LoggerOptions, stream?: DestinationStream) => pino.Logger

/** Every chunk written, and the chunks parsed. */
function lines() {
  const chunks: string[] = []
  return {
    chunks,
    write(s: string) {
      chunks.push(s)
    },
    parsed: () => chunks.map((c) => JSON.parse(c) as Record<string, unknown>),
  }
}

/** A stream pino fills with each line's metadata (lastTime, lastObj...), as pino.multistream reads it. */
function metadataStream(onWrite: (self: Record<string, unknown>, s: string) => void) {
  const stream: Record<string | symbol, unknown> = {
    [Symbol.for('pino.metadata')]: true,
    write(s: string) {
      onWrite(stream, s)
    },
  }
  return stream as unknown as DestinationStream
}

function thrown(fn: () => unknown): { threw: false } | { threw: true; message: string } {
  try {
    fn()
    return { threw: false }
  } catch (e) {
    return { threw: true, message: (e as Error).message }
  }
}

interface Case {
  /** The pino options (or call) the case is about. */
  name: string
  /** Runs user code on a logger made by `make` and returns what the user can see of it. */
  run: (make: Make) => unknown
  /**
   * With the enricher, a difference pino-enrich makes on purpose: the case then
   * checks what it sees instead (the README says why).
   */
  enricher?: (seen: unknown) => void
}

/** The options matrix: one row per difference pinoOptions() once made. */
const MATRIX: Case[] = [
  {
    name: 'mixin: a string (pino refuses it at construction)',
    run: (make) => thrown(() => make({ mixin: 'x' } as unknown as LoggerOptions, lines())),
  },
  {
    name: 'mixin: returns undefined (pino throws on the call)',
    run: (make) => {
      const out = lines()
      const log = make({ mixin: () => undefined as unknown as object }, out)
      return { call: thrown(() => log.info('x')), lines: out.parsed() }
    },
  },
  {
    name: 'hooks.logMethod: receives pino’s own method',
    run: (make) => {
      const out = lines()
      const seen: unknown[] = []
      const log = make(
        {
          hooks: {
            logMethod(args, method) {
              seen.push([method.name, method.length])
              method.apply(this, args)
            },
          },
        },
        out,
      )
      log.info({ a: 1 }, 'x')
      log.warn('y')
      return { seen, lines: out.parsed() }
    },
  },
  {
    name: 'base: { app } with a metadata stream: lastTime is the time alone',
    run: (make) => {
      const seen: unknown[] = []
      const log = make(
        { base: { app: 'shop' } },
        metadataStream((self, s) => seen.push([self.lastTime, JSON.parse(s)])),
      )
      log.info('x')
      return seen
    },
  },
  {
    name: 'tracingChannel pino_asJson: the time argument is the time alone',
    run: (make) => {
      const times: unknown[] = []
      const stop = onAsJson((a) => times.push(a[3]))
      try {
        const out = lines()
        make({ base: { app: 'shop' } }, out).info('x')
        return { times, lines: out.parsed() }
      } finally {
        stop()
      }
    },
  },
  {
    name: 'base: { app }: a binding, seen by bindings() and formatters.bindings',
    run: (make) => {
      const out = lines()
      const given: unknown[] = []
      const log = make(
        {
          base: { app: 'shop', pid: 1, hostname: 'h' },
          formatters: {
            bindings: (b) => {
              given.push(b)
              return b
            },
          },
        },
        out,
      )
      log.child({ mod: 'db' }).info('x')
      return { bindings: log.bindings(), given, lines: out.parsed() }
    },
  },
  {
    name: 'formatters.bindings: an allowlist drops a base key',
    run: (make) => {
      const out = lines()
      make({ base: { app: 'shop', secret: 's', pid: 1 }, formatters: { bindings: (b) => ({ pid: b.pid }) } }, out).info(
        'x',
      )
      return out.parsed()
    },
  },
  {
    name: 'base: { err }, { level }, a BigInt and a circular value',
    run: (make) => {
      const err = new Error('boom')
      err.stack = 'Error: boom\n    at the test'
      const circular: Record<string, unknown> = { a: 1 }
      circular.self = circular
      const out = lines()
      const built = thrown(() =>
        make({ base: { err, level: 'x', n: 10n, circular } } as unknown as LoggerOptions, out).info('x'),
      )
      return { built, chunks: out.chunks }
    },
  },
  {
    name: 'mixin: one shared object, into which pino assigns each call’s fields',
    run: (make) => {
      const shared: Record<string, unknown> = { m: 1 }
      const out = lines()
      const log = make({ mixin: () => shared }, out)
      log.info({ a: 1 }, 'first')
      log.info('second')
      return { lines: out.parsed(), shared: { ...shared } }
    },
  },
  {
    name: 'mixinMergeStrategy without a mixin: never called',
    run: (make) => {
      let calls = 0
      const out = lines()
      const log = make(
        {
          mixinMergeStrategy: (a, b) => {
            calls++
            return Object.assign(b, a)
          },
        },
        out,
      )
      log.info({ a: 1 })
      return { calls, lines: out.parsed() }
    },
  },
  {
    name: 'mixinMergeStrategy with a mixin: applied as pino applies it',
    run: (make) => {
      const out = lines()
      make({ mixin: () => ({ m: 1, a: 0 }), mixinMergeStrategy: (call, mixed) => ({ ...call, ...mixed }) }, out).info({
        a: 1,
      })
      return out.parsed()
    },
  },
  ...(['iso', 1] as const).map(
    (timestamp): Case => ({
      name: `timestamp: ${JSON.stringify(timestamp)} (truthy, not a function: epoch time)`,
      run: (make) => {
        const out = lines()
        const built = thrown(() => make({ timestamp } as unknown as LoggerOptions, out).info('x'))
        return { built, lines: out.parsed() }
      },
    }),
  ),
  {
    name: 'an own __proto__ key in the logged object (JSON.parse of untrusted input)',
    run: (make) => {
      const out = lines()
      make({}, out).info(JSON.parse('{"__proto__":{"polluted":true},"a":1}'), 'x')
      return { chunks: out.chunks, polluted: ({} as Record<string, unknown>).polluted }
    },
  },
  {
    name: 'formatters.log: receives the caller’s own object',
    run: (make) => {
      const out = lines()
      const record = { a: 1 }
      const given: unknown[] = []
      make(
        {
          formatters: {
            log: (o) => {
              given.push(o === record)
              return o
            },
          },
        },
        out,
      ).info(record, 'x')
      return { given, lines: out.parsed() }
    },
    // formatters.log sees every enriched field, so it can drop or rename them:
    // it is handed a copy of the caller's object with those fields.
    enricher: (seen) => {
      expect((seen as { given: boolean[] }).given).toEqual([false])
    },
  },
  {
    name: 'a metadata stream: lastTime is the time alone when a serializer logs through a child',
    run: (make) => {
      const seen: unknown[] = []
      let nested: pino.Logger | undefined
      const log = make(
        {
          serializers: {
            a: (v: unknown) => {
              nested?.info('nested')
              return v
            },
          },
        },
        metadataStream((self, s) => seen.push([self.lastTime, JSON.parse(s)])),
      )
      // A child with serializers of its own: a view of its own, the same options.
      nested = log.child({ c: 1 }, { serializers: { b: (v: unknown) => v } })
      log.info({ a: 1 }, 'outer')
      // Deferred mode writes the nested line after the outer one (call order): compared by message.
      return seen.sort((x, y) =>
        String((x as [string, { msg: string }])[1].msg).localeCompare((y as [string, { msg: string }])[1].msg),
      )
    },
    // The enriched field is in each line and never in its lastTime.
    enricher: (seen) => {
      const rows = seen as Array<[string, Record<string, unknown>]>
      expect(rows.map(([t, line]) => [t, line.msg, line[FIELD]])).toEqual([
        ['1796000000000', 'nested', 'x'],
        ['1796000000000', 'outer', 'x'],
      ])
    },
  },
  {
    name: 'a metadata stream: lastObj is the caller’s own object',
    run: (make) => {
      const record = { a: 1 }
      const seen: unknown[] = []
      make(
        {},
        metadataStream((self) => seen.push(self.lastObj === record)),
      ).info(record, 'x')
      return seen
    },
  },
]

/** `seen` with the enricher's field removed wherever it is an object key. */
function blind(seen: unknown): unknown {
  if (typeof seen === 'string') return seen.replace(`,"${FIELD}":"x"`, '')
  if (Array.isArray(seen)) return seen.map(blind)
  if (typeof seen === 'object' && seen !== null && Object.getPrototypeOf(seen) === Object.prototype) {
    const out: Record<string, unknown> = {}
    for (const k of Object.keys(seen)) {
      if (k !== FIELD)
        Object.defineProperty(out, k, { value: blind((seen as Record<string, unknown>)[k]), enumerable: true })
    }
    return out
  }
  return seen
}

const plain: Make = (options, stream) => (stream === undefined ? pino(options) : pino(options, stream))
const through =
  (p: Pipeline, mode: 'snapshot' | 'deferred'): Make =>
  (options, stream) => {
    const built = p.pinoOptions({ ...options, mode })
    return stream === undefined ? pino(built) : pino(built, stream)
  }

describe.each(['snapshot', 'deferred'] as const)('pino drop-in, %s mode: the options matrix', (mode) => {
  describe.each(MATRIX)('$name', (c) => {
    it('an empty pipeline: exactly as plain pino', () => {
      const p = pipeline()
      expect(c.run(through(p, mode))).toEqual(c.run(plain))
    })

    it('one global enricher: as plain pino but for its field', async () => {
      const p = pipeline({ enrichers: [defineEnricher({ name: 'e', compute: () => ({ [FIELD]: 'x' }) })] })
      await p.ready()
      const seen = c.run(through(p, mode))
      if (c.enricher !== undefined) c.enricher(seen)
      else expect(blind(seen)).toEqual(c.run(plain))
    })
  })
})

/**
 * Child options matrix: what `logger.child(bindings, options)` does to a field
 * of the user's mixin, it does to the same field from a global enricher.
 */
const CHILD_OPTIONS: Array<{ name: string; options: pino.ChildLoggerOptions }> = [
  { name: 'redact', options: { redact: ['svc.secret'] } },
  { name: 'redact with a wildcard', options: { redact: ['*.secret'] } },
  { name: 'serializers', options: { serializers: { svc: (v: { name: string }) => ({ only: v.name }) } } },
  {
    name: 'formatters.log',
    options: {
      formatters: {
        log: (o: object) => {
          const { svc: _, ...rest } = o as Record<string, unknown>
          return { ...rest, svcSeen: true }
        },
      },
    },
  },
]

describe.each(['snapshot', 'deferred'] as const)('pino drop-in, %s mode: child options', (mode) => {
  const svc = { name: 'api', secret: 's' }
  it.each(CHILD_OPTIONS)('$name given to child() apply to an enriched field as to a mixin field', async (c) => {
    const expected = lines()
    const root = pino({ mixin: () => ({ svc }) }, expected)
    root.child({ mod: 'db' }, c.options).info('x')
    root.child({ mod: 'plain' }).info('y')

    const p = pipeline({ enrichers: [defineEnricher({ name: 'svc', compute: () => ({ svc }) })] })
    await p.ready()
    const out = lines()
    const log = pino(p.pinoOptions({ mode }), out)
    log.child({ mod: 'db' }, c.options).info('x')
    log.child({ mod: 'plain' }).info('y')
    expect(out.parsed()).toEqual(expected.parsed())
  })
})
