// One benchmark scenario in a fresh process: 200,000 lines (BENCH_LINES) of
// info({ a: 1 }, 'msg') to /dev/null, yielding to the event loop every 10
// lines, timed until the destination is closed. Prints one JSON object:
// { ms, cpuMs, maxAddedDelayMs? }, cpuMs being the process's CPU time
// (user + system, every thread) over the same span: what a neighbour's load
// takes from the wall time does not show in it.
import { AsyncLocalStorage } from 'node:async_hooks'
import { once } from 'node:events'
import { createWriteStream, readFileSync } from 'node:fs'
import { LRUCache } from 'lru-cache'
import pino from 'pino'
import { createPipeline, defineContextFields, defineEnricher, type Pipeline } from '../src/index.js'

const SCENARIOS = [
  'bare',
  'reference',
  'snapshot',
  'deferred',
  'deferred-failing',
  'deferred-healthy',
  'keyed-snapshot',
  'keyed-reference',
  'winston',
  'builtins-reference',
  'builtins',
  'transport-file',
  'transport-enrich',
  'transport-step',
  'transport-step-keyed',
  'transport-step-file',
] as const
type Scenario = (typeof SCENARIOS)[number]

const LINES = Number(process.env.BENCH_LINES ?? 200_000)
const [scenario = 'bare', destKind = 'sync'] = process.argv.slice(2) as [Scenario, 'sync' | 'async']
if (!(SCENARIOS as readonly string[]).includes(scenario)) {
  throw new RangeError(`unknown scenario ${JSON.stringify(scenario)}; one of ${SCENARIOS.join(', ')}`)
}

/** The 8 static fields of the reference, as 4 enrichers of 2 fields each. */
const STATIC = {
  service: { name: 'checkout', version: '1.4.2' },
  deployment: { environment: 'production', region: 'eu-west-1' },
  host: { name: 'ip-10-0-0-1', arch: 'x64' },
  container: { id: 'c0ffee', runtime: 'containerd' },
}
const BASE = { ...STATIC }
const yieldNow = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

function staticEnrichers() {
  return Object.entries(STATIC).map(([name, fields]) => defineEnricher({ name, compute: () => ({ [name]: fields }) }))
}

