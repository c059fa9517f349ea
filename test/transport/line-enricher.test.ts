import { EventEmitter } from 'node:events'
import { Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import pino from 'pino'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { MAX_CONTEXT_VALUE_LENGTH } from '../../src/context/writer.js'
import { enrichmentOf } from '../../src/core/enrichment.js'
import { defineContextFields, defineEnricher, type EnrichContext } from '../../src/index.js'
import enrichTransport, { EnrichToDestination } from '../../src/transport/index.js'
import { LineEnricher, type Serializers } from '../../src/transport/line-enricher.js'
import { runChild } from '../helpers/child.js'
import { advanceBoth, deferred, manualClock, slowStart } from '../helpers/deferred.js'
import { duplicateKeys } from '../helpers/duplicate-keys.js'
import { trackPipelines } from '../helpers/pipelines.js'
import { sink } from '../helpers/sink.js'

const { pipeline, closePipelines } = trackPipelines()
afterEach(closePipelines)

// The capture as the main thread writes it: a space before the colon, which pino's serializer never writes.
const CAPTURE_KEY = '"@pino-enrich" '
const ctx = (c: Record<string, unknown>): string => `,${CAPTURE_KEY}:${JSON.stringify({ c })}`
const line = (time: number, capture: string, rest: string): string => `{"level":30,"time":${time}${capture}${rest}\n`
const HOST = ',"host":{"name":"box"}'

async function contextOnly(extra: Parameters<typeof pipeline>[0] = {}) {
  const p = pipeline({
    enrichers: [defineEnricher({ name: 'host', compute: () => ({ host: { name: 'box' } }) })],
    ...extra,
  })
  p.register(defineContextFields({ name: 'req', keys: { requestId: 'reqId', route: 'route' } }))
  await p.ready()
  return p
}

/** contextOnly plus a keyed `user` lookup that answers when the test says. */
async function withUserLookup() {
  const p = await contextOnly({ deadlineMs: 60_000 })
  const lookup = deferred<Record<string, unknown>>()
  p.register(
    defineEnricher({
      name: 'user',
      key: (c) => c.context?.userId as string | undefined,
      compute: () => lookup.promise,
      timeoutMs: 60_000,
    }),
  )
  return { p, lookup }
}

function collect(p: Awaited<ReturnType<typeof contextOnly>>) {
  const out: string[] = []
  const lines = new LineEnricher(enrichmentOf(p), (text) => out.push(text))
  return { lines, text: () => out.join('') }
}

describe('LineEnricher (the transport worker, in process)', () => {
  it('splices globals and context fields in after the time, byte for byte, and drops the capture', async () => {
    const p = await contextOnly()
    const { lines, text } = collect(p)
    const input =
      line(1, ctx({ requestId: 'r1' }), ',"pid":1,"msg":"a"}') +
      line(2, '', ',"pid":1,"msg":"no context"}') +
      line(3, ctx({ requestId: 'r2', route: '/a}{"b\\' }), ',"msg":"awkward"}') +
      line(4, ctx({ requestId: 'r2', route: '/a}{"b\\' }), ',"msg":"same again"}')
    lines.write(input)
    expect(text()).toBe(
      `{"level":30,"time":1${HOST},"reqId":"r1","pid":1,"msg":"a"}\n` +
        `{"level":30,"time":2${HOST},"pid":1,"msg":"no context"}\n` +
        `{"level":30,"time":3${HOST},"reqId":"r2","route":${JSON.stringify('/a}{"b\\')},"msg":"awkward"}\n` +
        `{"level":30,"time":4${HOST},"reqId":"r2","route":${JSON.stringify('/a}{"b\\')},"msg":"same again"}\n`,
    )
    for (const l of text().trim().split('\n')) expect(() => JSON.parse(l)).not.toThrow()
  })

  it('gives the same output however the input is cut into chunks', async () => {
    const p = await contextOnly()
    const input =
      line(1, ctx({ requestId: 'r1' }), ',"msg":"a"}') +
      'not json\n' +
      '\n' +
      line(2, ctx({ requestId: 'r2' }), ',"msg":"b"}') +
      `{"level":30,"time":3,"a":1${ctx({ requestId: 'r3' })},"msg":"capture further on"}\n`
    const whole = collect(p)
    whole.lines.write(input)
    const expected = whole.text()
    expect(expected).toContain('not json\n\n')
    expect(expected).toContain(`"time":3${HOST},"reqId":"r3","a":1,"msg":"capture further on"}`)
    for (let cut = 1; cut < input.length; cut++) {
      const split = collect(p)
      split.lines.write(input.slice(0, cut))
      split.lines.write(input.slice(cut))
      expect(split.text(), `cut at ${cut}`).toBe(expected)
    }
  })

  it('keeps a CRLF ending on a spliced line and ends a last line that has no newline', async () => {
    const p = await contextOnly()
    const { lines, text } = collect(p)
    lines.write(`{"level":30,"time":1${ctx({ requestId: 'r1' })},"msg":"crlf"}\r\n{"level":30,"time":2,"msg":"last"}`)
    expect(text()).toBe(`{"level":30,"time":1${HOST},"reqId":"r1","msg":"crlf"}\r\n`)
    await lines.end()
    expect(text()).toBe(
      `{"level":30,"time":1${HOST},"reqId":"r1","msg":"crlf"}\r\n{"level":30,"time":2${HOST},"msg":"last"}\n`,
    )
  })

  it('records global problems on spliced lines, and takes up new enrichers mid-stream', async () => {
    const p = await contextOnly()
    p.register(
      defineEnricher({
        name: 'region',
        compute: () => Promise.reject(new Error('metadata service down')),
        breaker: { failureThreshold: 1, halfOpenAfterMs: 3_600_000 },
      }),
    )
    await p.ready({ timeoutMs: 100 })
    const { lines, text } = collect(p)
    lines.write(line(1, ctx({ requestId: 'r1', userId: 'u1' }), ',"msg":"a"}'))
    p.register(defineContextFields({ name: 'user', keys: { userId: 'userId' } }))
    lines.write(line(2, ctx({ requestId: 'r1', userId: 'u1' }), ',"msg":"b"}'))
    const [a, b] = text()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(a).toMatchObject({ reqId: 'r1', enrich: { error: ['region'] } })
    expect(a).not.toHaveProperty('userId')
    expect(b).toMatchObject({ reqId: 'r1', userId: 'u1', enrich: { error: ['region'] } })
  })

  it('records an over-long context value as invalid on every line, in place as in process, with or without redact', async () => {
    const p = await contextOnly()
    const { lines, text } = collect(p)
    const long = 'x'.repeat(MAX_CONTEXT_VALUE_LENGTH + 1)
    const redacted = `,${CAPTURE_KEY}:${JSON.stringify({ c: { requestId: long, route: '/a' }, r: { paths: ['zzz'] } })}`
    lines.write(
      line(1, ctx({ requestId: long, route: '/a' }), ',"msg":"a"}') +
        line(2, ctx({ requestId: long, route: '/a' }), ',"msg":"b"}') +
        line(3, redacted, ',"msg":"c"}') +
        line(4, ctx({ requestId: 'r1', route: '/a' }), ',"msg":"d"}'),
    )
    const invalid = ',"enrich":{"invalid":["req"]}'
    expect(text()).toBe(
      `{"level":30,"time":1${HOST},"route":"/a"${invalid},"msg":"a"}\n` +
        `{"level":30,"time":2${HOST},"route":"/a"${invalid},"msg":"b"}\n` +
        `{"level":30,"time":3${HOST},"route":"/a"${invalid},"msg":"c"}\n` +
        `{"level":30,"time":4${HOST},"reqId":"r1","route":"/a","msg":"d"}\n`,
    )
    // Counted once a line, as in process.
    expect(p.stats().enrichers.find((e) => e.name === 'req')?.invalid).toBe(3)
  })

  it('holds lines behind one waiting on a keyed lookup, and lets them all out in order', async () => {
    const { p, lookup } = await withUserLookup()
    const { lines, text } = collect(p)
    lines.write(line(1, ctx({ requestId: 'r1', userId: 'u1' }), ',"msg":"waits"}'))
    lines.write(`${line(2, ctx({ requestId: 'r2' }), ',"msg":"behind"}')}not json\n`)
    expect(text()).toBe('')
    lookup.resolve({ user: { id: 'u1' } })
    await lines.end()
    const out = text().trim().split('\n')
    expect(out[0] && JSON.parse(out[0])).toMatchObject({ reqId: 'r1', user: { id: 'u1' }, msg: 'waits' })
    expect(out[1] && JSON.parse(out[1])).toMatchObject({ reqId: 'r2', msg: 'behind' })
    expect(out[2]).toBe('not json')
  })

  // Searching the rest of the chunk for a capture on each such line made this
  // quadratic: 50,000 lines took 10 s here instead of 0.1 s. The 5 s bound
  // leaves the linear pass a 50-fold margin.
  it('reads a large chunk of lines without a capture in one pass', { timeout: 5_000 }, async () => {
    const p = await contextOnly()
    const { lines, text } = collect(p)
    // Taken over several turns of the loop (at most 1,000 lines each): done says when.
    await new Promise<void>((done) => lines.write(line(1, '', ',"msg":"no context"}').repeat(50_000), done))
    expect(text().split('\n')).toHaveLength(50_001)
    expect(text().startsWith(`{"level":30,"time":1${HOST},"msg":"no context"}\n`)).toBe(true)
  })

  // Each such line was handed to JSON.parse, whose throw costs 5-10 us: 1,000,000 took 12-14 s here, and
  // 0.2-0.3 s once text that cannot open an object is not parsed. The 5 s bound leaves that a 20-fold margin.
  it('passes 1,000,000 plain-text and empty lines of one chunk through, each once, in order', {
    timeout: 5_000,
  }, async () => {
    const { p } = await withUserLookup()
    const { lines, text } = collect(p)
    const chunk = 'plain\n\n \r\n'.repeat(333_334)
    let calls = 0
    await new Promise<void>((done) =>
      lines.write(chunk, () => {
        calls++
        done()
      }),
    )
    await lines.settled()
    expect(calls).toBe(1)
    expect(text()).toBe(chunk)
  })

  // Joining the carried start of the line to every new chunk copied it again
  // each time: 24 MB in 16 KB chunks took about 7 s instead of 0.05 s. The 5 s
  // bound leaves the linear pass a wide margin.
  it('takes a long line arriving in many small chunks in one pass', { timeout: 5_000 }, async () => {
    const p = await contextOnly()
    const { lines, text } = collect(p)
    const long = line(1, ctx({ requestId: 'r1' }), `,"msg":"${'x'.repeat(24 * 2 ** 20)}"}`)
    for (let i = 0; i < long.length; i += 16_384) lines.write(long.slice(i, i + 16_384))
    await lines.end()
    expect(text()).toBe(long.replace(ctx({ requestId: 'r1' }), `${HOST},"reqId":"r1"`))
  })

  it("shares one frozen context among a request's lines: an enricher cannot change what later lines see", async () => {
    const p = await contextOnly()
    p.register(
      Object.assign(
        (c: { context?: Record<string, unknown> }) => {
          const context = c.context as Record<string, unknown>
          context.requestId = 'changed'
          return undefined
        },
        { enricherName: 'meddler' },
      ),
    )
    const { lines, text } = collect(p)
    lines.write(line(1, ctx({ requestId: 'r1' }), ',"msg":"a"}') + line(2, ctx({ requestId: 'r1' }), ',"msg":"b"}'))
    await lines.end()
    const out = text()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(out).toEqual([
      expect.objectContaining({ reqId: 'r1', msg: 'a', enrich: { error: ['meddler'] } }),
      expect.objectContaining({ reqId: 'r1', msg: 'b', enrich: { error: ['meddler'] } }),
    ])
  })

  it('passes a line whose capture is cut short through the general path, untouched when it is not JSON', async () => {
    const p = await contextOnly()
    const { lines, text } = collect(p)
    const broken = `{"level":30,"time":1,${CAPTURE_KEY}:{"c":{"requestId":"r1"}`
    lines.write(`${broken}\n`)
    expect(text()).toBe(`${broken}\n`)
  })
})

describe('pino-enrich/transport stream (in process)', () => {
  const enrichers = fileURLToPath(new URL('../fixtures/transport-context-only.mjs', import.meta.url))

  it('decodes Buffer chunks cut inside a multi-byte character, and ends with every line', async () => {
    const step = (await enrichTransport({ enrichers })) as unknown as NodeJS.ReadWriteStream
    const got: string[] = []
    const sink = new Writable({
      decodeStrings: false,
      write(chunk: string, _e, done) {
        got.push(chunk)
        done()
      },
    })
    step.pipe(sink)
    const bytes = Buffer.from(
      line(1, ctx({ requestId: 'ré-1' }), ',"msg":"héllo €"}') + line(2, ctx({ requestId: 'ré-1' }), ',"msg":"✓"}'),
    )
    const at = bytes.indexOf(Buffer.from('€')) + 1
    step.write(bytes.subarray(0, at))
    step.write(bytes.subarray(at))
    step.end()
    await new Promise((resolve) => sink.on('finish', resolve))
    expect(got.every((c) => typeof c === 'string')).toBe(true)
    const out = got
      .join('')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(out).toEqual([
      expect.objectContaining({ service: 'svc', requestId: 'ré-1', msg: 'héllo €' }),
      expect.objectContaining({ service: 'svc', requestId: 'ré-1', msg: '✓' }),
    ])
  })
})

describe("pinoOptions({ mode: 'transport' }): the main thread's capture", () => {
  it('captures the values of each line as they are when it is logged, however the store changes', () => {
    const p = pipeline()
    const out = sink()
    const log = pino(p.pinoOptions({ mode: 'transport', contextKeys: ['requestId', 'route', 'n'] }), out)
    const store: Record<string, unknown> = { requestId: 'r1' }
    log.info('outside')
    p.context.run(store, () => {
      log.info('a')
      log.info('b')
      store.route = '/users/:id'
      store.n = 7
      log.info('c')
      delete store.route
      log.info('d')
    })
    p.context.run({ requestId: 'r1', n: 7 }, () => log.info('another store, same values'))
    p.context.run({ requestId: 'r1', n: Number.NaN }, () => log.info('NaN has no JSON form'))
    const throwing = {
      requestId: 'r2',
      get route(): string {
        throw new Error('getter')
      },
    }
    p.context.run(throwing, () => expect(() => log.info('throwing getter')).not.toThrow())
    log.info('outside again')
    const captures = out.lines().map((l) => l['@pino-enrich'])
    // Every line carries one, empty outside a request: a key planted in a payload is never the first.
    expect(captures).toEqual([
      {},
      { c: { requestId: 'r1' } },
      { c: { requestId: 'r1' } },
      { c: { requestId: 'r1', route: '/users/:id', n: 7 } },
      { c: { requestId: 'r1', n: 7 } },
      { c: { requestId: 'r1', n: 7 } },
      { c: { requestId: 'r1' } },
      { c: { requestId: 'r2' } },
      {},
    ])
  })

  it("names the logger's binding keys with a request context, once per logger, and none without one", () => {
    const p = pipeline()
    const out = sink()
    const log = pino(p.pinoOptions({ mode: 'transport', base: { pid: 1, hostname: 'h', service: 's' } }), out)
    const child = log.child({ reqId: 'bound', nested: { reqId: 'not top level' } })
    const plain = pino(p.pinoOptions({ mode: 'transport' }), out)
    child.info('outside')
    p.context.run({ requestId: 'r1' }, () => {
      log.info('root')
      child.info('child')
      plain.info('pid and hostname only')
      child.setBindings({ tenant: 't1' })
      child.info('after setBindings')
      log.info('root again')
    })
    const captures = out.lines().map((l) => [l.msg, l['@pino-enrich']])
    expect(captures).toEqual([
      ['outside', {}],
      ['root', { c: { requestId: 'r1' }, b: ['service'] }],
      ['child', { c: { requestId: 'r1' }, b: ['service', 'reqId', 'nested'] }],
      ['pid and hostname only', { c: { requestId: 'r1' } }],
      ['after setBindings', { c: { requestId: 'r1' }, b: ['service', 'reqId', 'nested', 'tenant'] }],
      ['root again', { c: { requestId: 'r1' }, b: ['service'] }],
    ])
  })

  it("gives each line its own logger's capture while two or three loggers' lines alternate and values change", () => {
    const p = pipeline()
    const out = sink()
    const log = pino(p.pinoOptions({ mode: 'transport', contextKeys: ['requestId', 'route'] }), out)
    const requestLog = log.child({ reqId: 'bound' })
    const other = log.child({ tenant: 't' })
    const store: Record<string, unknown> = { requestId: 'r1' }
    p.context.run(store, () => {
      requestLog.info('a')
      log.info('b')
      requestLog.info('c')
      log.info('d')
      store.route = '/r'
      log.info('e')
      requestLog.info('f')
      other.info('g')
      log.info('h')
      requestLog.info('i')
    })
    log.info('outside')
    requestLog.info('outside, bound')
    const r1 = { requestId: 'r1' }
    const r2 = { requestId: 'r1', route: '/r' }
    expect(out.lines().map((l) => [l.msg, l['@pino-enrich']])).toEqual([
      ['a', { c: r1, b: ['reqId'] }],
      ['b', { c: r1 }],
      ['c', { c: r1, b: ['reqId'] }],
      ['d', { c: r1 }],
      ['e', { c: r2 }],
      ['f', { c: r2, b: ['reqId'] }],
      ['g', { c: r2, b: ['tenant'] }],
      ['h', { c: r2 }],
      ['i', { c: r2, b: ['reqId'] }],
      ['outside', {}],
      ['outside, bound', {}],
    ])
  })

  it('names at most 64 binding keys of at most 128 characters, as pino wrote them', () => {
    const p = pipeline()
    const out = sink()
    const log = pino(p.pinoOptions({ mode: 'transport', base: null }), out)
    const many = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`k${i}`, i]))
    const formatted = pino(p.pinoOptions({ mode: 'transport', formatters: { bindings: () => ({ reqId: 'r' }) } }), out)
    p.context.run({ requestId: 'r1' }, () => {
      log.child({ ['x'.repeat(129)]: 1, reqId: 'bound', ...many }).info('many')
      log.child({ 'a"b': 1 }).info('a quote in a key')
      formatted.info('formatted')
    })
    const [many1, quoted, shaped] = out.chunks
      .join('')
      .split('\n')
      .filter((l) => l.length > 0)
      .map(
        (l) =>
          JSON.parse(/"@pino-enrich" :(\{"c":\{[^}]*\}(?:,"b":\[[^\]]*\])?\})/.exec(l)?.[1] ?? '') as { b?: string[] },
      )
    expect(many1?.b).toEqual(['reqId', ...Object.keys(many).slice(0, 63)])
    expect(quoted?.b).toEqual(['a"b'])
    // formatters.bindings shapes what pino writes: the keys it wrote are named.
    expect(shaped?.b).toEqual(['reqId'])
  })

  it('adds the call time when pino writes a time of its own making', () => {
    const p = pipeline()
    const out = sink()
    const log = pino(p.pinoOptions({ mode: 'transport', timestamp: pino.stdTimeFunctions.isoTime }), out)
    const before = Date.now()
    log.info('outside')
    p.context.run({ requestId: 'r1' }, () => log.info('inside'))
    const [outside, inside] = out.lines().map((l) => l['@pino-enrich'] as { t: number; c?: unknown })
    expect(outside?.c).toBeUndefined()
    expect(inside?.c).toEqual({ requestId: 'r1' })
    for (const c of [outside, inside]) expect(c?.t).toBeGreaterThanOrEqual(before)
  })
})

