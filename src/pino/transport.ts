import { createRequire } from 'node:module'
import { isAbsolute, join, resolve } from 'node:path'
import { Transform, type TransformCallback, Writable } from 'node:stream'
import { StringDecoder } from 'node:string_decoder'
import { pathToFileURL } from 'node:url'
import { enrichmentOf } from '../core/enrichment.js'
import { type AnyEnricher, isEnricher } from '../enricher.js'
import { EnrichError, ErrorCodes } from '../errors.js'
import { Pipeline, type PipelineOptions } from '../pipeline.js'
import { LineEnricher, type Serializers } from './line-enricher.js'

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
  /**
   * A module (named as `enrichers` is) whose default export (or its
   * `serializers` export) is an object of pino serializers, by top-level
   * key, applied in the worker to the fields it adds, before the logger's
   * `redact`. The logger's own `serializers` apply on the main thread to the
   * call's fields only: functions cannot cross into the worker. Default none.
   */
  serializers?: string
}

/**
 * A pino transport that enriches lines in the worker thread. Lines leave in
 * the order they arrived, each delayed at most `deadlineMs`; problems are
 * recorded under `errorKey` as in process. When the input ends (logger
 * flush, `transport.end()`, process exit) pending lines are written within
 * `closeTimeoutMs`.
 *
 * As a `pipeline` step it is a Transform of text: pino's chunks in, enriched
 * chunks out, strings both ways. Alone, with `destination`, it is a Writable
 * onto a SonicBoom destination, as `pino/file` writes.
 *
 * @throws EnrichError (`ENRICH_TRANSPORT_LOAD`) at start when the enrichers module cannot be loaded or exports something else
 */
export default async function enrichTransport(options: TransportOptions): Promise<Writable> {
  const serializers = options?.serializers === undefined ? undefined : await loadSerializers(options.serializers)
  const pipeline = await loadPipeline(options)
  await pipeline.ready({ timeoutMs: options.readyTimeoutMs ?? 1_000 })
  if (options.destination === undefined) return new EnrichStep(pipeline, serializers)
  const dest = await openDestination(options.destination, options.mkdir === true)
  return new EnrichToDestination(pipeline, dest, serializers)
}

/** The transport as a pipeline step. */
class EnrichStep extends Transform {
  readonly #lines: LineEnricher
  readonly #decoder = new StringDecoder('utf8')

  constructor(pipeline: Pipeline, serializers?: Serializers) {
    // Strings in and out: the next step (pino/file, pino-pretty) takes them as they are.
    super({ decodeStrings: false, encoding: 'utf8' })
    this.#lines = new LineEnricher(
      enrichmentOf(pipeline),
      (text) => {
        this.push(text)
      },
      serializers,
    )
  }

  override _transform(chunk: string | Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    // A large chunk is taken over several turns: the next comes once it is.
    this.#lines.write(typeof chunk === 'string' ? chunk : this.#decoder.write(chunk), done)
  }

  override _flush(done: TransformCallback): void {
    const rest = this.#decoder.end()
    if (rest.length !== 0) this.#lines.write(rest)
    this.#lines.end().then(() => done(), done)
  }

  override _destroy(error: Error | null, done: (error?: Error | null) => void): void {
    this.#lines.abort()
    done(error)
  }
}

/** A SonicBoom, as pino.destination() makes it. */
export type Destination = NodeJS.EventEmitter & {
  write(text: string): boolean
  flush(done: (error?: Error | null) => void): void
  end(): void
  destroy(): void
  readonly destroyed: boolean
}

/** The transport alone, writing to its own destination. Exported for the tests. */
export class EnrichToDestination extends Writable {
  readonly #lines: LineEnricher
  readonly #dest: Destination
  readonly #decoder = new StringDecoder('utf8')
  #full = false
  /** Text handed to the destination that it has not finished writing. */
  #writing = false