async function main(): Promise<void> {
  const dest = pino.destination({
    dest: '/dev/null',
    sync: destKind === 'sync',
    minLength: destKind === 'sync' ? 0 : 4096,
  })
  if (destKind !== 'sync') await once(dest, 'ready')
  const store = { requestId: 'req-7f3a', userId: 'user-42' }
  let enrich: Pipeline | undefined
  let log: (i: number) => void

  if (scenario === 'builtins' || scenario === 'builtins-reference') {
    return runBuiltins(dest, store)
  }
  if (scenario === 'transport-file' || scenario === 'transport-enrich') {
    return runTransport(store)
  }
  if (scenario === 'transport-step' || scenario === 'transport-step-keyed' || scenario === 'transport-step-file') {
    return runTransportStep(store)
  }
  if (scenario === 'bare') {
    const logger = pino(dest)
    log = () => logger.info({ a: 1 }, 'msg')
  } else if (scenario === 'reference') {
    return runHandWritten(dest, store, BASE)
  } else if (scenario === 'keyed-reference') {
    return runKeyedHandWritten(dest, store)
  } else if (
    scenario === 'snapshot' ||
    scenario === 'deferred' ||
    scenario === 'deferred-failing' ||
    scenario === 'deferred-healthy' ||
    scenario === 'keyed-snapshot'
  ) {
    enrich = createPipeline({ deadlineMs: 10, enrichers: staticEnrichers() })
    enrich.register(defineContextFields({ name: 'request', keys: { requestId: 'requestId', userId: 'userId' } }))
    const failing = scenario === 'deferred-failing'
    const keyed = failing || scenario === 'deferred-healthy' || scenario === 'keyed-snapshot'
    if (keyed) {
      // A keyed lookup by user: its backend always fails, or always answers.
      enrich.register(
        defineEnricher({
          name: 'tenant',
          key: (ctx) => ctx.context?.userId as string | undefined,
          compute: failing
            ? () => Promise.reject(new Error('backend down'))
            : (userId) => ({ tenant: tenantOf(userId) }),
          breaker: { failureThreshold: 1, halfOpenAfterMs: 3_600_000 },
        }),
      )
    }
    await enrich.ready()
    // Before timing: the failing backend has opened its breaker, the healthy one's value is cached.
    if (keyed) {
      await enrich.enrich({ context: store })
      const tenant = enrich.stats().enrichers.find((e) => e.name === 'tenant')
      if (tenant?.breaker !== (failing ? 'open' : 'closed')) throw new Error(`tenant breaker is ${tenant?.breaker}`)
    }
    const mode = scenario === 'snapshot' || scenario === 'keyed-snapshot' ? 'snapshot' : 'deferred'
    const logger = pino(enrich.pinoOptions({ mode, base: { pid: process.pid, hostname: 'bench' } }), dest)
    const e = enrich
    return run(
      dest,
      (i) => logger.info({ a: i & 1 }, 'msg'),
      (fn) => e.context.run(store, fn),
      e,
    )
  } else {
    const { default: winston } = await import('winston')
    const als = new AsyncLocalStorage<typeof store>()
    const out = createWriteStream('/dev/null')
    const addRequest = winston.format((info) => {
      const s = als.getStore()
      if (s !== undefined) {
        info.requestId = s.requestId
        info.userId = s.userId
      }
      return info
    })
    const logger = winston.createLogger({
      defaultMeta: { pid: process.pid, hostname: 'bench', ...BASE },
      format: winston.format.combine(winston.format.timestamp(), addRequest(), winston.format.json()),
      transports: [new winston.transports.Stream({ stream: out })],
    })
    const cpu = process.cpuUsage()
    const started = performance.now()
    await als.run(store, async () => {
      for (let i = 0; i < LINES; i++) {
        logger.info('msg', { a: 1 })
        if (i % 10 === 9) await yieldNow()
      }
    })
    logger.end()
    await once(logger, 'finish')
    out.end()
    await once(out, 'close')
    report(performance.now() - started, cpuSince(cpu))
    return
  }
  return run(dest, log, (fn) => fn())
}

/**
 * The built-in enrichers (host, process, resource, runtime, container,
 * deployment) in snapshot mode, against pino with the same fields written
 * by hand as bindings, taken from the same enrichers once warmed.
 */
async function runBuiltins(dest: Destination, store: Record<string, string>): Promise<void> {
  const builtins = await import('../enrichers/index.js')
  const enrich = createPipeline({
    enrichers: [
      builtins.hostEnricher(),
      builtins.processEnricher(),
      builtins.resourceEnricher(),
      builtins.runtimeEnricher(),
      builtins.containerEnricher(),
      builtins.deploymentEnricher({ serviceName: 'checkout', version: '1.4.2', environment: 'production' }),
    ],
  })
  enrich.register(defineContextFields({ name: 'request', keys: { requestId: 'requestId', userId: 'userId' } }))
  await enrich.ready({ timeoutMs: 5_000 })
  const fields = enrich.snapshot()
  delete fields.enrich
  if (scenario === 'builtins-reference') {
    await enrich.close()
    return runHandWritten(dest, store, fields)
  }
  const logger = pino(enrich.pinoOptions({ base: { pid: process.pid, hostname: 'bench' } }), dest)
  return run(
    dest,
    (i) => logger.info({ a: i & 1 }, 'msg'),
    (fn) => enrich.context.run(store, fn),
    enrich,
  )
}

/**
 * Main-thread cost of logging through a transport: the plain pino/file
 * transport, or the enrichment transport before it. Reports the time of the
 * logging loop (main thread) and, as `totalMs`, until the worker has written
 * every line (its sustained rate with every value cached).
 */
