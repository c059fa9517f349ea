import { createRequire } from 'node:module'
import { isAbsolute, join, resolve } from 'node:path'
import { PassThrough, type Readable } from 'node:stream'
import { pathToFileURL } from 'node:url'
import build from 'pino-abstract-transport'
import { type AnyEnricher, type EnrichContext, type Fields, isEnricher, LEVELS } from '../enricher.js'
import { EnrichError, ErrorCodes } from '../errors.js'
import { Pipeline, type PipelineOptions, within } from '../pipeline.js'
import { TRANSPORT_KEY, type TransportCapture } from './options.js'
import { OrderedQueue, type QueuedLine } from './ordered-queue.js'

/**
 * Options of the `pino-enrich/transport` target. They are structured-cloned
 * into the worker, so enrichers are named by a module, not passed.
 */
export interface TransportOptions extends Omit<PipelineOptions, 'enrichers' | 'clock'> {
  /**
   * A file path (absolute, or relative to the process's working directory), a
   * `file:` URL or a package specifier. The module's default export (or its
   * `enrichers` export) is an array of enrichers, or a function returning a
   * {@link Pipeline} or such an array (or a promise of either), called with
   * `enricherOptions`.
   */
  enrichers: string
  /** Passed to the module's factory function. Must be structured-cloneable. */
  enricherOptions?: unknown
  /** How long to warm global enrichers before the first line, in ms. Default 1 000. */
  readyTimeoutMs?: number
  /**
   * Used alone (not as a pipeline step): where to write enriched lines, a
   * path or a file descriptor, as `pino/file` takes it. Omit it in a
   * `pipeline`: the next step receives the lines.
   */
  destination?: string | number
  /** With `destination`: create its directory. Default false. */
  mkdir?: boolean
}

interface Line extends QueuedLine {
  obj: Record<string, unknown>
}

/**
 * A pino transport that enriches lines in the worker thread. Lines leave in
 * the order they arrived, each delayed at most `deadlineMs`; problems are
 * recorded under `errorKey` as in process. When the input ends (logger
 * flush, `transport.end()`, process exit) pending lines are written within
 * `closeTimeoutMs`.
 *
 * @throws EnrichError (`ENRICH_TRANSPORT_LOAD`) at start when the enrichers module cannot be loaded or exports something else
 */
export default async function enrichTransport(options: TransportOptions): Promise<unknown> {
  const pipeline = await loadPipeline(options)
  await pipeline.ready({ timeoutMs: options.readyTimeoutMs ?? 1_000 })
  const errorKey = pipeline.errorKey
  const alone = options.destination !== undefined
  const out: NodeJS.WritableStream & { end(): void } = alone
    ? await openDestination(options.destination as string | number, options.mkdir === true)
    : new PassThrough()

  let source: Readable | undefined
  let paused = false
  const write = (line: Line): void => {
    const out2: Fields = { level: line.obj.level, time: line.obj.time }
    pipeline.assignGlobals(line.ctx.level, out2)
    pipeline.mergeParts(line, out2)
    const problems = pipeline.problemsFor(line.problems)
    if (problems !== undefined) out2[errorKey] = problems
    // The line's own fields (call site, bindings, request context) win.
    Object.assign(out2, line.obj)
    if (!out.write(`${JSON.stringify(out2)}\n`) && source !== undefined && !paused) {
      paused = true
      source.pause()
      out.once('drain', () => {
        paused = false
        source?.resume()
      })
    }
  }
  const queue = new OrderedQueue<Line>(pipeline, write)

  const onLine = (raw: string): void => {
    let obj: Record<string, unknown>
    try {
      const parsed: unknown = JSON.parse(raw)
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new TypeError('not an object')
      obj = parsed as Record<string, unknown>
    } catch {
      // Not ours to judge: a line that is not a JSON object passes through untouched.
      out.write(`${raw}\n`)
      return
    }
    const now = pipeline.clock.now()
    const capture = obj[TRANSPORT_KEY] as TransportCapture | undefined
    if (capture !== undefined) delete obj[TRANSPORT_KEY]
    const time = typeof capture?.t === 'number' ? capture.t : typeof obj.time === 'number' ? obj.time : now
    const ctx: EnrichContext = {
      level: levelOf(obj.level),
      time,
      record: obj,
      context: typeof capture?.c === 'object' && capture.c !== null ? capture.c : undefined,
    }
    if (now >= pipeline.nextCheck) pipeline.prepareGlobals()
    const line: Line = {
      ctx,
      now,
      obj,
      parts: [],
      problems: undefined,
      waiting: undefined,
      done: false,
      onReady: undefined,
      deadline: now + pipeline.deadlineMs,
      start: now,
    }
    pipeline.gather(line)
    queue.push(line)
  }

  const close = async (): Promise<void> => {
    // In-flight enrichment gets at most closeTimeoutMs; then what is left goes out as it is.
    await within(queue.whenEmpty(), pipeline.closeTimeoutMs)
    queue.close()
    await pipeline.close()
    await new Promise<void>((done) => {
      out.once('close', done)
      out.once('finish', done)
      out.end()
    })
  }

  // pino-abstract-transport calls back when the returned promise settles.
  const onClose = (): Promise<void> => close()
  if (alone) {
    return build(
      (stream) => {
        source = stream
        stream.on('data', onLine)
      },
      { parse: 'lines', close: onClose },
    )
  }
  return build(
    (stream) => {
      source = stream
      stream.on('data', onLine)
      return out as PassThrough
    },
    { parse: 'lines', enablePipelining: true, close: onClose },
  )
}