  constructor(pipeline: Pipeline, dest: Destination, serializers?: Serializers) {
    super({ decodeStrings: false })
    this.#dest = dest
    this.#lines = new LineEnricher(
      enrichmentOf(pipeline),
      (text) => {
        // A destination that failed has been reported through 'error'; writing to it would throw.
        if (dest.destroyed) return
        this.#writing = true
        if (!dest.write(text)) this.#full = true
      },
      serializers,
    )
    dest.on('error', (e) => this.destroy(e))
    // SonicBoom says 'drain' each time it has written everything it was given.
    // #full is whether it refused text since: a chunk taken over several turns may see it drain in between.
    dest.on('drain', () => {
      this.#writing = false
      this.#full = false
    })
  }

  override _write(chunk: string | Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.#lines.write(typeof chunk === 'string' ? chunk : this.#decoder.write(chunk), () => {
      if (!this.#full) {
        done()
        return
      }
      // The destination is behind: take no more until it drains.
      this.#dest.once('drain', () => done())
    })
  }

  /**
   * `logger.flush(cb)` reaches here through thread-stream once the worker has
   * taken every line logged before it: each is enriched (or reaches its
   * deadline), handed to the destination, and written by it.
   */
  flush(done: (error?: Error | null) => void): void {
    this.#lines.settled().then(() => {
      const dest = this.#dest
      if (dest.destroyed) done(new Error('pino-enrich/transport: the destination has closed'))
      // pino/file's flush does not wait for a write in progress: wait for it here.
      else if (this.#writing) dest.once('drain', () => dest.flush(done))
      else dest.flush(done)
    }, done)
  }

  override _final(done: (error?: Error | null) => void): void {
    const rest = this.#decoder.end()
    if (rest.length !== 0) this.#lines.write(rest)
    this.#lines.end().then(() => {
      if (this.#dest.destroyed) {
        done()
        return
      }
      this.#dest.once('close', () => done())
      try {
        this.#dest.end()
      } catch (e) {
        done(e as Error)
      }
    }, done)
  }

  override _destroy(error: Error | null, done: (error?: Error | null) => void): void {
    this.#lines.abort()
    if (!this.#dest.destroyed) this.#dest.destroy()
    done(error)
  }
}

/** The module an option names (`enrichers`, `serializers`); a bad name or a failed import is a start-up error. */
async function importOption(option: string, spec: unknown): Promise<Record<string, unknown>> {
  if (typeof spec !== 'string' || spec.length === 0) {
    throw new EnrichError(
      ErrorCodes.TRANSPORT_LOAD,
      `pino-enrich/transport: options.${option} must name a module exporting ${option}, received ${JSON.stringify(spec)}`,
    )
  }
  try {
    return (await import(toUrl(spec))) as Record<string, unknown>
  } catch (e) {
    throw new EnrichError(
      ErrorCodes.TRANSPORT_LOAD,
      `pino-enrich/transport: cannot load ${option} module ${JSON.stringify(spec)}: ${e instanceof Error ? e.message : String(e)}`,
      { cause: e },
    )
  }
}

async function loadPipeline(options: TransportOptions): Promise<Pipeline> {
  const spec = options?.enrichers
  const mod = await importOption('enrichers', spec)
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
    serializers: _s,
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

async function loadSerializers(spec: unknown): Promise<Serializers> {
  const mod = await importOption('serializers', spec)
  const exported = mod.default ?? mod.serializers
  const bad =
    typeof exported !== 'object' || exported === null
      ? typeof exported
      : Object.entries(exported).find(([, f]) => typeof f !== 'function')?.[0]
  if (bad !== undefined) {
    throw new EnrichError(
      ErrorCodes.TRANSPORT_LOAD,
      `pino-enrich/transport: ${JSON.stringify(spec)} must export (default or \`serializers\`) an object of functions by key, received ${typeof exported === 'object' && exported !== null ? `a non-function under ${JSON.stringify(bad)}` : bad}`,
    )
  }
  return exported as Serializers
}

function toUrl(spec: string): string {
  if (spec.startsWith('file:')) return spec
  if (isAbsolute(spec)) return pathToFileURL(spec).href
  if (spec.startsWith('.')) return pathToFileURL(resolve(process.cwd(), spec)).href
  return pathToFileURL(createRequire(join(process.cwd(), 'noop.js')).resolve(spec)).href
}

async function openDestination(dest: string | number, mkdir: boolean): Promise<Destination> {
  const { default: pino } = await import('pino')
  const stream = pino.destination({ dest, sync: false, mkdir })
  await new Promise<void>((ready, fail) => {
    stream.once('ready', ready)
    stream.once('error', fail)
  })
  return stream as unknown as Destination
}