async function runTransport(store: Record<string, string>): Promise<void> {
  const { fileURLToPath } = await import('node:url')
  const enrichers = fileURLToPath(new URL('./transport-enrichers.mjs', import.meta.url))
  const file: pino.TransportTargetOptions = { target: 'pino/file', options: { destination: '/dev/null' } }
  const step: pino.TransportTargetOptions = { target: 'pino-enrich/transport', options: { enrichers, deadlineMs: 10 } }
  const transport =
    scenario === 'transport-enrich' && process.env.CAPTURE_ONLY !== '1'
      ? pino.transport({ pipeline: [step, file] })
      : pino.transport(file)
  await once(transport, 'ready')
  const enrich = createPipeline()
  const logger =
    scenario === 'transport-enrich'
      ? pino(enrich.pinoOptions({ mode: 'transport' }), transport)
      : pino({ base: { pid: process.pid, hostname: 'bench', ...BASE } }, transport)
  const keepAlive = setInterval(() => {}, 1_000)
  const cpu0 = threadCpuMs()
  const started = performance.now()
  await enrich.context.run(store, async () => {
    for (let i = 0; i < LINES; i++) {
      logger.info({ a: i & 1 }, 'msg')
      if (i % 10 === 9) await yieldNow()
    }
  })
  const ms = performance.now() - started
  const cpu1 = threadCpuMs()
  const cpuMs = cpu0 === undefined || cpu1 === undefined ? undefined : cpu1 - cpu0
  const closed = once(transport, 'close')
  transport.end()
  await closed
  clearInterval(keepAlive)
  process.stdout.write(`${JSON.stringify({ ms, totalMs: performance.now() - started, cpuMs })}\n`)
}

/**
 * CPU time of the calling thread alone (Linux: /proc/thread-self/stat, in
 * 10 ms ticks), or undefined elsewhere: process.cpuUsage() would count the
 * worker thread too.
 */
function threadCpuMs(): number | undefined {
  try {
    const fields = readFileSync('/proc/thread-self/stat', 'utf8').split(') ')[1]?.split(' ') ?? []
    const ticks = Number(fields[11]) + Number(fields[12])
    return Number.isFinite(ticks) ? ticks * 10 : undefined
  } catch {
    return undefined
  }
}

/**
 * The worker's own capacity, with the main thread out of the way: the lines
 * the main thread would send (captured by a real pino logger in transport
 * mode, or the plain lines of the pino/file scenario) fed in 64 KB chunks,
 * as fast as taken, through the pipeline pino's worker builds: a
 * PassThrough, the enrichment step, then pino/file to /dev/null. Timed
 * until pino/file has closed.
 */
async function runTransportStep(store: Record<string, string>): Promise<void> {
  const { PassThrough, pipeline } = await import('node:stream')
  const { createRequire } = await import('node:module')
  const { fileURLToPath } = await import('node:url')
  const require = createRequire(import.meta.url)
  const openFile = require('pino/file') as (o: { destination: string }) => Promise<NodeJS.WritableStream>
  let text = ''
  const sink = {
    write(s: string) {
      text += s
    },
  }
  const enrich = createPipeline()
  const enriched = scenario === 'transport-step' || scenario === 'transport-step-keyed'
  const logger = enriched
    ? pino(enrich.pinoOptions({ mode: 'transport' }), sink)
    : pino({ base: { pid: process.pid, hostname: 'bench', ...BASE } }, sink)
  enrich.context.run(store, () => {
    for (let i = 0; i < LINES; i++) logger.info({ a: i & 1 }, 'msg')
  })
  const chunks: string[] = []
  for (let i = 0; i < text.length; i += 65_536) chunks.push(text.slice(i, i + 65_536))
  const steps: NodeJS.ReadWriteStream[] = []
  if (enriched) {
    const { default: enrichTransport } = await import('pino-enrich/transport')
    const module = scenario === 'transport-step' ? './transport-enrichers.mjs' : './transport-enrichers-keyed.mjs'
    const enrichers = fileURLToPath(new URL(module, import.meta.url))
    steps.push((await enrichTransport({ enrichers, deadlineMs: 10 })) as unknown as NodeJS.ReadWriteStream)
  }
  const file = await openFile({ destination: '/dev/null' })
  const source = new PassThrough()
  // The step runs on this thread (no worker here): the process's CPU time is the step's, pino/file's and GC's.
  const cpu0 = process.cpuUsage()
  const started = performance.now()
  const done = new Promise<void>((resolve, reject) =>
    pipeline([source, ...steps, file], (err) => (err ? reject(err) : resolve())),
  )
  for (const chunk of chunks) {
    if (!source.write(chunk)) await once(source, 'drain')
    await yieldNow()
  }
  source.end()
  await done
  const ms = performance.now() - started
  const cpu = process.cpuUsage(cpu0)
  process.stdout.write(`${JSON.stringify({ ms, cpuMs: (cpu.user + cpu.system) / 1000 })}\n`)
}

