import { type ContextWriter, MAX_CONTEXT_VALUE_LENGTH } from '../context/writer.js'
import { type Collector, KeyedRead } from '../core/collect.js'
import type { Enrichment } from '../core/enrichment.js'
import type { Globals, View } from '../core/globals.js'
import { Line } from '../core/line.js'
import { OrderedQueue } from '../core/ordered-queue.js'
import { type Problems, problemsJson } from '../core/problems.js'
import type { Registry } from '../core/registry.js'
import type { EnrichContext, Fields, SpanIds } from '../enricher.js'
import { LEVELS } from '../enricher.js'
import { readBoundKeys } from '../pino/bound-keys.js'
import { quote, type TransportCapture } from '../pino/transport-capture.js'
import { within } from '../util/async.js'
import { EMPTY, noop } from '../util/constants.js'
import { type RedactSpec, type RedactWriter, redactWriter } from '../util/redact.js'
import { ending, readShape, type Shape } from './line-shape.js'

/** A line of the worker's: a {@link Line} with the text it is spliced into. */
class WorkerLine extends Line {
  /** Fast path: the line up to its time, and the rest without our capture, with its line ending. */
  readonly head: string | undefined
  readonly rest: string | undefined
  /** A line passed through as it is (not a JSON object), with its line ending. */
  readonly verbatim: string | undefined
  /** The line's own ending, `\n` or `\r\n`. */
  readonly eol: string
  /** Its capture's writer for serializers and redaction, if any. */
  readonly redact: RedactWriter | undefined

  constructor(
    ctx: EnrichContext,
    now: number,
    deadlineMs: number,
    head: string | undefined,
    rest: string | undefined,
    verbatim: string | undefined,
    eol: string,
    redact: RedactWriter | undefined,
  ) {
    super(ctx, now, deadlineMs)
    this.head = head
    this.rest = rest
    this.verbatim = verbatim
    this.eol = eol
    this.redact = redact
  }
}

/** A line's context whose `record` is parsed only if an enricher reads it. */
class LineContext implements EnrichContext {
  readonly level: number
  readonly time: number
  readonly context: Record<string, unknown> | undefined
  readonly trace: EnrichContext['trace']
  /** The line without the capture, in two pieces joined only if `record` is read. */
  readonly #head: string
  readonly #rest: string
  #record: Record<string, unknown> | undefined

  constructor(
    level: number,
    time: number,
    cap: Captured,
    head: string,
    rest: string,
    record?: Record<string, unknown>,
  ) {
    this.level = level
    this.time = time
    this.context = cap.context
    this.trace = cap.trace
    this.#head = head
    this.#rest = rest
    this.#record = record
  }