describe("pinoOptions({ mode: 'transport' }): redact", () => {
  it('carries the redact option in the capture, and the worker censors enriched fields with it on the in-place path', async () => {
    const main = pipeline()
    const out = sink()
    const log = pino(main.pinoOptions({ mode: 'transport', redact: { paths: ['reqId', 'host.name'] } }), out)
    main.context.run({ requestId: 'r1', route: '/a' }, () => log.info('a'))
    log.info('outside')
    const written = out.chunks.join('')
    expect(out.lines().map((l) => l['@pino-enrich'])).toEqual([
      { c: { requestId: 'r1', route: '/a' }, r: { paths: ['reqId', 'host.name'] } },
      { r: { paths: ['reqId', 'host.name'] } },
    ])
    const p = await contextOnly()
    const { lines, text } = collect(p)
    lines.write(written)
    const [a, outside] = text()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(a).toMatchObject({ msg: 'a', reqId: '[Redacted]', host: { name: '[Redacted]' } })
    expect(outside).toMatchObject({ msg: 'outside', host: { name: '[Redacted]' } })
    expect(outside).not.toHaveProperty('reqId')
  })

  it('refuses a censor function at once: it cannot reach the worker thread', () => {
    const p = pipeline()
    expect(() => p.pinoOptions({ mode: 'transport', redact: { paths: ['a'], censor: () => 'x' } })).toThrow(
      /redact\.censor cannot be a function with mode 'transport'/,
    )
    expect(() => p.pinoOptions({ mode: 'transport', redact: { paths: 'a' } as never })).toThrow(TypeError)
  })
})

