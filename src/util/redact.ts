import { createRequire } from 'node:module'
import type { Fields } from '../enricher.js'

/** pino's `redact` option in the form that crosses into the transport worker: no censor function. */
export interface RedactSpec {
  paths: string[]
  /** Default `'[Redacted]'`, as pino's. */
  censor?: unknown
  /** Default false. */
  remove?: boolean
}

/** Fields as JSON members (`,"k":v...`), with the redaction applied. */
export type RedactWriter = (fields: Fields) => string

type Factory = (options: {
  paths: string[]
  censor: unknown
  remove: boolean
  serialize: (o: unknown) => string
  strict: boolean
}) => (o: object) => string

let factory: Factory | undefined

/**
 * The redactor pino itself uses (`@pinojs/redact` from pino 10, `fast-redact`
 * before), resolved through pino so that the same code and path syntax apply
 * and pino-enrich adds no dependency.
 *
 * @throws Error when neither can be resolved through the installed pino
 */
function redactFactory(): Factory {
  if (factory !== undefined) return factory
  const fromPino = createRequire(createRequire(import.meta.url).resolve('pino'))
  for (const name of ['@pinojs/redact', 'fast-redact']) {
    try {
      factory = fromPino(name) as Factory
      return factory
    } catch {
      // Try the next: pino 9 used fast-redact.
    }
  }
  throw new Error("pino-enrich: cannot load pino's redactor (@pinojs/redact or fast-redact) through the installed pino")
}

/**
 * A writer that serializes enrichment fields with pino's redaction: censored
 * with `censor` (default `'[Redacted]'`, as pino), or left out with `remove`.
 * The fields and the cached values in them are not changed: the redactor
 * copies what it censors.
 *
 * @throws Error when pino's redactor cannot be loaded; whatever it throws for malformed paths
 */
export function redactWriter(spec: RedactSpec): RedactWriter {
  const remove = spec.remove === true
  const redact = redactFactory()({
    paths: spec.paths,
    censor: remove ? undefined : spec.censor === undefined ? '[Redacted]' : spec.censor,
    remove,
    serialize: JSON.stringify,
    strict: false,
  })
  return (fields) => {
    const json = redact(fields)
    return json.length <= 2 ? '' : `,${json.slice(1, -1)}`
  }
}
