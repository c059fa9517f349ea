import type { LoggerOptions } from 'pino'
import type { Enrichment } from '../core/enrichment.js'
import { snapshotOptions } from './snapshot.js'
import { DEFAULT_CONTEXT_KEYS, transportOptions } from './transport-capture.js'

/** How enrichment reaches pino's lines. */
export const PinoMode = {
  /** Synchronous: each line carries what is ready now; missing values are refreshed for the next. */
  Snapshot: 'snapshot',
  /** The call returns at once; the line is written when its enrichers answer or `deadlineMs` passes. */
  Deferred: 'deferred',
  /**
   * The main-thread half of `pino-enrich/transport`: no enrichment here, only
   * what the worker needs captured into each line, under {@link TRANSPORT_KEY}:
   * the request context, the active span, the `redact` option, and the call
   * time when `timestamp` is customised.
   */
  Transport: 'transport',
} as const
export type PinoMode = (typeof PinoMode)[keyof typeof PinoMode]

/**
 * Your own pino options plus `mode`. Pass them through here rather than
 * spreading beside the result, so that `mixin`, `redact`, `serializers`,
 * `formatters.log`, `timestamp` and `hooks.logMethod` compose with enrichment.
 */
export interface EnrichPinoOptions extends LoggerOptions {
  /** Default `'snapshot'`. */
  mode?: PinoMode
  /**
   * `mode: 'transport'` only: the request-context keys captured into each
   * line for the worker (string, number and boolean values). Default
   * `['requestId', 'method', 'route', 'userId']`.
   */
  contextKeys?: readonly string[]
}

/**
 * Builds pino options for a pipeline.
 *
 * Global enricher values are serialized into one fragment whenever they
 * change and appended by the `timestamp` function, so a line pays one string
 * concatenation for them, as pino pays for bindings. Keys that pino must see as
 * objects (redacted, serialized, bound by `base`, or all of them under
 * `formatters.log`) go through the mixin instead, as do all of them while
 * pino's `pino_asJson` tracing channel has subscribers (they are handed the
 * time string). Otherwise pino sees your options as you gave them: `base`,
 * `mixin`, `mixinMergeStrategy`, `hooks` and `onChild` apply as in pino. Keyed
 * and per-record enrichers go through the mixin. Precedence, whatever the
 * enricher's kind: the call site, then your `mixin`, then a child's bindings,
 * then request context, then enrichers, then `base`. Enricher keys a child
 * binds are left out of the mixin's object; a global one written in the
 * fragment comes before the bindings in the line.
 *
 * Reached by users through {@link Pipeline.pinoOptions}.
 */
export function buildPinoOptions(e: Enrichment, input: EnrichPinoOptions = {}): LoggerOptions {
  const { mode = PinoMode.Snapshot, contextKeys, ...user } = input
  if (mode === PinoMode.Transport) return transportOptions(e, user, contextKeys ?? DEFAULT_CONTEXT_KEYS)
  if (mode !== PinoMode.Snapshot && mode !== PinoMode.Deferred) {
    throw new TypeError(`mode must be 'snapshot', 'deferred' or 'transport', received ${JSON.stringify(mode)}`)
  }
  checkErrorKey(e.errorKey, user)
  return snapshotOptions(e, user, mode === PinoMode.Deferred)
}

/** The pipeline's problems key must not be the logger's message key: the line would hold it twice, and readers keep one. */
function checkErrorKey(errorKey: string, user: LoggerOptions): void {
  if ((user.messageKey ?? 'msg') === errorKey) {
    throw new TypeError(
      `the pipeline's errorKey ${JSON.stringify(errorKey)} is this logger's messageKey too; give one of them another name`,
    )
  }
}