/** A SonicBoom as EnrichToDestination uses it, with the test's own write(). */
function fakeDestination(write: (text: string) => boolean) {
  const dest = Object.assign(new EventEmitter(), {
    destroyed: false,
    write,
    flush: (done: () => void) => done(),
    end() {
      process.nextTick(() => dest.emit('close'))
    },
    destroy() {
      dest.destroyed = true
    },
  })
  return dest
}

describe('pino-enrich/transport alone, onto its destination', () => {
  it('drops what still waits, without throwing, when its destination fails', async () => {
    const { p } = await withUserLookup()
    const dest = fakeDestination(() => true)
    const stream = new EnrichToDestination(p, dest)
    const failed = new Promise<Error>((resolve) => stream.on('error', resolve))
    stream.write(line(1, ctx({ requestId: 'r1', userId: 'u1' }), ',"msg":"waits"}'))
    dest.emit('error', new Error('EIO'))
    expect((await failed).message).toBe('EIO')
    // The write a late flush would have made after the failure would have thrown.
    dest.write = () => {
      throw new Error('SonicBoom destroyed')
    }
    await new Promise((resolve) => setImmediate(resolve))
    await new Promise((resolve) => setImmediate(resolve))
    expect(p.stats().records.dropped).toBe(1)
  })

  it('goes on taking input after a write made at a deadline found the destination full and it drained', async () => {
    const { p, lookup } = await withUserLookup()
    const written: string[] = []
    let full = true
    const dest = fakeDestination((text) => {
      written.push(text)
      // Full once, then drained at once with nobody waiting yet.
      if (!full) return true
      full = false
      process.nextTick(() => dest.emit('drain'))
      return false
    })
    const stream = new EnrichToDestination(p, dest)
    const wrote = (text: string) =>
      new Promise<void>((resolve, reject) => stream.write(text, (e) => (e ? reject(e) : resolve())))
    await wrote(line(1, ctx({ requestId: 'r1', userId: 'u1' }), ',"msg":"waits"}'))
    lookup.resolve({ user: { id: 'u1' } })
    await new Promise((resolve) => setImmediate(resolve))
    await new Promise((resolve) => setImmediate(resolve))
    expect(written.join('')).toContain('"msg":"waits"')
    await wrote(line(2, ctx({ requestId: 'r2' }), ',"msg":"after"}'))
    await new Promise<void>((resolve) => stream.end(resolve))
    expect(written.join('')).toContain('"msg":"after"')
  })
})