async function loadPipeline(options: TransportOptions): Promise<Pipeline> {
  const spec = options?.enrichers
  if (typeof spec !== 'string' || spec.length === 0) {
    throw new EnrichError(
      ErrorCodes.TRANSPORT_LOAD,
      `pino-enrich/transport: options.enrichers must name a module exporting enrichers, received ${JSON.stringify(spec)}`,
    )
  }
  let mod: Record<string, unknown>
  try {
    mod = (await import(toUrl(spec))) as Record<string, unknown>
  } catch (e) {
    throw new EnrichError(
      ErrorCodes.TRANSPORT_LOAD,
      `pino-enrich/transport: cannot load enrichers module ${JSON.stringify(spec)}: ${e instanceof Error ? e.message : String(e)}`,
      { cause: e },
    )
  }
  let exported: unknown = mod.default ?? mod.enrichers
  if (typeof exported === 'function' && !isEnricher(exported)) {
    exported = await (exported as (o: unknown) => unknown)(options.enricherOptions)
  }
  const {
    enrichers: _e,
    enricherOptions: _o,
    readyTimeoutMs: _r,
    destination: _d,
    mkdir: _m,
    ...pipelineOptions
  } = options
  if (exported instanceof Pipeline) return exported
  if (Array.isArray(exported)) {
    exported.forEach((e, i) => {
      if (!isEnricher(e) && typeof e !== 'function') {
        throw new EnrichError(
          ErrorCodes.TRANSPORT_LOAD,
          `pino-enrich/transport: ${JSON.stringify(spec)} export [${i}] is not an enricher (defineEnricher() or a function), received ${typeof e}`,
        )
      }
    })
    return new Pipeline({ ...pipelineOptions, enrichers: exported as AnyEnricher[] })
  }
  throw new EnrichError(
    ErrorCodes.TRANSPORT_LOAD,
    `pino-enrich/transport: ${JSON.stringify(spec)} must export (default or \`enrichers\`) an array of enrichers or a function returning a pipeline or such an array, received ${typeof exported}`,
  )
}

function toUrl(spec: string): string {
  if (spec.startsWith('file:')) return spec
  if (isAbsolute(spec)) return pathToFileURL(spec).href
  if (spec.startsWith('.')) return pathToFileURL(resolve(process.cwd(), spec)).href
  return pathToFileURL(createRequire(join(process.cwd(), 'noop.js')).resolve(spec)).href
}

function levelOf(level: unknown): number {
  if (typeof level === 'number') return level
  if (typeof level === 'string' && Object.hasOwn(LEVELS, level)) return LEVELS[level as keyof typeof LEVELS]
  return LEVELS.info
}

async function openDestination(
  dest: string | number,
  mkdir: boolean,
): Promise<NodeJS.WritableStream & { end(): void }> {
  const { default: pino } = await import('pino')
  const stream = pino.destination({ dest, sync: false, mkdir })
  await new Promise<void>((ready, fail) => {
    stream.once('ready', ready)
    stream.once('error', fail)
  })
  return stream as unknown as NodeJS.WritableStream & { end(): void }
}
