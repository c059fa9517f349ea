import { createRequire } from 'node:module'
import { isAbsolute, join, resolve } from 'node:path'
import { PassThrough, type Readable } from 'node:stream'
import { pathToFileURL } from 'node:url'
import build from 'pino-abstract-transport'
import { type AnyEnricher, type EnrichContext, type Fields, isEnricher, LEVELS } from '../enricher.js'
import { EnrichError, ErrorCodes } from '../errors.js'
import { Pipeline, type PipelineOptions, problemsJson, within } from '../pipeline.js'
import { quote, TRANSPORT_KEY, type TransportCapture } from './options.js'
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
  /** Fast path: the line up to its time, and the rest without our capture. */
  head: string | undefined
  rest: string | undefined
}

/** A line's context whose `record` is parsed only if an enricher reads it. */
class LineContext implements EnrichContext {
  readonly level: number
  readonly time: number
  readonly context: Record<string, unknown> | undefined
  readonly #raw: string
  #record: Record<string, unknown> | undefined

  constructor(level: number, time: number, context: Record<string, unknown> | undefined, raw: string) {
    this.level = level
    this.time = time
    this.context = context
    this.#raw = raw
  }

  get record(): Readonly<Record<string, unknown>> {
    if (this.#record === undefined) {
      const obj = JSON.parse(this.#raw) as Record<string, unknown>
      delete obj[TRANSPORT_KEY]
      this.#record = obj
    }
    return this.#record
  }
}

const CAPTURE = `,${JSON.stringify(TRANSPORT_KEY)}:`

// pino-abstract-transport JSON.parses every line, even in 'lines' mode, for its
// metadata. We read what we need from the line ourselves: no parse, no metadata.
const NOT_PARSED = Object.freeze({})
const LINES = { parse: 'lines', metadata: false, parseLine: (): object => NOT_PARSED } as const

interface SplitLine {
  level: number
  time: number
  head: string
  rest: string
  capture: TransportCapture | undefined
}

/**
 * Splits a line pino wrote with its default keys, `{"level":N,"time":T...`,
 * around the time and our capture, without parsing the rest. Undefined for
 * any other shape, which takes the general path.
 */
function splitLine(raw: string): SplitLine | undefined {
  if (!raw.startsWith('{"level":')) return undefined
  const levelEnd = digitsEnd(raw, 9)
  if (levelEnd === 9 || !raw.startsWith(',"time":', levelEnd)) return undefined
  const timeStart = levelEnd + 8
  const timeEnd = digitsEnd(raw, timeStart)
  if (timeEnd === timeStart) return undefined
  const c = raw.charCodeAt(timeEnd)
  if (c !== 44 && c !== 125) return undefined
  const head = raw.slice(0, timeEnd)
  let rest = raw.slice(timeEnd)
  let capture: TransportCapture | undefined
  const at = raw.indexOf(CAPTURE, timeEnd)
  if (at !== -1) {
    const valueStart = at + CAPTURE.length
    const valueEnd = objectEnd(raw, valueStart)
    if (valueEnd === -1) return undefined
    try {
      capture = JSON.parse(raw.slice(valueStart, valueEnd)) as TransportCapture
    } catch {
      return undefined
    }
    rest = raw.slice(timeEnd, at) + raw.slice(valueEnd)
  }
  return { level: Number(raw.slice(9, levelEnd)), time: Number(raw.slice(timeStart, timeEnd)), head, rest, capture }
}

function digitsEnd(s: string, i: number): number {
  while (i < s.length) {
    const c = s.charCodeAt(i)
    if (c < 48 || c > 57) break
    i++
  }
  return i
}

/** The index after the JSON object starting at `i`, or -1. */
function objectEnd(s: string, i: number): number {
  if (s.charCodeAt(i) !== 123) return -1
  let depth = 0
  let inString = false
  for (; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (inString) {
      if (c === 92) i++
      else if (c === 34) inString = false
    } else if (c === 34) inString = true
    else if (c === 123) depth++
    else if (c === 125 && --depth === 0) return i + 1
  }
  return -1
}

function captured(capture: TransportCapture | undefined): Record<string, unknown> | undefined {
  const c = capture?.c
  return typeof c === 'object' && c !== null ? c : undefined
}

// Enricher output keys repeat line after line: their JSON is made once (bounded).
const keyJson = new Map<string, string>()

function fieldsJson(fields: Fields): string {
  let text = ''
  for (const key of Object.keys(fields)) {
    let k = keyJson.get(key)
    if (k === undefined) {
      k = `,${JSON.stringify(key)}:`
      if (keyJson.size < 1024) keyJson.set(key, k)
    }
    const v = fields[key]
    text += k + (typeof v === 'string' ? quote(v) : JSON.stringify(v))
  }
  return text
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
  // Lines go out in batches: one write per event-loop turn or per 64 KB.
  let batch = ''
  let scheduled = false
  const flushBatch = (): void => {
    scheduled = false
    if (batch.length === 0) return
    const chunk = batch
    batch = ''
    if (!out.write(chunk) && source !== undefined && !paused) {
      paused = true
      source.pause()
      out.once('drain', () => {
        paused = false
        source?.resume()
      })
    }
  }
  const emit = (text: string): void => {
    batch += text
    if (batch.length >= 65_536) flushBatch()
    else if (!scheduled) {
      scheduled = true
      setImmediate(flushBatch)
    }
  }
  // Globals as pre-serialized JSON, rebuilt only when a value changes.
  const view = pipeline.addView(new Set())

  const write = (line: Line): void => {
    const problems = pipeline.problemsFor(line.problems)
    if (line.rest !== undefined) {
      // Fast path: enrichment spliced in after level and time, the line's own
      // fields after it, so they win, as pino's own bindings do.
      let text = line.head + view.fragment
      for (const g of view.mixinGlobals) if (line.ctx.level >= g.minLevel) text += fieldsJson(g.fields)
      for (const part of line.parts) if (part !== undefined) text += fieldsJson(part)
      if (problems !== undefined) text += `,${errorKeyJson}:${problemsJson(problems)}`
      emit(`${text}${line.rest}\n`)
      return
    }
    const obj = line.ctx.record as Record<string, unknown>
    const merged: Fields = { level: obj.level, time: obj.time }
    pipeline.assignGlobals(line.ctx.level, merged)
    pipeline.mergeParts(line, merged)
    if (problems !== undefined) merged[errorKey] = problems
    Object.assign(merged, obj)
    emit(`${JSON.stringify(merged)}\n`)
  }
  const errorKeyJson = JSON.stringify(errorKey)
  const queue = new OrderedQueue<Line>(pipeline, write)

  const onLine = (raw: string): void => {
    const now = pipeline.clock.now()
    if (now >= pipeline.nextCheck) pipeline.prepareGlobals()
    const split = splitLine(raw)
    let ctx: EnrichContext
    let head: string | undefined
    let rest: string | undefined
    if (split !== undefined) {
      head = split.head
      rest = split.rest
      ctx = new LineContext(split.level, split.capture?.t ?? split.time, captured(split.capture), raw)
    } else {
      let obj: Record<string, unknown>
      try {
        const parsed: unknown = JSON.parse(raw)
        if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new TypeError('not an object')
        obj = parsed as Record<string, unknown>
      } catch {
        // Not ours to judge: a line that is not a JSON object passes through untouched.
        emit(`${raw}\n`)
        return
      }
      const capture = obj[TRANSPORT_KEY] as TransportCapture | undefined
      if (capture !== undefined) delete obj[TRANSPORT_KEY]
      const time = typeof capture?.t === 'number' ? capture.t : typeof obj.time === 'number' ? obj.time : now
      ctx = { level: levelOf(obj.level), time, record: obj, context: captured(capture) }
    }
    const line: Line = {
      ctx,
      now,
      head,
      rest,
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
    flushBatch()
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
      { ...LINES, close: onClose },
    )
  }
  return build(
    (stream) => {
      source = stream
      stream.on('data', onLine)
      return out as PassThrough
    },
    { ...LINES, enablePipelining: true, close: onClose },
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