describe('pino-enrich/transport alone, onto a destination slower than its input', () => {
  it('flushes only once a line in a chunk that waited for the destination to drain is written', async () => {
    const { p, lookup } = await withUserLookup()
    const written: string[] = []
    // A slow pipe: every write fills it, and it drains at the next turn.
    const dest = fakeDestination((text) => {
      written.push(text)
      setImmediate(() => dest.emit('drain'))
      return false
    })
    const stream = new EnrichToDestination(p, dest)
    // Two chunks, as thread-stream hands them when the second is logged while the worker takes the first:
    // the first fills the destination, the second waits in the stream's buffer for it to drain.
    stream.write(line(1, ctx({ requestId: 'r1' }), ',"msg":"first"}'))
    stream.write(line(2, ctx({ requestId: 'r2', userId: 'u1' }), ',"msg":"second"}'))
    const flushed = new Promise<string>((resolve, reject) =>
      stream.flush((e) => (e ? reject(e) : resolve(written.join('')))),
    )
    // The lookup answers a few turns later: the second line is written then, before the flush may end.
    setImmediate(() => setImmediate(() => lookup.resolve({ user: { id: 'u1' } })))
    const atFlush = await flushed
    expect(atFlush).toContain('"msg":"first"')
    expect(atFlush).toContain('"user":{"id":"u1"},"reqId":"r2","msg":"second"')
    await new Promise<void>((resolve) => stream.end(resolve))
  })
})

describe('LineEnricher: only the capture the main thread wrote is read', () => {
  const planted = `,"@pino-enrich":${JSON.stringify({ c: { requestId: 'forged' } })}`

  it('leaves a payload key that looks like the capture in place, byte for byte, and reads no context from it', async () => {
    const p = await contextOnly()
    const { lines, text } = collect(p)
    const inputs = [
      line(1, '', `${planted},"msg":"top level, no capture"}`),
      line(2, ctx({ requestId: 'real' }), `${planted},"msg":"top level after the capture"}`),
      line(3, '', `,"body":{${planted.slice(1)}},"msg":"nested"}`),
      `{"level":30,"time":"2026-01-01T00:00:00.000Z"${planted},"msg":"iso time, no capture"}\n`,
    ]
    lines.write(inputs.join(''))
    expect(text()).toBe(
      `{"level":30,"time":1${HOST}${planted},"msg":"top level, no capture"}\n` +
        `{"level":30,"time":2${HOST},"reqId":"real"${planted},"msg":"top level after the capture"}\n` +
        `{"level":30,"time":3${HOST},"body":{${planted.slice(1)}},"msg":"nested"}\n` +
        `{"level":30${HOST},"time":"2026-01-01T00:00:00.000Z"${planted},"msg":"iso time, no capture"}\n`,
    )
  })

  it('reads the first capture on a line, the one written right after the time, and ignores one further on', async () => {
    const p = await contextOnly()
    const { lines, text } = collect(p)
    const second = ctx({ requestId: 'second' })
    lines.write(line(1, ctx({ requestId: 'first' }), `,"a":1${second},"msg":"two"}`))
    expect(text()).toBe(`{"level":30,"time":1${HOST},"reqId":"first","a":1${second},"msg":"two"}\n`)
  })
})

