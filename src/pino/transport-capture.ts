import { createRequire } from 'node:module'
import pino, { type LoggerOptions } from 'pino'
import type { Enrichment } from '../core/enrichment.js'
import { BoundKeys } from './bound-keys.js'
import { timeFormatter } from './user-options.js'

/** Where the main thread puts what the transport worker needs; the worker removes it. */
export const TRANSPORT_KEY = '@pino-enrich'

/**
 * How the capture opens on the line: `,"@pino-enrich" :`. The space before
 * the colon is valid JSON that pino's serializer never writes (it puts no
 * whitespace between tokens, and a `"` inside a string is escaped), so no
 * logged payload, message or key can produce it: the worker reads only the
 * first one on a line, which is the one the main thread wrote.
 */
export const CAPTURE_OPEN = `,${JSON.stringify(TRANSPORT_KEY)} :`

/**
 * What the main thread captures for the worker: `c` the request context,
 * `b` with it the top-level keys the logger's bindings set (but pid and
 * hostname), whose context fields the worker leaves out, `s` the active span
 * (trace id, span id and trace flags as hex, 32 + 16 + 2 digits), `r` the
 * logger's `redact` option, `t` the call time.
 */
export interface TransportCapture {
  c?: Record<string, unknown>
  b?: string[]
  s?: string
  r?: { paths: string[]; censor?: unknown; remove?: boolean }
  t?: number
}

/** `contextKeys` when not given. */
export const DEFAULT_CONTEXT_KEYS: readonly string[] = ['requestId', 'method', 'route', 'userId']

/** The part of `@opentelemetry/api` the capture reads. */
interface OtelApi {
  context: { active(): unknown }
  trace: { getSpanContext(context: never): { traceId: string; spanId: string; traceFlags: number } | undefined }
  isSpanContextValid(sc: { traceId: string; spanId: string; traceFlags: number }): boolean
}

let otel: { api: OtelApi | undefined } | undefined

/** `@opentelemetry/api` as installed beside the application, loaded once; undefined without it. */
function otelApi(): OtelApi | undefined {
  if (otel === undefined) {
    let api: OtelApi | undefined
    try {
      const m = createRequire(import.meta.url)('@opentelemetry/api') as Partial<OtelApi> | null
      if (
        typeof m?.context?.active === 'function' &&
        typeof m.trace?.getSpanContext === 'function' &&
        typeof m.isSpanContextValid === 'function'
      )
        api = m as OtelApi
    } catch {
      api = undefined
    }
    otel = { api }
  }
  return otel.api
}

/** The user's `redact` as the capture carries it, as JSON; '' for none. */
function redactJson(redact: LoggerOptions['redact']): string {
  if (redact === undefined) return ''
  const r = (Array.isArray(redact) ? { paths: redact } : redact) as {
    paths?: unknown
    censor?: unknown
    remove?: unknown
  }
  if (!Array.isArray(r.paths) || r.paths.some((x) => typeof x !== 'string')) {
    throw new TypeError(
      `redact must be an array of path strings or { paths, censor, remove }, received ${JSON.stringify(redact)}`,
    )
  }
  if (r.paths.length === 0) return ''
  if (typeof r.censor === 'function') {
    // A function cannot cross into the worker thread, where enriched fields are added.
    throw new TypeError(
      "redact.censor cannot be a function with mode 'transport': enriched fields are redacted in the worker thread, which a function cannot reach; use a value",
    )
  }
  const out: TransportCapture['r'] = { paths: r.paths as string[] }
  if (r.censor !== undefined) out.censor = r.censor
  if (r.remove === true) out.remove = true
  return `"r":${JSON.stringify(out)}`
}

// Trace flags as two hex digits, made once.
const FLAGS = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'))

/**
 * The main-thread half of the transport. Every line carries a capture,
 * appended by the `timestamp` function as ready JSON right after the time,
 * before pino's bindings and the call's fields: `,"@pino-enrich" :{...}`,
 * `{}` when there is nothing to carry. Written on every line, it is always
 * the first on the line, so a key planted further on is never read.
 */