  get record(): Readonly<Record<string, unknown>> {
    if (this.#record === undefined) {
      let obj: unknown
      try {
        obj = JSON.parse(this.#head + this.#rest)
      } catch {
        obj = undefined
      }
      this.#record = typeof obj === 'object' && obj !== null ? (obj as Record<string, unknown>) : {}
    }
    return this.#record
  }
}

/** What a capture's text means, worked out once per distinct text. */
interface Captured {
  /** The capture's text, a copy of its own. */
  text: string
  context: Record<string, unknown> | undefined
  trace: SpanIds | undefined
  time: number | undefined
  /** Writes the line's enriched fields through the transport's serializers and the logger's redaction; undefined for neither. */
  redact: RedactWriter | undefined
  /**
   * The context-fields writer for its lines when the logger's bindings (`b`)
   * carry some of their keys: it leaves those out. Undefined for the
   * pipeline's own.
   */
  contexts: ContextWriter<Problems> | undefined
  /** The context-fields enrichers' output for this context, as JSON members. */
  contextJson: string
  /**
   * A context string too long for the writer to take: its lines are gathered,
   * so that each records the refusal (`invalid`) as in process.
   */
  refused: boolean
}

const NONE: Captured = {
  text: '',
  context: undefined,
  trace: undefined,
  time: undefined,
  redact: undefined,
  contexts: undefined,
  contextJson: '',
  refused: false,
}

const SPAN = /^([0-9a-f]{32})([0-9a-f]{16})([0-9a-f]{2})$/

function spanOf(s: unknown): SpanIds | undefined {
  const m = typeof s === 'string' ? SPAN.exec(s) : null
  if (m === null) return undefined
  return Object.freeze({
    traceId: m[1] as string,
    spanId: m[2] as string,
    traceFlags: Number.parseInt(m[3] as string, 16),
  })
}

/**
 * A flat copy of a string: for a short one sliced from a chunk, one that does
 * not keep the chunk alive (V8's slices point into their parent, and a cache
 * of them holds every chunk they came from); for a rope, one that is not
 * walked piece by piece each time it is read. Flattening a one-character cons
 * copies the text.
 */
function own(s: string): string {
  return ` ${s}`.slice(1)
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

// A cached value is frozen and the same object on every line that hits it:
// its JSON is made once. A function enricher's fresh result is not kept.
const frozenJson = new WeakMap<Fields, string>()

function partJson(fields: Fields): string {
  let text = frozenJson.get(fields)
  if (text === undefined) {
    text = fieldsJson(fields)
    if (Object.isFrozen(fields)) frozenJson.set(fields, text)
  }
  return text
}

/** Whether a context holds a string the context writer refuses for its length. */
function hasOverLong(c: Record<string, unknown>): boolean {
  for (const k of Object.keys(c)) {
    const v = c[k]
    if (typeof v === 'string' && v.length > MAX_CONTEXT_VALUE_LENGTH) return true
  }
  return false
}

/** The JSON object a line holds, or undefined when it holds something else. */
function objectOf(text: string): Record<string, unknown> | undefined {
  // Text that cannot open an object is not parsed: a throw costs 5-10 us, so a plain-text line took 6 times a JSON one.
  let i = 0
  let c = text.charCodeAt(0)
  // JSON's own whitespace: space, tab, LF, CR.
  while (c === 32 || c === 9 || c === 10 || c === 13) c = text.charCodeAt(++i)
  if (c !== 123) return undefined
  try {
    const parsed: unknown = JSON.parse(text)
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)
      ? (parsed as Record<string, unknown>)
      : undefined
  } catch {
    return undefined
  }
}

function levelOf(level: unknown): number {
  if (typeof level === 'number') return level
  if (typeof level === 'string' && Object.hasOwn(LEVELS, level)) return LEVELS[level as keyof typeof LEVELS]
  return LEVELS.info
}

/** pino serializers by top-level key, as `serializers` takes them. */
export type Serializers = Readonly<Record<string, (value: unknown) => unknown>>

/** What {@link LineEnricher} last put after the time for a capture and level. */
interface Memo {
  cap: Captured
  level: number
  fragment: string
  mixinGlobals: View['mixinGlobals']
  problems: Problems | undefined
  /** The keyed values it was made with, by position: cached values are the same objects while they stand. */
  parts: ReadonlyArray<Fields | undefined>
  text: string
}

const NO_PARTS: ReadonlyArray<Fields | undefined> = Object.freeze([])

const isFrozen = (part: Fields | undefined): boolean => part === undefined || Object.isFrozen(part)

/** Whether two lines' keyed values are the same objects, position by position. */
function sameParts(a: ReadonlyArray<Fields | undefined>, b: ReadonlyArray<Fields | undefined>): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** Output is handed on in pieces of about this many characters, or once per chunk. */
const BATCH = 65_536

/**
 * Most lines taken in one turn of the event loop, and most time, in ms.
 * thread-stream hands the worker everything in its buffer at once (up to
 * 4 MB, 30,000 lines): taken in one go, no compute could settle and every
 * deadline would pass meanwhile. Warm, 1,000 lines take a millisecond or
 * two; the time bound holds while the code is cold or the lines are long.
 */
const LINES_PER_TURN = 1_000
const MS_PER_TURN = 2

/** A chunk being taken over several turns: resolves when its last line is taken. */
class Taking {
  readonly promise: Promise<void>
  #resolve: () => void = noop
  constructor() {
    this.promise = new Promise((resolve) => {
      this.#resolve = resolve
    })
  }
  finish(): undefined {
    this.#resolve()
    return undefined
  }
}

/**
 * The worker side of `pino-enrich/transport`: takes pino's output in chunks of
 * whole and partial lines, and hands on enriched text through `out`.
 *
 * A line with no line waiting ahead of it whose keyed values are all at hand
 * ({@link Collector.readCached}) goes out in the same call, spliced in
 * place: the line up to its time, the prepared globals, the cached keyed
 * values and context fields, then the rest of the line without the capture.
 * No line object is made for it, and with global enrichers only not even its
 * context. A line with a value to wait for, a line behind one, and every
 * line while a function enricher is registered, is gathered (cached values
 * are taken at once, keys already read are not read again) and queued in
 * arrival order, as in process, and goes out when ready or at its deadline,
 * spliced the same way.
 */
export class LineEnricher {
  readonly #e: Enrichment
  // What a line reads of the enrichment, one hop away.
  readonly #registry: Registry
  readonly #values: Globals
  readonly #collect: Collector
  readonly #out: (text: string) => void
  readonly #queue: OrderedQueue<WorkerLine>
  /** The keyed read of the line being taken, reused line after line. */
  readonly #keyedRead = new KeyedRead()
  readonly #view: View
  readonly #errorKeyJson: string
  readonly #shape: Shape = { level: 0, time: 0, capture: undefined, insert: 0, at: 0, end: 0 }
  /** The start of a line the last chunk ended inside, in the pieces it came in. */
  #carry: string[] = []
  #parts: string[] = []
  #length = 0
  #scheduled = false
  #inChunk = false
  /** The next turn of a chunk taken over several, and what waits for its end. */
  #resume: NodeJS.Immediate | undefined = undefined
  #taking: Taking | undefined = undefined
  #aborted = false
  // Lines of one request carry the same capture text: it is parsed, and its
  // context-fields output serialized, once while it keeps recurring.
  readonly #captures = new Map<string, Captured>()
  readonly #redactors = new Map<string, RedactWriter>()
  #writer: Registry['writeContexts']
  #lastText: string | undefined
  #last: Captured = NONE
  #otherText: string | undefined
  #other: Captured = NONE
  #memo: Memo | undefined
  #otherMemo: Memo | undefined

