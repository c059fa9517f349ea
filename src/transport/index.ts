import type { Writable } from 'node:stream'
import { loadPipeline, loadSerializers, type TransportOptions } from './load.js'
import { EnrichStep, EnrichToDestination, openDestination } from './streams.js'

// The worker side of `pino-enrich/transport`. pino's thread-stream hands the
// worker the main thread's lines in chunks; load.ts builds the pipeline (and
// the serializers) the options name, streams.ts wraps it as a pipeline step or
// a writer onto its own destination, and line-enricher.ts enriches each line:
// line-shape.ts finds the level, time and capture the main thread wrote, and
// the enrichment is spliced in after the time.

export type { TransportOptions } from './load.js'
export { type Destination, EnrichToDestination } from './streams.js'

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