export function transportOptions(e: Enrichment, user: LoggerOptions, contextKeys: readonly string[]): LoggerOptions {
  if (!Array.isArray(contextKeys) || contextKeys.some((k) => typeof k !== 'string' || k.length === 0)) {
    throw new TypeError(`contextKeys must be an array of non-empty strings, received ${JSON.stringify(contextKeys)}`)
  }
  const keys = [...contextKeys]
  const keyJson = keys.map((k) => `${JSON.stringify(k)}:`)
  const timePart = timeFormatter(user.timestamp)
  // pino's own `time` is the call time unless the user replaced or removed it.
  const withTime =
    user.timestamp !== undefined && user.timestamp !== true && user.timestamp !== pino.stdTimeFunctions.epochTime
  const redact = redactJson(user.redact)
  const api = otelApi()
  const getContext = e.context.get
  const clock = e.clock
  // Lines of one request capture the same values: the capture's text is kept
  // and made again only when a value differs from the last line's.
  const last: unknown[] = new Array(keys.length).fill(undefined)
  let traceId = ''
  let spanId = ''
  let flags = -1
  let lastSpan: object | undefined
  // The logger's binding keys, sent with a context only: the worker needs them for its context fields.
  const bindings = new BoundKeys()
  let bound = ''
  let noContext = true
  let otherBound = ''
  let otherCapture = ''
  const build = (): string => {
    let context = ''
    for (let i = 0; i < keys.length; i++) {
      const v = last[i]
      const t = typeof v
      // NaN and Infinity have no JSON form: left out, as a non-primitive is.
      if (t === 'string') context += `${context.length === 0 ? '' : ','}${keyJson[i]}${quote(v as string)}`
      else if ((t === 'number' && Number.isFinite(v)) || t === 'boolean')
        context += `${context.length === 0 ? '' : ','}${keyJson[i]}${String(v)}`
    }
    noContext = context.length === 0
    let members = noContext ? '' : `"c":{${context}}${bound.length === 0 ? '' : `,${bound}`}`
    if (flags !== -1) members += `${members.length === 0 ? '' : ','}"s":"${traceId}${spanId}${FLAGS[flags & 0xff]}"`
    if (redact.length !== 0) members += `${members.length === 0 ? '' : ','}${redact}`
    if (withTime) return `${CAPTURE_OPEN}{${members}${members.length === 0 ? '' : ','}"t":`
    return `${CAPTURE_OPEN}{${members}}`
  }
  let capture = build()
  // A line logged while a line's context is read (by a user(req) or a context getter that logs)
  // carries no context of its own: reading it again would call that code again, without end.
  const bare = withTime
    ? `${CAPTURE_OPEN}{${redact}${redact.length === 0 ? '' : ','}"t":`
    : `${CAPTURE_OPEN}{${redact}}`
  let capturing = false
  // pino calls it on the logger writing the line (and once without one, at construction).
  const timestamp = function (this: pino.Logger | undefined): string {
    const now = clock.now()
    if (capturing) return withTime ? `${timePart(now)}${bare}${now}}` : timePart(now) + bare
    capturing = true
    try {
      return capture1(now, this === undefined ? '' : bindings.member(this))
    } finally {
      capturing = false
    }
  }
  const capture1 = (now: number, b: string): string => {
    const c = getContext() as Record<string, unknown> | undefined
    let changed = false
    for (let i = 0; i < keys.length; i++) {
      const v = c === undefined ? undefined : read(c, keys[i] as string)
      if (v !== last[i]) {
        last[i] = v
        changed = true
      }
    }
    if (api !== undefined) {
      let sc: ReturnType<OtelApi['trace']['getSpanContext']>
      try {
        sc = api.trace.getSpanContext(api.context.active() as never)
      } catch {
        // A span of the application's making that throws: the line is written without one.
        sc = undefined
      }
      // A span hands out the same span context object on every call: checked (two regular expressions) once.
      if (sc !== lastSpan) {
        lastSpan = sc
        const ids = sc === undefined ? undefined : spanIds(api, sc)
        if (ids === undefined) {
          if (flags !== -1) {
            flags = -1
            changed = true
          }
        } else if (ids.traceId !== traceId || ids.spanId !== spanId || ids.traceFlags !== flags) {
          traceId = ids.traceId
          spanId = ids.spanId
          flags = ids.traceFlags
          changed = true
        }
      }
    }
    if (changed) {
      bound = b
      otherCapture = ''
      capture = build()
    } else if (b !== bound) {
      // Lines of two loggers in turn (request.log and app.log): the other's capture is kept for its next line.
      const next = b === otherBound && otherCapture !== '' ? otherCapture : noContext ? capture : undefined
      otherBound = bound
      otherCapture = capture
      bound = b
      capture = next ?? build()
    }
    return withTime ? `${timePart(now)}${capture}${now}}` : timePart(now) + capture
  }
  return { ...user, timestamp }
}

/** A valid span context's ids, read once each; undefined for an invalid one or one whose getters throw. */
function spanIds(
  api: OtelApi,
  sc: { traceId: string; spanId: string; traceFlags: number },
): { traceId: string; spanId: string; traceFlags: number } | undefined {
  try {
    const ids = { traceId: sc.traceId, spanId: sc.spanId, traceFlags: sc.traceFlags }
    return api.isSpanContextValid(ids) && Number.isInteger(ids.traceFlags) ? ids : undefined
  } catch {
    return undefined
  }
}

/** A context value; a getter that throws costs its own key, never the line. */
function read(c: Record<string, unknown>, key: string): unknown {
  try {
    return c[key]
  } catch {
    return undefined
  }
}

/** A JSON string: short plain strings by concatenation, the rest by JSON.stringify. */
export function quote(s: string): string {
  if (s.length > 64) return JSON.stringify(s)
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 32 || c === 34 || c === 92 || c > 126) return JSON.stringify(s)
  }
  return `"${s}"`
}