  readonly #serializers: Serializers | undefined
  /** Lines with no capture, when serializers apply to every line. */
  readonly #none: Captured

  constructor(e: Enrichment, out: (text: string) => void, serializers?: Serializers) {
    this.#e = e
    this.#registry = e.registry
    this.#values = e.globals
    this.#collect = e.collect
    this.#out = out
    this.#serializers = serializers
    this.#none = serializers === undefined ? NONE : { ...NONE, redact: this.#objectWriter(undefined) }
    this.#errorKeyJson = JSON.stringify(e.errorKey)
    this.#writer = e.registry.writeContexts
    // Globals as pre-serialized JSON, rebuilt only when a value changes.
    this.#view = e.globals.view(new Set())
    this.#queue = new OrderedQueue<WorkerLine>(e, (line) => this.#write(line))
  }

  /**
   * Takes a chunk of pino's output: complete lines are enriched, a trailing
   * partial line is kept. `done` is called once every line of the chunk is
   * taken: at once for a small chunk, else after as many turns of the event
   * loop as {@link LINES_PER_TURN} and {@link MS_PER_TURN} take, so that computes settle and
   * deadlines fire while a backlog of megabytes is taken (a stream that waits
   * for `done` takes no more meanwhile).
   */
  write(chunk: string, done: () => void = noop): void {
    if (this.#aborted) {
      done()
      return
    }
    const first = chunk.indexOf('\n')
    if (first === -1) {
      // Still inside one line: kept in pieces, so a long line arriving in
      // many chunks is neither copied nor searched again each time.
      if (chunk.length !== 0) this.#carry.push(chunk)
      done()
      return
    }
    const carried = this.#carry.length === 0 ? '' : this.#carry.join('')
    this.#carry = []
    const text = carried.length === 0 ? chunk : carried + chunk
    this.#take(text, 0, carried.length + first, done)
  }

