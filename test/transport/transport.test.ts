import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import v8 from 'node:v8'
import { runInNewContext } from 'node:vm'
import { context, type SpanContext } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { AlwaysOffSampler, BasicTracerProvider } from '@opentelemetry/sdk-trace-base'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { createPipeline } from '../../src/index.js'
import { runChild } from '../helpers/child.js'

const dir = mkdtempSync(join(tmpdir(), 'pino-enrich-transport-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const ENRICHERS = './test/fixtures/transport-enrichers.mjs'
const QUICK_START = './test/fixtures/transport-quick-start.mjs'
let n = 0

function readLines(file: string): Array<Record<string, unknown>> {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as Record<string, unknown>)
}

/** Ends a transport and waits until its worker has written and closed everything. */
async function finish(transport: ReturnType<typeof pino.transport>): Promise<void> {
  const closed = once(transport, 'close')
  transport.end()
  await closed
}

function pipelineTransport(file: string, options: Record<string, unknown> = {}) {
  return pino.transport({
    pipeline: [
      { target: 'pino-enrich/transport', options: { enrichers: ENRICHERS, deadlineMs: 50, ...options } },
      { target: 'pino/file', options: { destination: file } },
    ],
  })
}

describe('pino-enrich/transport (real worker threads)', () => {
  it('enriches in the worker with the request context captured on the main thread, in arrival order', async () => {
    const file = join(dir, `t${++n}.ndjson`)
    const enrich = createPipeline()
    const transport = pipelineTransport(file)
    const log = pino(enrich.pinoOptions({ mode: 'transport' }), transport)
    log.info('outside')
    enrich.context.run({ requestId: 'r1', userId: 'u1' }, () => {
      for (let i = 0; i < 100; i++) log.info({ i }, 'inside')
    })
    await finish(transport)
    const lines = readLines(file)
    expect(lines).toHaveLength(101)
    expect(lines[0]).toMatchObject({ host: { name: 'worker-box' }, msg: 'outside' })
    expect(lines[0]?.requestId).toBeUndefined()
    expect(lines.slice(1).map((l) => l.i)).toEqual(Array.from({ length: 100 }, (_, i) => i))
    for (const line of lines.slice(1)) {
      expect(line).toMatchObject({ requestId: 'r1', user: { id: 'u1', name: 'name-u1' }, host: { name: 'worker-box' } })
      expect(line).not.toHaveProperty('@pino-enrich')
      expect(line.pid).toBe(process.pid)
    }
  })

  it('captures only the context keys it is told to, and passes lines of other shapes through the general path', async () => {
    const file = join(dir, `t${++n}.ndjson`)
    const enrich = createPipeline()
    const transport = pipelineTransport(file)
    const log = pino(enrich.pinoOptions({ mode: 'transport', contextKeys: ['requestId', 'tenant'] }), transport)
    const iso = pino(enrich.pinoOptions({ mode: 'transport', timestamp: pino.stdTimeFunctions.isoTime }), transport)
    enrich.context.run({ requestId: 'r"1\n', userId: 'u1', tenant: 7 }, () => {
      log.info('custom keys')
      iso.info('iso time')
    })
    await finish(transport)
    const [custom, isoLine] = readLines(file)
    expect(custom).toMatchObject({ requestId: 'r"1\n', host: { name: 'worker-box' }, msg: 'custom keys' })
    // userId was not captured, so the keyed user lookup had nothing to look up.
    expect(custom).not.toHaveProperty('user')
    expect(isoLine).toMatchObject({ requestId: 'r"1\n', user: { id: 'u1' }, msg: 'iso time' })
    expect(typeof isoLine?.time).toBe('string')
    expect(isoLine).not.toHaveProperty('@pino-enrich')
  })

  it('writes lines whose user is cached in place, in order behind lines waiting on a lookup or past their deadline', async () => {
    const file = join(dir, `t${++n}.ndjson`)
    const enrich = createPipeline()
    const transport = pipelineTransport(file, { enrichers: './test/fixtures/transport-keyed.mjs', deadlineMs: 500 })
    const log = pino(enrich.pinoOptions({ mode: 'transport' }), transport)
    const users = ['u1', 'u2', 'hang', 'u3']
    for (let i = 0; i < 2_000; i++) {
      const userId = users[i % 500 === 250 ? 2 : i < 1_000 ? i % 2 : 1 + (i % 3 === 0 ? 2 : 0)] as string
      enrich.context.run({ requestId: `r${i}`, userId }, () => log.info({ i }, 'line'))
    }
    await finish(transport)
    const lines = readLines(file)
    expect(lines.map((l) => l.i)).toEqual(Array.from({ length: 2_000 }, (_, i) => i))
    for (const line of lines) {
      const i = line.i as number
      expect(line).toMatchObject({ host: { name: 'worker-box' }, requestId: `r${i}` })
      if (i % 500 === 250) expect(line).toMatchObject({ enrich: { timeout: ['user'] } })
      else expect(line.user, `line ${i}`).toMatchObject({ id: expect.stringMatching(/^u[123]$/) })
      expect(line).not.toHaveProperty('@pino-enrich')
    }
  })

  it('writes a line whose enricher hangs by its deadline, recording the timeout, without holding back later lines', async () => {
    const file = join(dir, `t${++n}.ndjson`)
    const enrich = createPipeline()
    const transport = pipelineTransport(file, { deadlineMs: 30 })
    const log = pino(enrich.pinoOptions({ mode: 'transport' }), transport)
    enrich.context.run({ requestId: 'r-h', userId: 'hang' }, () => log.info('hangs'))
    log.info('after')
    await finish(transport)
    const lines = readLines(file)
    expect(lines.map((l) => l.msg)).toEqual(['hangs', 'after'])
    expect(lines[0]).toMatchObject({ requestId: 'r-h', enrich: { timeout: ['user'] } })
  })

  it('hands its lines to a following step built on pino-abstract-transport, as pino-pretty and shippers are', async () => {
    const file = join(dir, `t${++n}.ndjson`)
    const enrich = createPipeline()
    const transport = pino.transport({
      pipeline: [
        { target: 'pino-enrich/transport', options: { enrichers: './test/fixtures/transport-context-only.mjs' } },
        { target: fileURLToPath(new URL('../fixtures/shipper.mjs', import.meta.url)) },
        { target: 'pino/file', options: { destination: file } },
      ],
    })
    const log = pino(enrich.pinoOptions({ mode: 'transport' }), transport)
    log.info('outside')
    enrich.context.run({ requestId: 'r-ship' }, () => {
      for (let i = 0; i < 1_000; i++) log.info({ i }, 'inside ✓')
    })
    await finish(transport)
    const lines = readLines(file)
    expect(lines).toHaveLength(1_001)
    expect(lines[0]).toMatchObject({ shipped: true, service: 'svc', msg: 'outside' })
    expect(lines[0]).not.toHaveProperty('requestId')
    expect(lines.slice(1).map((l) => l.i)).toEqual(Array.from({ length: 1_000 }, (_, i) => i))
    for (const line of lines.slice(1)) {
      expect(line).toMatchObject({ shipped: true, service: 'svc', requestId: 'r-ship', msg: 'inside ✓' })
      expect(line).not.toHaveProperty('@pino-enrich')
    }
  })

  it('works alone with a destination', async () => {
    const file = join(dir, `t${++n}.ndjson`)
    const enrich = createPipeline()
    const transport = pino.transport({
      target: 'pino-enrich/transport',
      options: { enrichers: ENRICHERS, destination: file },
    })
    const log = pino(enrich.pinoOptions({ mode: 'transport' }), transport)
    enrich.context.run({ requestId: 'r2', userId: 'u2' }, () => log.info('alone'))
    await finish(transport)
    expect(readLines(file)[0]).toMatchObject({
      msg: 'alone',
      requestId: 'r2',
      user: { id: 'u2' },
      host: { name: 'worker-box' },
    })
  })

  /** The transport alone onto `file`, its user lookups taking `slowMs` (the worker reads it from its environment when it starts). */
  async function slowLookupsTo(file: string, slowMs: number) {
    process.env.ENRICH_SLOW_MS = String(slowMs)
    const transport = pino.transport({
      target: 'pino-enrich/transport',
      options: { enrichers: ENRICHERS, destination: file, deadlineMs: 2_000 },
    })
    delete process.env.ENRICH_SLOW_MS
    await once(transport, 'ready')
    return transport
  }

  it('alone, logger.flush(cb) calls back once every line logged before it is enriched and at the destination', async () => {
    const file = join(dir, `t${++n}.ndjson`)
    const enrich = createPipeline()
    const transport = await slowLookupsTo(file, 300)
    const log = pino(enrich.pinoOptions({ mode: 'transport' }), transport)
    enrich.context.run({ requestId: 'r-f', userId: 'slow' }, () => {
      for (let i = 0; i < 100; i++) log.info({ i }, 'before flush')
    })
    await new Promise<void>((resolve, reject) => log.flush((e) => (e ? reject(e) : resolve())))
    const lines = readLines(file)
    expect(lines).toHaveLength(100)
    for (const line of lines) expect(line).toMatchObject({ requestId: 'r-f', user: { id: 'slow' } })
    await finish(transport)
  })

  it('alone, logger.flush(cb) after a burst of 50,000 lines taken over many turns calls back once every one is at the destination, in order', async () => {
    const file = join(dir, `t${++n}.ndjson`)
    const enrich = createPipeline()
    const transport = await slowLookupsTo(file, 100)
    const log = pino(enrich.pinoOptions({ mode: 'transport' }), transport)
    // Logged in one go: thread-stream hands the worker megabytes at once, taken 1,000 lines a turn.
    const N = 50_000
    enrich.context.run({ requestId: 'r-b', userId: 'slow' }, () => {
      for (let i = 0; i < N; i++) log.info({ i }, 'burst')
    })
    await new Promise<void>((resolve, reject) => log.flush((e) => (e ? reject(e) : resolve())))
    const lines = readLines(file)
    expect(lines).toHaveLength(N)
    expect(lines.every((l, i) => l.i === i)).toBe(true)
    expect(lines.at(-1)).toMatchObject({ requestId: 'r-b', user: { id: 'slow' } })
    await finish(transport)
  })

  it('fails at start, naming the specifier, when the enrichers module is missing', async () => {
    const transport = pino.transport({
      target: 'pino-enrich/transport',
      options: { enrichers: './no/such/module.mjs', destination: join(dir, 'never.ndjson') },
    })
    const [err] = (await once(transport, 'error')) as [Error]
    expect(err.message).toMatch(/cannot load enrichers module "\.\/no\/such\/module\.mjs"/)
  })

  it('fails at start, naming the specifier, when the module exports something else', async () => {
    const transport = pino.transport({
      target: 'pino-enrich/transport',
      options: { enrichers: './test/fixtures/transport-bad-export.mjs', destination: join(dir, 'never.ndjson') },
    })
    const [err] = (await once(transport, 'error')) as [Error]
    expect(err.message).toMatch(/transport-bad-export\.mjs" export \[0\] is not an enricher/)
  })

  it('a worker crash reaches the main thread as an error; later lines are reported lost, not buffered', async () => {
    const file = join(dir, `t${++n}.ndjson`)
    const enrich = createPipeline()
    const transport = pino.transport({
      target: 'pino-enrich/transport',
      options: { enrichers: './test/fixtures/transport-crash.mjs', destination: file },
    })
    // pino's advice: listen for errors on a transport. Each write after the crash reports one.
    let first: Error | undefined
    let last: Error | undefined
    let count = 0
    transport.on('error', (e: Error) => {
      first ??= e
      last = e
      count++
    })
    const log = pino(enrich.pinoOptions({ mode: 'transport', contextKeys: ['crash'] }), transport)
    log.info('before')
    enrich.context.run({ crash: 'yes' }, () => log.info('crash'))
    await vi.waitFor(() => expect(count).toBeGreaterThan(0), { timeout: 5_000 })
    expect(first?.message).toMatch(/worker crashed on purpose/)
    v8.setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as () => void
    gc()
    const heapBefore = process.memoryUsage().heapUsed
    expect(() => {
      for (let i = 0; i < 100_000; i++) log.info({ i, pad: 'x'.repeat(200) }, 'after crash')
    }).not.toThrow()
    await new Promise((resolve) => setImmediate(resolve))
    gc()
    // 100,000 lines of ~300 bytes would hold 30 MB if they were kept.
    expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(5 * 1024 * 1024)
    expect(count).toBeGreaterThanOrEqual(100_000)
    expect(last?.message).toMatch(/the worker has exited/)
  })

  it('process.exit() after 100,000 lines: every line at the destination, none twice (child process)', async () => {
    const file = join(dir, 'exit.ndjson')
    const r = await runChild('transport-exit.ts', [file, '100000'], { timeoutMs: 60_000 })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const lines = readLines(file)
    expect(lines).toHaveLength(100_000)
    expect(new Set(lines.map((l) => l.i)).size).toBe(100_000)
    expect(lines[99_999]).toMatchObject({ requestId: 'r', host: { name: 'worker-box' } })
  })
})

describe('the transport capture cannot be forged (real worker threads)', () => {
  const forged = { c: { requestId: 'forged', userId: 'admin' }, t: 1 }
  const variants: Array<[string, pino.LoggerOptions]> = [
    ['default time', {}],
    ['isoTime', { timestamp: pino.stdTimeFunctions.isoTime }],
    ['epochTime', { timestamp: pino.stdTimeFunctions.epochTime }],
    ['unixTime', { timestamp: pino.stdTimeFunctions.unixTime }],
    ['nullTime', { timestamp: pino.stdTimeFunctions.nullTime }],
    ['timestamp false', { timestamp: false }],
    ['timestamp false, base null', { timestamp: false, base: null }],
    ['a custom timestamp', { timestamp: () => `,"ts":"at-${Date.now()}"` }],
    ['messageKey', { messageKey: 'message' }],
    ['nestedKey', { nestedKey: 'payload' }],
    ['nestedKey, timestamp false', { nestedKey: 'payload', timestamp: false }],
  ]

  it('reads only the capture the main thread wrote, and writes a payload that looks like one as it was logged', async () => {
    const file = join(dir, `t${++n}.ndjson`)
    const enrich = createPipeline()
    // A wide deadline: the first lines wait for the lookup of u1, which a loaded machine may delay.
    const transport = pipelineTransport(file, { deadlineMs: 5_000 })
    const payloads = {
      top: { '@pino-enrich': forged, a: 1 },
      nested: { body: { '@pino-enrich': forged } },
      spaced: { body: ',"@pino-enrich" :{"c":{"userId":"admin"}}' },
    }
    for (const [v, options] of variants) {
      const log = pino(enrich.pinoOptions({ mode: 'transport', ...options }), transport).child({ v })
      const logAll = (where: string) => {
        for (const [kind, payload] of Object.entries(payloads)) log.info(payload, `${where} ${kind}`)
        log.info(`${where} message ,"@pino-enrich" :{"c":{"userId":"admin"}}`)
      }
      logAll('outside')
      enrich.context.run({ requestId: 'real', userId: 'u1' }, () => logAll('inside'))
    }
    await finish(transport)
    const raw = readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l.length > 0)
    expect(raw).toHaveLength(variants.length * 8)
    for (const text of raw) {
      const line = JSON.parse(text) as Record<string, unknown>
      const [v, options] = variants.find(([name]) => name === line.v) ?? []
      expect(v, text).toBeDefined()
      const msg = line[options?.messageKey ?? 'msg'] as string
      const [where, kind] = msg.split(' ') as [string, keyof typeof payloads | 'message']
      if (where === 'inside') expect(line, text).toMatchObject({ requestId: 'real', user: { id: 'u1' } })
      else {
        expect(line, text).not.toHaveProperty('requestId')
        expect(line, text).not.toHaveProperty('user')
      }
      expect(text).not.toContain('"@pino-enrich" :{}')
      if (kind === 'message') continue
      // The payload's members as pino wrote them, byte for byte.
      const members = JSON.stringify(payloads[kind])
      const expected = options?.nestedKey === undefined ? members.slice(1, -1) : `"payload":${members}`
      expect(text, text).toContain(expected)
      const own = options?.nestedKey === undefined ? line : (line.payload as Record<string, unknown>)
      expect(own).toMatchObject(payloads[kind])
    }
  })
})

describe("the logger's redact applies to fields the worker adds (real worker threads)", () => {
  it("runs README's quick start through the transport: user.email is censored in the line", async () => {
    const file = join(dir, `t${++n}.ndjson`)
    const enrich = createPipeline()
    const transport = pino.transport({
      pipeline: [
        { target: 'pino-enrich/transport', options: { enrichers: QUICK_START, deadlineMs: 5_000 } },
        { target: 'pino/file', options: { destination: file } },
      ],
    })
    const logger = pino(enrich.pinoOptions({ mode: 'transport', level: 'info', redact: ['user.email'] }), transport)
    const removing = pino(
      enrich.pinoOptions({ mode: 'transport', redact: { paths: ['user.email', 'reqId'], remove: true } }),
      transport,
    )
    const censoring = pino(
      enrich.pinoOptions({ mode: 'transport', redact: { paths: ['*.email'], censor: '***' } }),
      transport,
    )
    enrich.context.run({ requestId: 'r1', userId: 'u1' }, () => {
      logger.info('quick start')
      logger.info({ user: { email: 'payload@example.com' } }, 'the payload too, by pino')
      removing.info('removed')
      censoring.info('censored')
    })
    logger.info('outside')
    await finish(transport)
    const text = readFileSync(file, 'utf8')
    expect(text).not.toContain('@example.com')
    const [quick, payload, removed, censored, outside] = readLines(file)
    expect(quick).toMatchObject({ msg: 'quick start', reqId: 'r1', user: { id: 'u1', email: '[Redacted]' } })
    expect(quick).toHaveProperty('host.arch')
    expect(payload).toMatchObject({ user: { email: '[Redacted]' } })
    expect(removed).toMatchObject({ msg: 'removed', user: { id: 'u1' } })
    expect(removed).not.toHaveProperty('user.email')
    expect(removed).not.toHaveProperty('reqId')
    expect(censored).toMatchObject({ msg: 'censored', user: { id: 'u1', email: '***' }, reqId: 'r1' })
    expect(outside).toMatchObject({ msg: 'outside' })
    expect(outside).not.toHaveProperty('user')
  })
})

describe('serializers for the fields the worker adds (real worker threads)', () => {
  it("applies the transport's serializers module to enriched fields, then the logger's redact; a throwing one costs its key", async () => {
    const file = join(dir, `t${++n}.ndjson`)
    const enrich = createPipeline()
    const transport = pino.transport({
      pipeline: [
        {
          target: 'pino-enrich/transport',
          options: {
            enrichers: QUICK_START,
            serializers: './test/fixtures/transport-serializers.mjs',
            deadlineMs: 5_000,
          },
        },
        { target: 'pino/file', options: { destination: file } },
      ],
    })
    const log = pino(enrich.pinoOptions({ mode: 'transport', redact: ['user.id'] }), transport)
    enrich.context.run({ requestId: 'r1', userId: 'u1' }, () => log.info('serialized'))
    log.info('outside')
    await finish(transport)
    const [line, outside] = readLines(file)
    expect(line).toMatchObject({ msg: 'serialized', user: { id: '[Redacted]', domain: 'example.com' } })
    expect(line).not.toHaveProperty('user.email')
    // Its serializer threw.
    expect(line).not.toHaveProperty('reqId')
    expect(line).toHaveProperty('host.arch')
    expect(outside).toMatchObject({ msg: 'outside' })
  })

  it('fails at start, naming the module, when it exports something other than functions by key', async () => {
    const transport = pino.transport({
      target: 'pino-enrich/transport',
      options: { enrichers: ENRICHERS, serializers: ENRICHERS, destination: join(dir, 'never.ndjson') },
    })
    const [err] = (await once(transport, 'error')) as [Error]
    expect(err.message).toMatch(
      /transport-enrichers\.mjs" must export \(default or `serializers`\) an object of functions/,
    )
  })
})

describe('the active span crosses to the worker (real worker threads, a real tracer provider)', () => {
  beforeAll(() => {
    expect(context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())).toBe(true)
  })
  afterAll(() => {
    context.disable()
  })

  it('writes trace_id, span_id and trace_flags of the span active at each call, sampled or not, nested, across awaits', async () => {
    const file = join(dir, `t${++n}.ndjson`)
    const enrich = createPipeline()
    const transport = pino.transport({
      pipeline: [
        { target: 'pino-enrich/transport', options: { enrichers: QUICK_START, deadlineMs: 5_000 } },
        { target: 'pino/file', options: { destination: file } },
      ],
    })
    const log = pino(enrich.pinoOptions({ mode: 'transport' }), transport)
    const iso = pino(enrich.pinoOptions({ mode: 'transport', timestamp: pino.stdTimeFunctions.isoTime }), transport)
    const sampled = new BasicTracerProvider().getTracer('test')
    const unsampled = new BasicTracerProvider({ sampler: new AlwaysOffSampler() }).getTracer('test')
    const ids: Record<string, SpanContext> = {}
    log.info('no span')
    await sampled.startActiveSpan('parent', async (parent) => {
      ids.parent = parent.spanContext()
      enrich.context.run({ requestId: 'r1', userId: 'u1' }, () => log.info('parent'))
      sampled.startActiveSpan('child', (child) => {
        ids.child = child.spanContext()
        iso.info('child')
        child.end()
      })
      await new Promise((resolve) => setImmediate(resolve))
      log.info('parent after an await')
      parent.end()
    })
    unsampled.startActiveSpan('unsampled', (span) => {
      ids.unsampled = span.spanContext()
      log.info('unsampled')
      span.end()
    })
    log.info('no span again')
    await finish(transport)
    const byMsg = new Map(readLines(file).map((l) => [l.msg as string, l]))
    const of = (sc: SpanContext | undefined, flags: string) => ({
      trace_id: sc?.traceId,
      span_id: sc?.spanId,
      trace_flags: flags,
    })
    expect(ids.parent?.traceId).toMatch(/^[0-9a-f]{32}$/)
    expect(byMsg.get('parent')).toMatchObject({ ...of(ids.parent, '01'), reqId: 'r1', user: { id: 'u1' } })
    expect(byMsg.get('child')).toMatchObject(of(ids.child, '01'))
    expect(ids.child?.traceId).toBe(ids.parent?.traceId)
    expect(byMsg.get('parent after an await')).toMatchObject(of(ids.parent, '01'))
    expect(byMsg.get('unsampled')).toMatchObject(of(ids.unsampled, '00'))
    for (const msg of ['no span', 'no span again']) {
      expect(byMsg.get(msg)).toBeDefined()
      expect(byMsg.get(msg)).not.toHaveProperty('trace_id')
    }
  })
})