describe('LineEnricher: no key twice on a line', () => {
  const bound = (c: Record<string, unknown>, b: unknown): string => `,${CAPTURE_KEY}:${JSON.stringify({ c, b })}`
  const c = { requestId: 'r1', route: '/a' }
  const expectNoDuplicates = (text: string) => {
    for (const raw of text.trim().split('\n')) expect(duplicateKeys(raw), raw).toEqual([])
  }

  it("leaves out a context field whose key the capture names as bound, and keeps the logger's binding", async () => {
    const p = await contextOnly()
    const { lines, text } = collect(p)
    lines.write(
      line(1, bound(c, ['reqId']), ',"pid":1,"reqId":"bound","msg":"request.log"}') +
        line(2, bound(c, ['reqId', 'route', 'tenant']), ',"reqId":"bound","route":"/b","tenant":1,"msg":"all bound"}') +
        line(3, bound(c, ['tenant']), ',"tenant":1,"msg":"another key bound"}') +
        line(4, ctx(c), ',"msg":"app.log"}'),
    )
    expect(text()).toBe(
      `{"level":30,"time":1${HOST},"route":"/a","pid":1,"reqId":"bound","msg":"request.log"}\n` +
        `{"level":30,"time":2${HOST},"reqId":"bound","route":"/b","tenant":1,"msg":"all bound"}\n` +
        `{"level":30,"time":3${HOST},"reqId":"r1","route":"/a","tenant":1,"msg":"another key bound"}\n` +
        `{"level":30,"time":4${HOST},"reqId":"r1","route":"/a","msg":"app.log"}\n`,
    )
    expectNoDuplicates(text())
  })

  it('writes each line by its own capture while two captures alternate, and again after the globals change', async () => {
    const p = await contextOnly()
    const { lines, text } = collect(p)
    const withB = bound(c, ['reqId'])
    const input = [
      line(1, withB, ',"reqId":"bound","msg":"a"}'),
      line(2, ctx(c), ',"msg":"b"}'),
      line(3, withB, ',"reqId":"bound","msg":"c"}'),
      line(4, ctx(c), ',"msg":"d"}'),
    ]
    lines.write(input.join(''))
    p.register(defineEnricher({ name: 'zone', compute: () => ({ zone: 'z1' }) }))
    await p.ready()
    lines.write(input.join(''))
    const first =
      `{"level":30,"time":1${HOST},"route":"/a","reqId":"bound","msg":"a"}\n` +
      `{"level":30,"time":2${HOST},"reqId":"r1","route":"/a","msg":"b"}\n` +
      `{"level":30,"time":3${HOST},"route":"/a","reqId":"bound","msg":"c"}\n` +
      `{"level":30,"time":4${HOST},"reqId":"r1","route":"/a","msg":"d"}\n`
    expect(text()).toBe(first + first.replaceAll(HOST, `${HOST},"zone":"z1"`))
  })

  it("leaves it out on the queued path and under the logger's redact too", async () => {
    const { p, lookup } = await withUserLookup()
    const { lines, text } = collect(p)
    const redacted = `,${CAPTURE_KEY}:${JSON.stringify({ c, b: ['reqId'], r: { paths: ['route'] } })}`
    lines.write(
      line(1, bound({ ...c, userId: 'u1' }, ['reqId']), ',"reqId":"bound","msg":"waits"}') +
        line(2, bound(c, ['reqId']), ',"reqId":"bound","msg":"behind"}') +
        line(3, redacted, ',"reqId":"bound","msg":"redacted"}'),
    )
    expect(text()).toBe('')
    lookup.resolve({ user: { id: 'u1' } })
    await lines.end()
    expectNoDuplicates(text())
    expect(
      text()
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l)),
    ).toEqual([
      expect.objectContaining({ reqId: 'bound', route: '/a', user: { id: 'u1' }, msg: 'waits' }),
      expect.objectContaining({ reqId: 'bound', route: '/a', msg: 'behind' }),
      expect.objectContaining({ reqId: 'bound', route: '[Redacted]', msg: 'redacted' }),
    ])

    const direct = await contextOnly()
    const collected = collect(direct)
    collected.lines.write(line(1, redacted, ',"reqId":"bound","msg":"in place, redacted"}'))
    expect(collected.text()).toBe(
      `{"level":30,"time":1${HOST},"route":"[Redacted]","reqId":"bound","msg":"in place, redacted"}\n`,
    )
  })

  it('ignores a bound-keys list the main thread does not write, whole, and writes every context field', async () => {
    const p = await contextOnly()
    const { lines, text } = collect(p)
    const hostile: unknown[] = [
      'reqId',
      { 0: 'reqId', length: 1 },
      ['reqId', 1],
      ['reqId', null],
      ['reqId', 'x'.repeat(129)],
      ['reqId', ...Array.from({ length: 64 }, (_, i) => `k${i}`)],
      [],
    ]
    lines.write(hostile.map((b, i) => line(i, bound(c, b), ',"msg":"hostile"}')).join(''))
    const out = text().trim().split('\n')
    expect(out).toHaveLength(hostile.length)
    for (const [i, l] of out.entries()) {
      expect(l).toBe(`{"level":30,"time":${i}${HOST},"reqId":"r1","route":"/a","msg":"hostile"}`)
    }
    // At the bounds, a list is honoured.
    const edge = ['reqId', ...Array.from({ length: 63 }, (_, i) => `k${'x'.repeat(120)}${i}`)]
    lines.write(line(9, bound(c, edge), ',"msg":"at the bounds"}'))
    expect(text().trim().split('\n').at(-1)).toBe(`{"level":30,"time":9${HOST},"route":"/a","msg":"at the bounds"}`)
  })

  it('reads a capture of an older main thread, with no bound keys, as before', async () => {
    const p = await contextOnly()
    const { lines, text } = collect(p)
    lines.write(line(1, ctx(c), ',"msg":"old capture"}'))
    expect(text()).toBe(`{"level":30,"time":1${HOST},"reqId":"r1","route":"/a","msg":"old capture"}\n`)
  })

  it('never honours bound keys planted in a payload or in a capture further on the line', async () => {
    const p = await contextOnly()
    const { lines, text } = collect(p)
    const forged = { c: { requestId: 'forged' }, b: ['reqId', 'route'] }
    const unspaced = `,"@pino-enrich":${JSON.stringify(forged)}`
    const spaced = `,${CAPTURE_KEY}:${JSON.stringify(forged)}`
    lines.write(
      line(1, ctx(c), `${unspaced},"msg":"planted at the top level"}`) +
        line(2, ctx(c), `,"body":{${unspaced.slice(1)}},"msg":"planted in a payload"}`) +
        line(3, ctx(c), `,"a":1${spaced},"msg":"a capture further on"}`),
    )
    expect(text()).toBe(
      `{"level":30,"time":1${HOST},"reqId":"r1","route":"/a"${unspaced},"msg":"planted at the top level"}\n` +
        `{"level":30,"time":2${HOST},"reqId":"r1","route":"/a","body":{${unspaced.slice(1)}},"msg":"planted in a payload"}\n` +
        `{"level":30,"time":3${HOST},"reqId":"r1","route":"/a","a":1${spaced},"msg":"a capture further on"}\n`,
    )
  })
})

describe('LineEnricher: memory', () => {
  // Its cache of capture texts used to hold slices of the chunks they came
  // in, and so every such chunk: 41 MB here for 6,000 requests of four
  // 12 KB lines (up to 1,024 chunks of 48 KB), 0.4 MB with copies.
  it('holds no more than its cache after 6,000 requests with 12 KB lines (child process)', async () => {
    const r = await runChild('transport-heap.ts', ['6000', '12000'], { timeoutMs: 60_000 })
    expect(r.stderr).toBe('')
    const { heapMB, written } = JSON.parse(r.stdout) as { heapMB: number; written: number }
    expect(written).toBeGreaterThan(6_000 * 4 * 12_000)
    expect(heapMB).toBeLessThan(8)
  })
})