  /** Takes the lines of `text` from `start` (`nl` is its first newline), as many as one turn allows. */
  #take(text: string, start: number, nl: number, done: () => void): void {
    const now = this.#e.clock.now()
    const values = this.#values
    if (now >= values.nextCheck) values.prepare()
    this.#inChunk = true
    const started = performance.now()
    let taken = 0
    try {
      for (; nl !== -1; nl = text.indexOf('\n', start)) {
        if (++taken % 64 === 0 && (taken > LINES_PER_TURN || performance.now() - started > MS_PER_TURN)) break
        this.#line(text, start, nl > start && text.charCodeAt(nl - 1) === 13 ? nl - 1 : nl, nl + 1, now)
        start = nl + 1
      }
      if (nl === -1 && start !== text.length) this.#carry.push(text.slice(start))
    } finally {
      this.#inChunk = false
    }
    this.#flush()
    if (nl === -1) {
      done()
      return
    }
    const from = start
    const at = nl
    this.#taking ??= new Taking()
    this.#resume = setImmediate(() => {
      this.#resume = undefined
      if (this.#aborted) done()
      else this.#take(text, from, at, done)
      if (this.#resume === undefined) this.#taking = this.#taking?.finish()
    })
  }

  /**
   * The input has ended: a last line without a newline is taken, in-flight
   * enrichment gets at most `closeTimeoutMs`, then what is left goes out as it
   * is and the pipeline closes.
   */
  async end(): Promise<void> {
    if (this.#carry.length !== 0) {
      const text = this.#carry.join('')
      this.#carry = []
      this.#line(text, 0, text.length, text.length, this.#e.clock.now())
    }
    await within(this.#queue.whenEmpty(), this.#e.closeTimeoutMs)
    this.#queue.close()
    await this.#e.close()
    this.#flush()
  }

  /**
   * Resolves once every line taken so far has been handed on: those waiting
   * on enrichment go at their deadline at the latest.
   */
  async settled(): Promise<void> {
    if (this.#taking !== undefined) await this.#taking.promise
    await this.#queue.whenEmpty()
    this.#flush()
  }

  /** Stops at once (the stream was destroyed): timers and caches closed, nothing more handed on. */
  abort(): void {
    if (this.#aborted) return
    this.#aborted = true
    if (this.#resume !== undefined) clearImmediate(this.#resume)
    this.#resume = undefined
    this.#taking = this.#taking?.finish()
    // Whatever is still waiting can go nowhere now.
    this.#e.counters.dropped += this.#queue.size
    this.#parts = []
    this.#length = 0
    this.#queue.close()
    this.#e.close().catch(() => {})
  }

  /** One line `t[s, e)`; `next` is where the one after it starts. */
  #line(t: string, s: number, e: number, next: number, now: number): void {
    const registry = this.#registry
    const shape = this.#shape
    let ctx: EnrichContext
    let from: KeyedRead | undefined
    let head: string | undefined
    let rest: string | undefined
    let redact: RedactWriter | undefined
    let record: Record<string, unknown> | undefined
    let contexts: ContextWriter<Problems> | undefined
    if (readShape(t, s, e, shape, this.#lastText, this.#otherText)) {
      const cap = this.#understand(shape.capture)
      head = t.slice(s, shape.insert)
      rest = next > e ? t.slice(shape.end, next) : `${t.slice(shape.end, e)}\n`
      // A capture further on than where enrichment goes (a custom timestamp wrote more after the time).
      if (shape.at !== shape.insert) rest = t.slice(shape.insert, shape.at) + rest
      let level = shape.level
      let time = cap.time ?? shape.time
      if (level === -1 || time === -1) {
        // Level or time written otherwise (a level formatter, a line of another logger): read from the line.
        record = objectOf(head + rest)
        if (record === undefined) {
          this.#passThrough(t, s, e, next, now)
          return
        }
        if (level === -1) level = levelOf(record.level)
        if (time === -1) time = typeof record.time === 'number' ? record.time : now
      }
      const alone = registry.fns.length === 0 && this.#queue.size === 0 && !cap.refused
      if (alone && registry.keyed.length === 0) {
        // Globals and context fields only, nothing queued ahead: out now.
        this.#push(`${head}${this.#injected(level, cap, NO_PARTS, this.#values.problems)}${rest}`)
        return
      }
      ctx = new LineContext(level, time, cap, head, rest, record)
      if (alone) {
        // Keyed values too: out now as well when each is at hand, else gathered from where the read stopped.
        if (this.#collect.readCached(ctx, now, this.#keyedRead)) {
          this.#push(this.#spliced(level, cap, head, rest))
          return
        }
        from = this.#keyedRead
      }
      redact = cap.redact
      contexts = cap.contexts
    } else {
      record = objectOf(t.slice(s, e))
      if (record === undefined) {
        this.#passThrough(t, s, e, next, now)
        return
      }
      const time = typeof record.time === 'number' ? record.time : now
      ctx = { level: levelOf(record.level), time, record, context: undefined }
    }
    // Its deadline counts from here: gathering runs each compute it starts up to its first await.
    const since = this.#e.ticks.now()
    this.#queue.push(this.#gathered(ctx, now, head, rest, undefined, ending(t, e, next), redact, contexts, from), since)
  }

  /**
   * Not ours to judge: a line that is not a JSON object passes through
   * untouched, still behind any line waiting ahead of it.
   */
  #passThrough(t: string, s: number, e: number, next: number, now: number): void {
    const verbatim = t.slice(s, e) + ending(t, e, next)
    if (this.#queue.size === 0) {
      this.#emit(verbatim)
      return
    }
    const ctx: EnrichContext = { level: LEVELS.info, time: now, record: EMPTY, context: undefined }
    const since = this.#e.ticks.now()
    this.#queue.push(
      this.#gathered(ctx, now, undefined, undefined, verbatim, '', undefined, undefined, undefined),
      since,
    )
  }

  #gathered(
    ctx: EnrichContext,
    now: number,
    head: string | undefined,
    rest: string | undefined,
    verbatim: string | undefined,
    eol: string,
    redact: RedactWriter | undefined,
    contexts: ContextWriter<Problems> | undefined,
    from: KeyedRead | undefined,
  ): WorkerLine {
    const line = new WorkerLine(ctx, now, this.#e.deadlineMs, head, rest, verbatim, eol, redact)
    if (verbatim === undefined) this.#collect.gather(line, contexts, from)
    return line
  }

  /**
   * A line whose keyed values {@link Collector.readCached} found at hand, as
   * {@link #write} would write it gathered, spliced in place. The read's
   * parts are emptied for the next line.
   */
  #spliced(level: number, cap: Captured, head: string, rest: string): string {
    const read = this.#keyedRead
    const parts = read.parts
    try {
      return head + this.#injected(level, cap, parts, this.#values.problemsFor(read.problems)) + rest
    } finally {
      // Emptied even when writing threw: the next line must not start from this one's values.
      read.problems = undefined
      for (let i = 0; i < parts.length; i++) parts[i] = undefined
    }
  }

  /**
   * What goes after the time of a line that waits for nothing: globals,
   * keyed values (`parts`, by position), context fields, then `problems`.
   * The same for every line of one level and capture while the globals and
   * the cached values stand, so made once for a run of them.
   */
  #injected(
    level: number,
    cap: Captured,
    parts: ReadonlyArray<Fields | undefined>,
    problems: Problems | undefined,
  ): string {
    const view = this.#view
    let m = this.#memo
    if (m !== undefined && m.cap !== cap) {
      // Lines of two captures in turn: the one before is kept too.
      m = this.#otherMemo
      this.#otherMemo = this.#memo
      this.#memo = m
    }
    if (
      m !== undefined &&
      m.cap === cap &&
      m.level === level &&
      m.fragment === view.fragment &&
      m.mixinGlobals === view.mixinGlobals &&
      m.problems === problems &&
      sameParts(m.parts, parts)
    ) {
      return m.text
    }
    let fields: string
    if (cap.redact === undefined) {
      fields = this.#globals(level)
      for (let i = 0; i < parts.length; i++) {
        const part = parts[i]
        if (part !== undefined) fields += partJson(part)
      }
      fields += cap.contextJson
    } else {
      // As #write merges a gathered line: globals, keyed values, then context fields.
      const out: Fields = {}
      this.#values.assign(level, out)
      for (let i = 0; i < parts.length; i++) {
        const part = parts[i]
        if (part !== undefined) Object.assign(out, part)
      }
      const registry = this.#registry
      if (cap.context !== undefined && registry.contexts.length !== 0) {
        ;(cap.contexts ?? registry.writeContexts)(cap.context, level, out)
      }
      fields = cap.redact(out)
    }
    const text = fields + this.#problems(problems)
    // Kept only for values that cannot change under the same object: cached values are frozen.
    if (!parts.every(isFrozen)) {
      this.#memo = undefined
      return text
    }
    // Flat: as a rope of its tens of fragments, it was walked again for each line by the batch's
    // join, which then took 3 times as long (a third of a keyed line's time in the worker).
    const flat = own(text)
    this.#memo = {
      cap,
      level,
      fragment: view.fragment,
      mixinGlobals: view.mixinGlobals,
      problems,
      parts: parts.length === 0 ? NO_PARTS : parts.slice(),
      text: flat,
    }
    return flat
  }

  /** Writes a gathered line (from the queue: now, when ready, or at its deadline). */
  #write(line: WorkerLine): void {
    if (line.verbatim !== undefined) {
      this.#emit(line.verbatim)
      return
    }
    const problems = this.#values.problemsFor(line.problems)
    if (line.rest !== undefined) {
      // Enrichment spliced in after level and time, the line's own fields after
      // it, so they win, as pino's own bindings do.
      let text = line.head as string
      if (line.redact === undefined) {
        text += this.#globals(line.ctx.level)
        for (const part of line.parts) if (part !== undefined) text += partJson(part)
      } else {
        const merged: Fields = {}
        this.#values.assign(line.ctx.level, merged)
        line.mergeInto(merged)
        text += line.redact(merged)
      }
      this.#emit(`${text}${this.#problems(problems)}${line.rest}`)
      return
    }
    const obj = line.ctx.record as Record<string, unknown>
    const merged: Fields = { level: obj.level, time: obj.time }
    this.#values.assign(line.ctx.level, merged)
    line.mergeInto(merged)
    if (problems !== undefined) merged[this.#e.errorKey] = problems
    Object.assign(merged, obj)
    this.#emit(JSON.stringify(merged) + line.eol)
  }

  /** Globals for a line of `level`: the prepared fragment, then any kept back by minLevel. */
  #globals(level: number): string {
    const view = this.#view
    let text = view.fragment
    const mg = view.mixinGlobals
    for (let i = 0; i < mg.length; i++) {
      const g = mg[i] as View['mixinGlobals'][number]
      if (level >= g.minLevel) text += partJson(g.fields)
    }
    return text
  }

  #problems(problems: Problems | undefined): string {
    return problems === undefined ? '' : `,${this.#errorKeyJson}:${problemsJson(problems)}`
  }

  #understand(text: string | undefined): Captured {
    if (text === undefined) return this.#none
    const registry = this.#registry
    if (this.#writer !== registry.writeContexts) {
      // Enrichers were added or removed: what was worked out may differ now.
      this.#writer = registry.writeContexts
      this.#captures.clear()
      this.#lastText = undefined
      this.#otherText = undefined
    }
    if (text === this.#lastText) return this.#last
    if (text === this.#otherText) {
      const value = this.#other
      this.#otherText = this.#lastText
      this.#other = this.#last
      this.#lastText = text
      this.#last = value
      return value
    }
    let value = this.#captures.get(text)
    if (value === undefined) {
      let capture: TransportCapture | undefined
      try {
        capture = JSON.parse(text) as TransportCapture
      } catch {
        capture = undefined
      }
      // One object for every line of this capture: frozen, so an enricher
      // cannot change what later lines of the request see.
      const c = capture?.c
      const context = typeof c === 'object' && c !== null && !Array.isArray(c) ? Object.freeze(c) : undefined
      let contextJson = ''
      let contexts: ContextWriter<Problems> | undefined
      let refused = false
      if (context !== undefined && registry.contexts.length !== 0) {
        // A context field whose key the logger binds is left out: the binding, written by pino, is kept.
        const bound = readBoundKeys(capture?.b)
        if (bound !== undefined) contexts = registry.contextWriters.without(bound)
        refused = hasOverLong(context)
        // Context-fields enrichers have no minLevel: the level does not change their output. Not run
        // when the writer would refuse a value: it would count a refusal no line records.
        if (!refused) {
          const out: Fields = {}
          ;(contexts ?? this.#writer)(context, LEVELS.info, out)
          contextJson = fieldsJson(out)
        }
      }
      value = {
        text: own(text),
        context,
        trace: spanOf(capture?.s),
        time: typeof capture?.t === 'number' ? capture.t : undefined,
        redact: this.#objectWriter(capture?.r === undefined ? undefined : this.#redactor(capture.r)),
        contexts,
        contextJson,
        refused,
      }
      if (this.#captures.size >= 1024) this.#captures.clear()
      // Keyed by its own copy: a slice of the chunk would keep the whole chunk alive.
      this.#captures.set(value.text, value)
    }
    this.#otherText = this.#lastText
    this.#other = this.#last
    this.#lastText = value.text
    this.#last = value
    return value
  }

  /**
   * How the line's enriched fields are written when they must be seen as
   * objects: through the transport's serializers, then the logger's
   * redaction, as pino orders them. Undefined when neither applies.
   */
  #objectWriter(redact: RedactWriter | undefined): RedactWriter | undefined {
    const s = this.#serializers
    if (s === undefined) return redact
    const write = redact ?? fieldsJson
    return (fields) => {
      const out: Fields = {}
      for (const key of Object.keys(fields)) {
        const f = Object.hasOwn(s, key) ? s[key] : undefined
        if (f === undefined) out[key] = fields[key]
        else {
          try {
            const v = f(fields[key])
            // As pino: a value with no JSON form (undefined, a function) leaves the key out. One that
            // cannot be serialized (a BigInt, a cycle, a toJSON that throws) costs its key as a throw does.
            // What is kept is a copy made of that JSON: a getter, toJSON or Proxy is read once, here, and
            // cannot throw later, out of the writer below and the line's write.
            const json = JSON.stringify(v)
            if (json !== undefined) out[key] = JSON.parse(json) as unknown
          } catch {
            // A serializer that throws costs its own key, never the line (left out: its input may be what it hides).
          }
        }
      }
      return write(out)
    }
  }

  /** The writer for a logger's `redact`, made once per distinct option. */
  #redactor(spec: unknown): RedactWriter {
    const key = JSON.stringify(spec)
    let writer = this.#redactors.get(key)
    if (writer === undefined) {
      try {
        const r = spec as RedactSpec
        if (!Array.isArray(r.paths)) throw new TypeError(`redact paths must be an array, received ${key}`)
        writer = redactWriter(r)
      } catch (e) {
        // Fail closed: a line whose redaction cannot be applied carries no enriched field it might have exposed.
        writer = () => ''
        process.emitWarning(
          `pino-enrich/transport: cannot apply redact ${key}, enriched fields are left out: ${e instanceof Error ? e.message : String(e)}`,
          { code: 'PINO_ENRICH_REDACT' },
        )
      }
      if (this.#redactors.size >= 64) this.#redactors.clear()
      this.#redactors.set(key, writer)
    }
    return writer
  }

  /** Hands on text now or soon: at the end of the chunk, or once the loop turns. */
  #emit(text: string): void {
    if (this.#aborted) return
    this.#push(text)
    if (!this.#inChunk && !this.#scheduled) {
      // A line let go by the queue outside a chunk: batched until the loop turns.
      this.#scheduled = true
      setImmediate(() => {
        this.#scheduled = false
        this.#flush()
      })
    }
  }

  /** Adds text to what goes out next; a large batch goes at once. */
  #push(text: string): void {
    this.#parts.push(text)
    this.#length += text.length
    if (this.#length >= BATCH) this.#flush()
  }

  #flush(): void {
    if (this.#parts.length === 0 || this.#aborted) return
    const text = this.#parts.length === 1 ? (this.#parts[0] as string) : this.#parts.join('')
    this.#parts = []
    this.#length = 0
    this.#out(text)
  }
}