/** The keyed enricher's value for a user: one lookup of a small object. */
const tenantOf = (userId: string): { id: string; plan: string } => ({ id: `t-${userId}`, plan: 'pro' })

/**
 * The keyed-hit reference: the reference's mixin also reads the user's tenant
 * from an lru-cache (filled before timing; a miss would start its fetch and
 * write the line without it), the same output as `keyed-snapshot`.
 */
function runKeyedHandWritten(dest: Destination, store: Record<string, string>): Promise<void> {
  const als = new AsyncLocalStorage<Record<string, string>>()
  const tenants = new LRUCache<string, { id: string; plan: string }>({
    max: 1_000,
    ttl: 60_000,
    fetchMethod: async (userId) => tenantOf(userId),
  })
  tenants.set(store.userId as string, tenantOf(store.userId as string))
  const logger = pino(
    {
      base: { pid: process.pid, hostname: 'bench', ...BASE },
      mixin: () => {
        const s = als.getStore()
        if (s === undefined) return {}
        const userId = s.userId as string
        const tenant = tenants.get(userId)
        if (tenant === undefined) {
          tenants.fetch(userId).catch(() => {})
          return { requestId: s.requestId, userId }
        }
        return { requestId: s.requestId, userId, tenant }
      },
    },
    dest,
  )
  return run(
    dest,
    (i) => logger.info({ a: i & 1 }, 'msg'),
    (fn) => als.run(store, fn),
  )
}

/** Hand-written pino: `fields` as bindings, the 2 request fields copied from ALS by a mixin. */
function runHandWritten(
  dest: Destination,
  store: Record<string, string>,
  fields: Record<string, unknown>,
): Promise<void> {
  const als = new AsyncLocalStorage<Record<string, string>>()
  const logger = pino(
    {
      base: { pid: process.pid, hostname: 'bench', ...fields },
      mixin: () => {
        const s = als.getStore()
        return s === undefined ? {} : { requestId: s.requestId, userId: s.userId }
      },
    },
    dest,
  )
  return run(
    dest,
    (i) => logger.info({ a: i & 1 }, 'msg'),
    (fn) => als.run(store, fn),
  )
}

type Destination = pino.DestinationStream & { end(): void; flushSync?: () => void }

async function run(
  dest: Destination,
  log: (i: number) => void,
  within: (fn: () => Promise<void>) => Promise<void>,
  enrich?: Pipeline,
): Promise<void> {
  const cpu = process.cpuUsage()
  const started = performance.now()
  await within(async () => {
    for (let i = 0; i < LINES; i++) {
      log(i)
      if (i % 10 === 9) await yieldNow()
    }
  })
  await enrich?.flush()
  const closed = once(dest as unknown as NodeJS.EventEmitter, 'close')
  dest.end()
  await closed
  const ms = performance.now() - started
  report(ms, cpuSince(cpu), enrich)
}

/** CPU time of the whole process since `start`, in ms. */
function cpuSince(start: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(start)
  return (d.user + d.system) / 1000
}

function report(ms: number, cpuMs: number, enrich?: Pipeline): void {
  const records = enrich?.stats().records
  process.stdout.write(
    `${JSON.stringify({ ms, cpuMs, maxAddedDelayMs: records?.maxAddedDelayMs, timedOut: records?.timedOut })}\n`,
  )
}

await main()