describe('LineEnricher: serializers for the fields it adds', () => {
  const cyclic: Record<string, unknown> = {}
  cyclic.self = cyclic
  const results: Record<string, unknown> = {
    undefined: undefined,
    'a function': () => 1,
    'a BigInt': 10n,
    'a cyclic object': cyclic,
    'an object whose toJSON throws': {
      toJSON() {
        throw new Error('no JSON')
      },
    },
  }
  for (const [name, result] of Object.entries(results)) {
    it(`leaves out a key whose serializer returns ${name}, every line still JSON, with or without redact`, async () => {
      const p = await contextOnly()
      const out: string[] = []
      const lines = new LineEnricher(enrichmentOf(p), (text) => out.push(text), { host: () => result })
      const redacted = `,${CAPTURE_KEY}:${JSON.stringify({ c: { requestId: 'r1' }, r: { paths: ['x'] } })}`
      lines.write(
        line(1, ctx({ requestId: 'r1' }), ',"msg":"a"}') +
          line(2, redacted, ',"msg":"b"}') +
          line(3, `,${CAPTURE_KEY}:{}`, ',"msg":"c"}'),
      )
      await lines.settled()
      const written = out.join('').trim().split('\n')
      expect(written).toHaveLength(3)
      expect(written.map((l) => JSON.parse(l) as Record<string, unknown>)).toEqual([
        { level: 30, time: 1, reqId: 'r1', msg: 'a' },
        { level: 30, time: 2, reqId: 'r1', msg: 'b' },
        { level: 30, time: 3, msg: 'c' },
      ])
    })
  }
})

describe('the deadline of a line that waits, in the worker', () => {
  afterEach(() => {
    vi.useRealTimers()
  })

  it('counts from when the line was taken: a compute whose synchronous start takes 8 ms leaves the line 2 ms of its 10', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const clock = manualClock()
    const p = pipeline({
      clock,
      deadlineMs: 10,
      enrichers: [
        defineEnricher({
          name: 'user',
          key: (c) => c.record.uid as string,
          compute: slowStart<Record<string, unknown>>(clock, 8),
          timeoutMs: 60_000,
        }),
      ],
    })
    await p.ready()
    const out: string[] = []
    const lines = new LineEnricher(enrichmentOf(p), (text) => out.push(text))
    lines.write('{"level":30,"time":1,"uid":"u1","msg":"first request"}\n', () => {})
    await advanceBoth(clock, 1)
    expect(out).toEqual([])
    await advanceBoth(clock, 1)
    expect(out.map((l) => JSON.parse(l))).toEqual([
      { level: 30, time: 1, enrich: { timeout: ['user'] }, uid: 'u1', msg: 'first request' },
    ])
    expect(p.stats().records.maxAddedDelayMs).toBe(10)
  })
})

describe('a backlog of megabytes handed over in one chunk', () => {
  it('is taken over several turns of the loop: lookups that answer at the next turn reach every line after the first of each key', async () => {
    // Taking a line costs time: this clock moves on a little at every read, as
    // a real one does while a chunk is taken. 20,000 lines take 40 ms or more
    // of it, four deadlines; one turn's lines a few ms.
    let t = 1_000
    let reads = 0
    const clock = {
      now: () => {
        reads++
        t += 0.002
        return t
      },
    }
    const p = pipeline({
      clock,
      deadlineMs: 10,
      enrichers: [
        defineEnricher({
          name: 'user',
          key: (c) => c.record.uid as string,
          // The backend answers as soon as the loop turns.
          compute: (id: string) => new Promise<Record<string, unknown>>((r) => setImmediate(() => r({ user: { id } }))),
          timeoutMs: 60_000,
        }),
      ],
    })
    await p.ready()
    const out: string[] = []
    const lines = new LineEnricher(enrichmentOf(p), (text) => out.push(text))
    const N = 20_000
    const chunk = Array.from({ length: N }, (_, i) => `{"level":30,"time":${i},"uid":"u${i % 100}","msg":"m"}\n`).join(
      '',
    )
    const taken = deferred<void>()
    reads = 0
    lines.write(chunk, () => taken.resolve())
    await taken.promise
    await lines.settled()
    const written = out
      .join('')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { uid: string; user?: unknown; time: number })
    expect(written.map((l) => l.time)).toEqual(Array.from({ length: N }, (_, i) => i))
    const seen = new Set<string>()
    let without = 0
    for (const l of written) {
      if (seen.has(l.uid) && l.user === undefined) without++
      seen.add(l.uid)
    }
    // Taken in one go, 18,903 of the 20,000 went out without their user.
    expect(without).toBeLessThan(N / 100)
    expect(reads / N).toBeLessThan(4)
  })
})

