import type { EnrichContext, Fields } from '../enricher.js'
import { LEVELS } from '../enricher.js'
import { type Pipeline, type Problems, problemsJson, type View, within } from '../pipeline.js'
import { quote, TRANSPORT_KEY, type TransportCapture } from './options.js'
import { OrderedQueue, type QueuedLine } from './ordered-queue.js'

interface Line extends QueuedLine {
  /** Fast path: the line up to its time, and the rest without our capture, with its line ending. */
  head: string | undefined
  rest: string | undefined
  /** A line passed through as it is (not a JSON object), with its line ending. */
  verbatim: string | undefined
  /** The line's own ending, `\n` or `\r\n`. */
  eol: string
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
const EMPTY: Readonly<Record<string, unknown>> = Object.freeze({})
const LEVEL_START = '{"level":'
const TIME_START = ',"time":'

/**
 * Where a line pino wrote with its default keys, `{"level":N,"time":T...`,
 * has its level, time and our capture, read in place without parsing the
 * rest. Indexes are into the chunk the line is in.
 */
interface Shape {
  level: number
  time: number
  /** The index after the time's digits. */
  timeEnd: number
  /** The capture's JSON object text, and where `,"@pino-enrich":{...}` starts and ends. */
  capture: string | undefined
  at: number
  end: number
}

/**
 * Reads the shape of the line `t[s, e)` into `into`; false for any other
 * shape, which takes the general path. `known` is the capture text seen last:
 * a JSON object ends where its text does, so a line whose capture starts with
 * it has exactly that capture and needs no scan. The capture is where the
 * main thread's timestamp put it, right after the time, or further on in a
 * line some other code reshaped.
 */
function readShape(t: string, s: number, e: number, into: Shape, known: string | undefined): boolean {
  if (!t.startsWith(LEVEL_START, s)) return false
  let i = s + LEVEL_START.length
  const levelStart = i
  let level = 0
  for (let c = t.charCodeAt(i); c >= 48 && c <= 57 && i < e; c = t.charCodeAt(++i)) level = level * 10 + c - 48
  if (i === levelStart || i - levelStart > 9 || !t.startsWith(TIME_START, i)) return false
  i += TIME_START.length
  const timeStart = i
  let time = 0
  for (let c = t.charCodeAt(i); c >= 48 && c <= 57 && i < e; c = t.charCodeAt(++i)) time = time * 10 + c - 48
  if (i === timeStart || i - timeStart > 15 || i >= e) return false
  const c = t.charCodeAt(i)
  if (c !== 44 && c !== 125) return false
  into.level = level
  into.time = time
  into.timeEnd = i
  let at = i
  if (t.slice(i, i + CAPTURE.length) !== CAPTURE) {
    // Searched within this line only: the chunk may hold thousands more.
    const found = t.slice(i, e).indexOf(CAPTURE)
    at = found === -1 ? -1 : i + found
  }
  if (at === -1) {
    into.capture = undefined
    return true
  }
  const valueStart = at + CAPTURE.length
  into.at = at
  if (
    known !== undefined &&
    valueStart + known.length <= e &&
    t.slice(valueStart, valueStart + known.length) === known
  ) {
    into.capture = known
    into.end = valueStart + known.length
    return true
  }
  const valueEnd = objectEnd(t, valueStart, e)
  if (valueEnd === -1) return false
  into.capture = t.slice(valueStart, valueEnd)
  into.end = valueEnd
  return true
}

/** The index after the JSON object starting at `i` and ending before `e`, or -1. */
function objectEnd(s: string, i: number, e: number): number {
  if (s.charCodeAt(i) !== 123) return -1
  let depth = 0
  let inString = false
  for (; i < e; i++) {
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

/** What a capture's text means, worked out once per distinct text. */
interface Captured {
  context: Record<string, unknown> | undefined
  time: number | undefined
  /** The context-fields enrichers' output for this context, as JSON members. */
  contextJson: string
}

const NONE: Captured = { context: undefined, time: undefined, contextJson: '' }

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

/** The line's own ending (`\n` or `\r\n`), or a newline for a last line without one. */
function ending(t: string, e: number, next: number): string {
  return next > e ? t.slice(e, next) : '\n'
}

function levelOf(level: unknown): number {
  if (typeof level === 'number') return level
  if (typeof level === 'string' && Object.hasOwn(LEVELS, level)) return LEVELS[level as keyof typeof LEVELS]
  return LEVELS.info
}

/** Output is handed on in pieces of about this many characters, or once per chunk. */
const BATCH = 65_536

/**
 * The worker side of `pino-enrich/transport`: takes pino's output in chunks of
 * whole and partial lines, and hands on enriched text through `out`.
 *
 * While the pipeline has only global and context-fields enrichers, a line
 * with no line waiting ahead of it goes out in the same call, spliced in
 * place: the line up to its time, the prepared globals and context fields,
 * then the rest of the line without the capture. No object is made for it.
 * With keyed or function enrichers every line is gathered (cached values are
 * taken at once) and queued in arrival order, as in process, and goes out
 * when ready or at its deadline, spliced the same way.
 *
 * @internal
 */
export class LineEnricher {
  readonly #p: Pipeline
  readonly #out: (text: string) => void
  readonly #queue: OrderedQueue<Line>
  readonly #view: View
  readonly #errorKeyJson: string
  readonly #shape: Shape = { level: 0, time: 0, timeEnd: 0, capture: undefined, at: 0, end: 0 }
  /** The start of a line the last chunk ended inside, in the pieces it came in. */
  #carry: string[] = []
  #parts: string[] = []
  #length = 0
  #scheduled = false
  #inChunk = false
  #aborted = false
  // Lines of one request carry the same capture text: it is parsed, and its
  // context-fields output serialized, once while it keeps recurring.
  readonly #captures = new Map<string, Captured>()
  #writer: Pipeline['writeContexts']
  #lastText: string | undefined
  #last: Captured = NONE
  #memo:
    | {
        cap: Captured
        level: number
        fragment: string
        mixinGlobals: View['mixinGlobals']
        problems: Problems | undefined
        text: string
      }
    | undefined

  constructor(p: Pipeline, out: (text: string) => void) {
    this.#p = p
    this.#out = out
    this.#errorKeyJson = JSON.stringify(p.errorKey)
    this.#writer = p.writeContexts
    // Globals as pre-serialized JSON, rebuilt only when a value changes.
    this.#view = p.addView(new Set())
    this.#queue = new OrderedQueue<Line>(p, (line) => this.#write(line))
  }

  /** Takes a chunk of pino's output: complete lines are enriched, a trailing partial line is kept. */
  write(chunk: string): void {
    if (this.#aborted) return
    const first = chunk.indexOf('\n')
    if (first === -1) {
      // Still inside one line: kept in pieces, so a long line arriving in
      // many chunks is neither copied nor searched again each time.
      if (chunk.length !== 0) this.#carry.push(chunk)
      return
    }
    const carried = this.#carry.length === 0 ? '' : this.#carry.join('')
    this.#carry = []
    const text = carried.length === 0 ? chunk : carried + chunk
    const from = carried.length + first
    const p = this.#p
    const now = p.clock.now()
    if (now >= p.nextCheck) p.prepareGlobals()
    this.#inChunk = true
    try {
      let start = 0
      for (let nl = from; nl !== -1; nl = text.indexOf('\n', start)) {
        this.#line(text, start, nl > start && text.charCodeAt(nl - 1) === 13 ? nl - 1 : nl, nl + 1, now)
        start = nl + 1
      }
      if (start !== text.length) this.#carry.push(text.slice(start))
    } finally {
      this.#inChunk = false
    }
    this.#flush()
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
      this.#line(text, 0, text.length, text.length, this.#p.clock.now())
    }
    await within(this.#queue.whenEmpty(), this.#p.closeTimeoutMs)
    this.#queue.close()
    await this.#p.close()
    this.#flush()
  }

  /**
   * Resolves once every line taken so far has been handed on: those waiting
   * on enrichment go at their deadline at the latest.
   */
  async settled(): Promise<void> {
    await this.#queue.whenEmpty()
    this.#flush()
  }

  /** Stops at once (the stream was destroyed): timers and caches closed, nothing more handed on. */
  abort(): void {
    if (this.#aborted) return
    this.#aborted = true
    // Whatever is still waiting can go nowhere now.
    this.#p.counters.dropped += this.#queue.size
    this.#parts = []
    this.#length = 0
    this.#queue.close()
    this.#p.close().catch(() => {})
  }

  /** One line `t[s, e)`; `next` is where the one after it starts. */
  #line(t: string, s: number, e: number, next: number, now: number): void {
    const p = this.#p
    const shape = this.#shape
    let ctx: EnrichContext
    let head: string | undefined
    let rest: string | undefined
    let verbatim: string | undefined
    if (readShape(t, s, e, shape, this.#lastText)) {
      const { level, timeEnd } = shape
      const cap = this.#understand(shape.capture)
      if (shape.capture === undefined) rest = next > e ? t.slice(timeEnd, next) : `${t.slice(timeEnd, e)}\n`
      else {
        const tail = next > e ? t.slice(shape.end, next) : `${t.slice(shape.end, e)}\n`
        rest = shape.at === timeEnd ? tail : t.slice(timeEnd, shape.at) + tail
      }
      head = t.slice(s, timeEnd)
      if (p.keyed.length === 0 && p.fns.length === 0 && this.#queue.size === 0) {
        // Globals and context fields only, nothing queued ahead: out now.
        this.#push(`${head}${this.#injected(level, cap)}${rest}`)
        return
      }
      ctx = new LineContext(level, cap.time ?? shape.time, cap.context, t.slice(s, e))
    } else {
      const raw = t.slice(s, e)
      let obj: Record<string, unknown> | undefined
      try {
        const parsed: unknown = JSON.parse(raw)
        if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed))
          obj = parsed as Record<string, unknown>
      } catch {
        obj = undefined
      }
      if (obj === undefined) {
        // Not ours to judge: a line that is not a JSON object passes through
        // untouched, still behind any line waiting ahead of it.
        verbatim = raw + ending(t, e, next)
        if (this.#queue.size === 0) {
          this.#emit(verbatim)
          return
        }
        ctx = { level: LEVELS.info, time: now, record: EMPTY, context: undefined }
      } else {
        const capture = obj[TRANSPORT_KEY] as TransportCapture | undefined
        if (capture !== undefined) delete obj[TRANSPORT_KEY]
        const time = typeof capture?.t === 'number' ? capture.t : typeof obj.time === 'number' ? obj.time : now
        ctx = { level: levelOf(obj.level), time, record: obj, context: captured(capture) }
      }
    }
    const eol = ending(t, e, next)
    const line: Line = {
      ctx,
      now,
      head,
      rest,
      verbatim,
      eol,
      parts: [],
      problems: undefined,
      waiting: undefined,
      done: false,
      onReady: undefined,
      deadline: now + p.deadlineMs,
      start: now,
    }
    if (verbatim === undefined) p.gather(line)
    this.#queue.push(line)
  }

  /**
   * What goes after the time of a line that needs nothing else: globals,
   * context fields, global problems. The same for every line of one level
   * and capture while the globals stand, so made once for a run of them.
   */
  #injected(level: number, cap: Captured): string {
    const view = this.#view
    const problems = this.#p.globalProblems
    const m = this.#memo
    if (
      m !== undefined &&
      m.cap === cap &&
      m.level === level &&
      m.fragment === view.fragment &&
      m.mixinGlobals === view.mixinGlobals &&
      m.problems === problems
    ) {
      return m.text
    }
    const text = this.#globals(level) + cap.contextJson + this.#problems(problems)
    this.#memo = { cap, level, fragment: view.fragment, mixinGlobals: view.mixinGlobals, problems, text }
    return text
  }

  /** Writes a gathered line (from the queue: now, when ready, or at its deadline). */
  #write(line: Line): void {
    if (line.verbatim !== undefined) {
      this.#emit(line.verbatim)
      return
    }
    const problems = this.#p.problemsFor(line.problems)
    if (line.rest !== undefined) {
      // Enrichment spliced in after level and time, the line's own fields after
      // it, so they win, as pino's own bindings do.
      let text = (line.head as string) + this.#globals(line.ctx.level)
      for (const part of line.parts) if (part !== undefined) text += fieldsJson(part)
      this.#emit(`${text}${this.#problems(problems)}${line.rest}`)
      return
    }
    const obj = line.ctx.record as Record<string, unknown>
    const merged: Fields = { level: obj.level, time: obj.time }
    this.#p.assignGlobals(line.ctx.level, merged)
    this.#p.mergeParts(line, merged)
    if (problems !== undefined) merged[this.#p.errorKey] = problems
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
      if (level >= g.minLevel) text += fieldsJson(g.fields)
    }
    return text
  }

  #problems(problems: Problems | undefined): string {
    return problems === undefined ? '' : `,${this.#errorKeyJson}:${problemsJson(problems)}`
  }

  #understand(text: string | undefined): Captured {
    if (text === undefined) return NONE
    const p = this.#p
    if (this.#writer !== p.writeContexts) {
      // Enrichers were added or removed: what was worked out may differ now.
      this.#writer = p.writeContexts
      this.#captures.clear()
      this.#lastText = undefined
    }
    if (text === this.#lastText) return this.#last
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
      const context = captured(capture)
      if (context !== undefined) Object.freeze(context)
      let contextJson = ''
      if (context !== undefined && p.contexts.length !== 0) {
        // Context-fields enrichers have no minLevel: the level does not change their output.
        const out: Fields = {}
        this.#writer(context, LEVELS.info, out)
        contextJson = fieldsJson(out)
      }
      value = { context, time: typeof capture?.t === 'number' ? capture.t : undefined, contextJson }
      if (this.#captures.size >= 1024) this.#captures.clear()
      this.#captures.set(text, value)
    }
    this.#lastText = text
    this.#last = value
    return value
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
