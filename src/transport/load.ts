import { createRequire } from 'node:module'
import { isAbsolute, join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { type AnyEnricher, isEnricher } from '../enricher.js'
import { EnrichError, ErrorCodes } from '../errors.js'
import { Pipeline, type PipelineOptions } from '../pipeline.js'
import type { Serializers } from './line-enricher.js'

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

/** The pipeline the `enrichers` module names, made with the transport's pipeline options. */
export async function loadPipeline(options: TransportOptions): Promise<Pipeline> {
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

/** The serializers the `serializers` module names. */
export async function loadSerializers(spec: unknown): Promise<Serializers> {
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