describe('LineEnricher: a line whose keyed values are all cached goes out in place', () => {
  const NOTE = 'quote " backslash \\ newline \n separator \u2028 </script>'

  /**
   * The same input, in phases, through a pipeline of three keyed enrichers on
   * an injected clock. `gathered` adds a function enricher that adds nothing:
   * every line then takes the gathered path, the reference the in-place path
   * must match byte for byte.
   */
  async function run(gathered: boolean, serializers?: Serializers) {
    let t = 1_000_000
    const clock = { now: () => t }
    const calls: string[] = []
    const keyed = (name: string, from: string, extra: { minLevel?: 'info' } = {}) =>
      defineEnricher({
        name,
        key: (c) => {
          calls.push(`${name} ${c.time}`)
          const v = c.context?.[from]
          if (v === 'throw') throw new Error('key failed')
          return v as string | undefined
        },
        // A key() result that is a number reaches compute as it is.
        compute: (id: unknown) => {
          if (id === 'bad') throw new Error('backend down')
          return { [name]: { id: String(id).slice(0, 20), note: NOTE } }
        },
        cache: { ttlMs: 1_000, staleMs: 10_000 },
        ...extra,
      })
    const p = pipeline({
      clock,
      deadlineMs: 60_000,
      enrichers: [defineEnricher({ name: 'host', compute: () => ({ host: { name: 'box' } }) })],
    })
    p.register(defineContextFields({ name: 'req', keys: { requestId: 'reqId' } }))
    p.register(keyed('user', 'userId'))
    p.register(keyed('tenant', 'tenantId'))
    p.register(keyed('org', 'orgId', { minLevel: 'info' }))
    if (gathered) p.register(() => undefined)
    await p.ready()
    const e = enrichmentOf(p)
    const gather = vi.spyOn(e.collect, 'gather')
    const out: string[] = []
    const lines = new LineEnricher(e, (text) => out.push(text), serializers)
    let time = 0
    const next = (c: Record<string, unknown>, level = 30, capture = ctx(c)): string =>
      `{"level":${level},"time":${++time}${capture},"msg":"m${time}"}\n`
    const all = { requestId: 'r1', userId: 'u1', tenantId: 't1', orgId: 'o1' }
    const redacted = `,${CAPTURE_KEY}:${JSON.stringify({ c: all, r: { paths: ['user.note'] } })}`
    const warm = (): string =>
      next(all) +
      next({ userId: 'bad' }) +
      next({ userId: 'throw', tenantId: 't1' }) +
      next({ userId: { id: 1 }, tenantId: 't1' }) +
      next({ userId: 7 }) +
      next({ userId: '__proto__' }) +
      next({ userId: 'x'.repeat(300) }) +
      next(all, 20) +
      next(all, 30, redacted) +
      next({}) +
      next(all, 30, '') +
      // The tenant is missing between two cached values: gathered from where the read stopped.
      next({ ...all, tenantId: `t${time}` }) +
      // All cached, but behind the line waiting: queued too.
      next(all)
    const counts: number[] = []
    const phase = async (input: string): Promise<void> => {
      lines.write(input)
      await lines.settled()
      counts.push(gather.mock.calls.length)
      gather.mockClear()
    }
    // Cold: every value is missed, and 'bad' fails into the error tier.
    await phase(next(all) + next({ userId: 'bad' }))
    await phase(warm())
    // Everything warm() missed is cached now.
    await phase(warm())
    // Past ttlMs: the stale value is served, and a refresh started.
    t += 1_500
    await phase(next(all) + next(all))
    // The refresh has landed: fresh again.
    await phase(next(all))
    return { text: out.join(''), calls, time, counts }
  }

  for (const [name, serializers] of [
    ['', undefined],
    [' and serializers', { user: (u: unknown) => ({ ...(u as object), seen: true }) }],
  ] as const) {
    it(`writes every line as the gathered path does: hits, misses between them, stale, failing, unusable and hostile keys, redact${name}`, async () => {
      const inPlace = await run(false, serializers)
      const reference = await run(true, serializers)
      expect(inPlace.text).toBe(reference.text)
      const written = inPlace.text
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>)
      expect(written.map((l) => l.msg)).toEqual(Array.from({ length: inPlace.time }, (_, i) => `m${i + 1}`))
      const byMsg = (n: number) => written[n - 1] as Record<string, unknown>
      const userNote = serializers === undefined ? {} : { seen: true }
      // The second warm() pass: m16 to m28.
      expect(byMsg(16)).toEqual({
        level: 30,
        time: 16,
        host: { name: 'box' },
        user: { id: 'u1', note: NOTE, ...userNote },
        tenant: { id: 't1', note: NOTE },
        org: { id: 'o1', note: NOTE },
        reqId: 'r1',
        msg: 'm16',
      })
      expect(byMsg(17)).toMatchObject({ enrich: { error: ['user'] } })
      expect(byMsg(18)).toMatchObject({ enrich: { invalid: ['user'] }, tenant: { id: 't1' } })
      expect(byMsg(19)).toMatchObject({ enrich: { invalid: ['user'] }, tenant: { id: 't1' } })
      expect(byMsg(20)).toMatchObject({ user: { id: '7' } })
      expect(byMsg(21)).toMatchObject({ user: { id: '__proto__' } })
      expect(byMsg(22)).toMatchObject({ user: { id: 'x'.repeat(20) } })
      expect(byMsg(23)).not.toHaveProperty('org')
      expect(byMsg(24)).toMatchObject({ user: { id: 'u1', note: '[Redacted]', ...userNote } })
      expect(byMsg(25)).toEqual({ level: 30, time: 25, host: { name: 'box' }, msg: 'm25' })
      expect(byMsg(27)).toMatchObject({ user: { id: 'u1' }, tenant: { id: 't26' }, org: { id: 'o1' } })
      expect(byMsg(29)).toMatchObject({ user: { id: 'u1' }, enrich: { stale: ['user', 'tenant', 'org'] } })
      expect(byMsg(30)).toMatchObject({ enrich: { stale: ['user', 'tenant', 'org'] } })
      expect(byMsg(31)).not.toHaveProperty('enrich')
      // In place, only a line with a value to wait for, and those behind it, are gathered: from the first
      // user 7 on in the first warm() pass, the new tenant and the line after it in the second.
      expect(inPlace.counts).toEqual([2, 9, 2, 0, 0])
      expect(reference.counts).toEqual([2, 13, 13, 2, 1])
    })
  }

  it("calls each enricher's key() once per line, in place and gathered from a missing value on", async () => {
    const { calls, time } = await run(false)
    expect(new Set(calls).size).toBe(calls.length)
    // Every line calls user and tenant; org too but at debug (m10 and m23).
    expect(calls).toHaveLength(3 * time - 2)
    const reference = await run(true)
    expect(reference.calls).toEqual(calls)
  })

  it('calls key() once for a line written at its deadline, and for the cached lines held behind it', async () => {
    vi.useFakeTimers()
    try {
      let t = 1_000
      const clock = { now: () => t }
      const calls: number[] = []
      const p = pipeline({
        clock,
        deadlineMs: 10,
        enrichers: [
          defineEnricher({
            name: 'user',
            key: (c) => {
              calls.push(c.time)
              return c.context?.userId as string | undefined
            },
            // u1 answers at once; any other user hangs past every deadline.
            compute: (id: string) => (id === 'u1' ? { user: { id } } : new Promise<never>(() => {})),
            timeoutMs: 60_000,
          }),
        ],
      })
      await p.ready()
      const { lines, text } = collect(p)
      lines.write(line(1, ctx({ userId: 'u1' }), ',"msg":"a"}'))
      await vi.advanceTimersByTimeAsync(0)
      lines.write(
        line(2, ctx({ userId: 'u1' }), ',"msg":"b"}') +
          line(3, ctx({ userId: 'u2' }), ',"msg":"c"}') +
          line(4, ctx({ userId: 'u1' }), ',"msg":"d"}'),
      )
      expect(text().trim().split('\n')).toHaveLength(2)
      t += 20
      await vi.advanceTimersByTimeAsync(20)
      const written = text()
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>)
      expect(written.map((l) => [l.msg, l.enrich])).toEqual([
        ['a', undefined],
        ['b', undefined],
        ['c', { timeout: ['user'] }],
        ['d', undefined],
      ])
      expect(calls).toEqual([1, 2, 3, 4])
    } finally {
      vi.useRealTimers()
    }
  })

  it('records an async key() as invalid, in place and in a snapshot, and leaves no rejection unhandled', async () => {
    const p = pipeline({ deadlineMs: 60_000, enrichers: [] })
    p.register(
      defineEnricher({
        name: 'user',
        // A mistake to expect: an async key(), here one whose promise rejects.
        key: (async (c: { context?: Record<string, unknown> }) => {
          throw new Error(`no key for ${String(c.context?.userId)}`)
        }) as never,
        compute: (id: string) => ({ user: { id } }),
      }),
    )
    await p.ready()
    const { lines, text } = collect(p)
    lines.write(line(1, ctx({ userId: 'u1' }), ',"msg":"a"}') + line(2, ctx({ userId: 'u2' }), ',"msg":"b"}'))
    await lines.settled()
    const out = sink()
    pino(p.pinoOptions(), out).info('snapshot')
    // The rejections are observed a turn later: an unhandled one fails the run.
    await new Promise<void>((resolve) => setImmediate(resolve))
    const written = [
      ...text()
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
      ...out.lines(),
    ]
    expect(written.map((l) => [l.msg, l.enrich, l.user])).toEqual([
      ['a', { invalid: ['user'] }, undefined],
      ['b', { invalid: ['user'] }, undefined],
      ['snapshot', { invalid: ['user'] }, undefined],
    ])
  })

  it("reads a serializer's output once: one that throws when read again costs no line, and leaves nothing to the next", async () => {
    const p = pipeline({ deadlineMs: 60_000, enrichers: [] })
    p.register(
      defineEnricher({
        name: 'user',
        key: (c) => c.context?.userId as string | undefined,
        compute: (id: string) => ({ user: { id } }),
      }),
    )
    await p.ready()
    const out: string[] = []
    const serializers: Serializers = {
      // Each result can be read once only: a second read of `id` throws.
      user: (u: unknown) => {
        let reads = 0
        const id = (u as { id: string }).id
        return {
          get id() {
            if (reads++ !== 0) throw new Error('read twice')
            return id
          },
        }
      },
    }
    const lines = new LineEnricher(enrichmentOf(p), (text) => out.push(text), serializers)
    lines.write(line(1, ctx({ userId: 'u1' }), ',"msg":"gathered"}'))
    await lines.settled()
    // u1 is cached now: in place, then a line with no user at all.
    expect(() =>
      lines.write(line(2, ctx({ userId: 'u1' }), ',"msg":"in place"}') + line(3, ctx({}), ',"msg":"no user"}')),
    ).not.toThrow()
    await lines.settled()
    const written = out
      .join('')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(written.map((l) => [l.msg, l.user])).toEqual([
      ['gathered', { id: 'u1' }],
      ['in place', { id: 'u1' }],
      ['no user', undefined],
    ])
  })

  it("gives key() a context of the line's own: one a key() keeps still reads its own line after later lines went out", async () => {
    const p = await contextOnly()
    const kept: Array<{ time: number; userId: unknown; msg: unknown }> = []
    const seen: EnrichContext[] = []
    p.register(
      defineEnricher({
        name: 'user',
        key: (c) => {
          seen.push(c)
          return c.context?.userId as string | undefined
        },
        compute: (id: string) => ({ user: { id } }),
      }),
    )
    const { lines, text } = collect(p)
    lines.write(line(1, ctx({ userId: 'u1' }), ',"msg":"first"}'))
    await lines.settled()
    // u1 is cached: these go out in place, in one chunk.
    lines.write(
      line(2, ctx({ userId: 'u1' }), ',"msg":"second"}') +
        line(3, ctx({ userId: 'u1', requestId: 'r3' }), ',"msg":"third"}') +
        line(4, '', ',"msg":"fourth"}'),
    )
    await lines.settled()
    expect(text().trim().split('\n')).toHaveLength(4)
    for (const c of seen) kept.push({ time: c.time, userId: c.context?.userId, msg: c.record.msg })
    expect(kept).toEqual([
      { time: 1, userId: 'u1', msg: 'first' },
      { time: 2, userId: 'u1', msg: 'second' },
      { time: 3, userId: 'u1', msg: 'third' },
      { time: 4, userId: undefined, msg: 'fourth' },
    ])
    expect(new Set(seen).size).toBe(4)
  })

  it('reads a cached value that expired on the clock between two lines as gone: the next line waits for its compute', async () => {
    let t = 1_000_000
    const p = pipeline({ clock: { now: () => t }, deadlineMs: 60_000 })
    let n = 0
    p.register(
      defineEnricher({
        name: 'user',
        key: (c) => c.context?.userId as string | undefined,
        compute: (id: string) => ({ user: { id, n: ++n } }),
        cache: { ttlMs: 1_000, staleMs: 1_000, jitter: 0 },
      }),
    )
    await p.ready()
    const e = enrichmentOf(p)
    const gather = vi.spyOn(e.collect, 'gather')
    const out: string[] = []
    const lines = new LineEnricher(e, (text) => out.push(text))
    const next = (i: number): string => line(i, ctx({ userId: 'u1' }), `,"msg":"m${i}"}`)
    lines.write(next(1))
    await lines.settled()
    lines.write(next(2) + next(3))
    await lines.settled()
    expect(gather).toHaveBeenCalledTimes(1)
    // Past ttlMs and staleMs: nothing to serve, the line waits for a new compute.
    t += 2_000
    lines.write(next(4) + next(5))
    expect(out.join('').trim().split('\n')).toHaveLength(3)
    await lines.settled()
    expect(gather).toHaveBeenCalledTimes(3)
    const written = out
      .join('')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { msg: string; user?: { n: number }; enrich?: unknown })
    expect(written.map((l) => [l.msg, l.user?.n, l.enrich])).toEqual([
      ['m1', 1, undefined],
      ['m2', 1, undefined],
      ['m3', 1, undefined],
      ['m4', 2, undefined],
      ['m5', 2, undefined],
    ])
  })

  it('does not let an all-cached line overtake one waiting on a lookup', async () => {
    const p = await contextOnly({ deadlineMs: 60_000 })
    const answers = new Map<string, ReturnType<typeof deferred<Record<string, unknown>>>>()
    p.register(
      defineEnricher({
        name: 'user',
        key: (c) => c.context?.userId as string | undefined,
        compute: (id: string) => {
          const d = deferred<Record<string, unknown>>()
          answers.set(id, d)
          return d.promise
        },
        timeoutMs: 60_000,
      }),
    )
    const { lines, text } = collect(p)
    lines.write(line(1, ctx({ requestId: 'r1', userId: 'u1' }), ',"msg":"first"}'))
    answers.get('u1')?.resolve({ user: { id: 'u1' } })
    await lines.settled()
    expect(text().split('\n')).toHaveLength(2)
    // u1 is cached now; u2 waits, and the u1 lines after it have everything at hand.
    lines.write(line(2, ctx({ requestId: 'r2', userId: 'u2' }), ',"msg":"waits"}'))
    lines.write(line(3, ctx({ requestId: 'r3', userId: 'u1' }), ',"msg":"cached"}'))
    lines.write(line(4, ctx({ requestId: 'r4', userId: 'u1' }), ',"msg":"cached too"}'))
    expect(text().split('\n')).toHaveLength(2)
    answers.get('u2')?.resolve({ user: { id: 'u2' } })
    await lines.settled()
    const msgs = text()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { msg: string; user?: { id: string } })
    expect(msgs.map((m) => [m.msg, m.user?.id])).toEqual([
      ['first', 'u1'],
      ['waits', 'u2'],
      ['cached', 'u1'],
      ['cached too', 'u1'],
    ])
  })
})
