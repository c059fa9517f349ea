import { Transform, type TransformCallback, Writable } from 'node:stream'
import { StringDecoder } from 'node:string_decoder'
import { enrichmentOf } from '../core/enrichment.js'
import type { Pipeline } from '../pipeline.js'
import { LineEnricher, type Serializers } from './line-enricher.js'

/** The transport as a pipeline step. */
export class EnrichStep extends Transform {
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
  /** Flushes waiting for the chunks written before them to be taken. */
  #idle: Array<() => void> = []

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
        this.#taken(done)
        return
      }
      // The destination is behind: take no more until it drains.
      this.#dest.once('drain', () => this.#taken(done))
    })
  }

  /** A chunk is taken: the next one buffered is taken in `done`; once none is left, waiting flushes go on. */
  #taken(done: (error?: Error | null) => void): void {
    done()
    if (this.writableLength === 0) this.#goOn()
  }

  #goOn(): void {
    const idle = this.#idle
    this.#idle = []
    for (const resolve of idle) resolve()
  }

  /**
   * `logger.flush(cb)` reaches here through thread-stream once the worker has
   * taken every line logged before it: each is enriched (or reaches its
   * deadline), handed to the destination, and written by it.
   */
  flush(done: (error?: Error | null) => void): void {
    // thread-stream asks once write() took the text, not once _write() did: chunks taken while the
    // destination was full wait in this stream's buffer, and their lines were logged before the flush.
    const taken =
      this.writableLength === 0 ? Promise.resolve() : new Promise<void>((resolve) => this.#idle.push(resolve))
    taken
      .then(() => this.#lines.settled())
      .then(() => {
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
    this.#goOn()
    if (!this.#dest.destroyed) this.#dest.destroy()
    done(error)
  }
}

/** A SonicBoom on `dest`, as `pino/file` opens it, once it is ready. */
export async function openDestination(dest: string | number, mkdir: boolean): Promise<Destination> {
  const { default: pino } = await import('pino')
  const stream = pino.destination({ dest, sync: false, mkdir })
  await new Promise<void>((ready, fail) => {
    stream.once('ready', ready)
    stream.once('error', fail)
  })
  return stream as unknown as Destination
}
