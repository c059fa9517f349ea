import { tracingChannel } from 'node:diagnostics_channel'
import { createRequire } from 'node:module'
import pino, { type LoggerOptions } from 'pino'
import type { ContextWriter, ContextWriters } from '../context/writer.js'
import type { Enrichment } from '../core/enrichment.js'
import type { View } from '../core/globals.js'
import { Line } from '../core/line.js'
import { OrderedQueue } from '../core/ordered-queue.js'
import { type Problems, problemsJson } from '../core/problems.js'
import type { EnrichContext, Fields } from '../enricher.js'
import { EMPTY } from '../util/constants.js'
import { copyAtCall } from '../util/copy.js'
import { BoundKeys } from './bound-keys.js'
import { type DestinationState, watchDestination } from './destination.js'

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

type LogMethod = (this: pino.Logger, ...args: unknown[]) => void

/** A deferred line: a {@link Line} with the pino call that writes it. */
class Pending extends Line {
  readonly logger: pino.Logger
  /** What the line needs of its logger, as at the call. */
  readonly state: LoggerState
  readonly args: unknown[]
  readonly method: LogMethod
  /** How many lines' writes this call was made from within (a destination that logs): 0 for the application's own. */
  readonly depth: number
  /** The logger's bindings at the call, for a line that waits: `setBindings()` later must not show. */
  chindings: unknown = undefined
  /** What pino's write threw (a user mixin that returns nothing, say). */
  failure: unknown = undefined

  constructor(
    ctx: EnrichContext,
    deadlineMs: number,
    logger: pino.Logger,
    state: LoggerState,
    args: unknown[],
    method: LogMethod,
    depth: number,
  ) {
    super(ctx, ctx.time, deadlineMs)
    this.logger = logger
    this.state = state
    this.args = args
    this.method = method
    this.depth = depth
  }
}

/**
 * Most writes a line may be logged from within, one inside the other: past it
 * (a destination that logs every line it is handed) the line is dropped and
 * counted, where pino runs out of stack at about 2 000 and throws.
 */
const MAX_NESTED_WRITES = 1_000

const { chindingsSym } = pino.symbols
const NO_KEYS: readonly string[] = []

/** The keys a logger's bindings (pino's serialized chindings) set, other than its base and pino's own. */
function parseBindingKeys(chindings: unknown, baseKeys: ReadonlySet<string>, coreKeys: ReadonlySet<string>) {
  if (typeof chindings !== 'string' || chindings.length < 2) return NO_KEYS
  try {
    const keys = Object.keys(JSON.parse(`{${chindings.slice(1)}}`) as object).filter(
      (k) => !baseKeys.has(k) && !coreKeys.has(k),
    )
    return keys.length === 0 ? NO_KEYS : keys
  } catch {
    // Bindings pino wrote in a shape of the user's own (formatters.bindings): left to pino's order.
    return NO_KEYS
  }
}

type PinoSymbol = 'streamSym' | 'serializersSym' | 'stringifiersSym' | 'formattersSym' | 'wildcardFirstSym'
const { streamSym, serializersSym, stringifiersSym, formattersSym, wildcardFirstSym } =
  pino.symbols as unknown as Record<PinoSymbol, symbol>
/** pino's mark of a stream that reads `lastTime`, `lastObj`... (pino.multistream). */
const NEEDS_METADATA = Symbol.for('pino.metadata')
// pino's own tracing channel for asJson: channels are shared by name, so this sees its subscribers.
const asJsonChannel = tracingChannel('pino_asJson')
/** A child logger's own view, when its options route more keys than its parent's. */
const VIEW = Symbol('pino-enrich.view')
type Views = { [VIEW]?: View }

/**
 * What the lines of one logger need of it, made at its first line and kept on
 * the logger, as pino keeps a logger's chindings: made again only after its
 * `setBindings()` or after the pipeline's context-fields enrichers change. A
 * line reads it with one property load and three comparisons. Looked up part
 * by part on every line (view, destination, context writer, bound keys, each
 * with a last-logger cache of its own), they made the mixin and `timestamp`
 * too large for V8 to inline into pino's write: 592 and 478 bytes of bytecode,
 * where its limit is 460.
 */
interface LoggerState {
  /** The logger it was made for: a child reads its parent's through the prototype until it has its own. */
  readonly logger: object
  readonly chindings: unknown
  /** The pipeline's context writers it was made from. */
  readonly writers: ContextWriters<Problems>
  readonly view: View
  readonly destination: DestinationState | undefined
  /** The logger's stream when it reads pino's line metadata (`lastTime`...), else undefined. */
  readonly metadata: { lastTime?: string } | undefined
  /** Writes the request-context fields, leaving out keys the logger's bindings carry. */
  readonly writeContexts: ContextWriter<Problems>
  /** Enricher keys the logger's bindings set: left out of the mixin's object. */
  readonly bound: readonly string[]
}
const STATE = Symbol('pino-enrich.state')
type Logged = { [STATE]?: LoggerState } & Record<symbol, unknown>
/** States of loggers that cannot take a property (frozen, sealed). */
const fixedStates = new WeakMap<object, LoggerState>()

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
 * What a line reads of the pipeline is taken from `e` here, when the logger
 * is made: the registry, the globals, the log path and the counters, each
 * one hop away on every line.
 *
 * Reached by users through {@link Pipeline.pinoOptions}.
 */
export function buildPinoOptions(e: Enrichment, input: EnrichPinoOptions = {}): LoggerOptions {
  const { mode = PinoMode.Snapshot, contextKeys, ...user } = input
  if (mode === PinoMode.Transport) return transportOptions(e, user, contextKeys ?? DEFAULT_CONTEXT_KEYS)
  if (mode !== PinoMode.Snapshot && mode !== PinoMode.Deferred) {
    throw new TypeError(`mode must be 'snapshot', 'deferred' or 'transport', received ${JSON.stringify(mode)}`)
  }
  // pino's own check and message, at construction; a falsy mixin is none, as in pino.
  if (user.mixin && typeof user.mixin !== 'function') {
    throw new TypeError(`Unknown mixin type "${typeof user.mixin}" - expected "function"`)
  }
  const userMixin = user.mixin || undefined
  // pino calls the merge strategy only when there is a mixin.
  const userStrategy = userMixin === undefined ? undefined : user.mixinMergeStrategy || undefined
  const { registry, globals, clock, counters } = e
  const collector = e.collect
  if (typeof user.messageKey === 'string') registry.addCoreKey(user.messageKey)
  // `base` and `name` stay pino's bindings (bindings(), formatters.bindings and
  // serializers see them); an enricher key equal to one of them goes through
  // the mixin, written after the bindings, so that enrichers still rank above base.
  const rootView = globals.view(withBindingKeys(routedKeys(user), user))
  // Keys pino keeps in this logger's base rank beneath enrichers, unlike a child's bindings.
  const baseKeys = new Set(Object.keys((user.base as Fields | null | undefined) ?? {}))
  if (user.name !== undefined) baseKeys.add('name')
  const errorKey = e.errorKey
  const timePart = timeFormatter(user.timestamp)
  // The deferred line being written now; pino's write is synchronous, so one slot suffices.
  let current: Pending | undefined
  // The line's call time, and the clock's time when pino took the line.
  let lineTime = 0
  let lineNow = 0
  // This line's prepared globals (and a deferred line's problems) go through
  // the mixin as objects: pino hands its time string to asJson's tracing subscribers.
  let inMixin = false
  let lineProblems: Problems | undefined
  // Metadata streams (pino.multistream) whose `lastTime` pino sets from the
  // time string: set back to the time alone before the line reaches the stream.
  // One entry per line under way: a line logged from a serializer or a mixin
  // is timed and written between its outer line's timestamp and write.
  const metas: Array<{ stream: { lastTime?: string }; time: string; full: string }> = []
  let sliceIndex = 0
  // What the user's mixin returned for this line, for the merge strategy pino calls next.
  let userValue: object | undefined

  const newState = (logger: pino.Logger): LoggerState => {
    const l = logger as unknown as Logged & Views
    const chindings = l[chindingsSym]
    const writers = registry.contextWriters
    const fixed = fixedStates.get(logger)
    if (fixed !== undefined && fixed.chindings === chindings && fixed.writers === writers) return fixed
    const stream = l[streamSym] as Record<symbol, unknown> | undefined
    const s: LoggerState = {
      logger,
      chindings,
      writers,
      view: l[VIEW] ?? rootView,
      destination: watchDestination(logger, counters),
      metadata: stream !== undefined && stream[NEEDS_METADATA] === true ? (stream as { lastTime?: string }) : undefined,
      writeContexts: writers.for(logger),
      bound: parseBindingKeys(chindings, baseKeys, registry.coreKeys),
    }
    if (Object.isExtensible(logger)) l[STATE] = s
    else fixedStates.set(logger, s)
    return s
  }
  const stateOf = (logger: pino.Logger): LoggerState => {
    const l = logger as unknown as Logged
    const s = l[STATE]
    if (
      s !== undefined &&
      s.logger === logger &&
      s.chindings === l[chindingsSym] &&
      s.writers === registry.contextWriters
    )
      return s
    return newState(logger)
  }

  const errorKeyJson = JSON.stringify(errorKey)
  // The time part of a line, and after it the globals' fragment and `tail`.
  const timeOf = (s: LoggerState, now: number, tail: string): string => {
    const t = timePart(now)
    inMixin = asJsonChannel.hasSubscribers !== false
    const full = inMixin ? t : t + s.view.fragment + tail
    if (s.metadata !== undefined) noteTime(s.metadata, t, full)
    return full
  }
  const noteTime = (stream: { lastTime?: string }, time: string, full: string): void => {
    // A line pino never wrote (its serializer threw) leaves an entry: bounded all the same.
    if (metas.length >= 64) metas.shift()
    metas.push({ stream, time, full })
  }
  const deferredTime = (logger: pino.Logger, line: Pending): string => {
    // A deferred line's problems are known before pino writes it: serialize
    // them here, once per shared problem set, instead of per line in the mixin.
    const now = line.ctx.time
    lineTime = now
    if (line.now >= globals.nextCheck) globals.prepare()
    lineProblems = globals.problemsFor(line.problems)
    const tail = lineProblems === undefined ? '' : `,${errorKeyJson}:${problemsJson(lineProblems)}`
    return timeOf(line.logger === logger ? line.state : stateOf(logger), now, tail)
  }
  const timestamp = function (this: pino.Logger | undefined): string {
    if (this === undefined) {
      // pino's call at construction, to find where its time value starts: the time alone.
      const t = timePart(clock.now())
      sliceIndex = t.indexOf(':') + 1
      return t
    }
    if (current !== undefined) return deferredTime(this, current)
    const now = clock.now()
    lineTime = now
    lineNow = now
    if (now >= globals.nextCheck) globals.prepare()
    return timeOf(stateOf(this), now, '')
  }

  // pino has just set lastTime from this line's time string: the latest entry
  // whose stream shows it is this line's (nested lines have had theirs).
  const restoreTime = (): void => {
    for (let i = metas.length - 1; i >= 0; i--) {
      const m = metas[i] as (typeof metas)[number]
      if (m.stream.lastTime === m.full.slice(sliceIndex)) {
        m.stream.lastTime = m.time.slice(sliceIndex)
        metas.length = i
        break
      }
    }
  }
  const userStreamWrite = user.hooks?.streamWrite
  const streamWrite =
    userStreamWrite === undefined
      ? (s: string): string => {
          if (metas.length !== 0) restoreTime()
          return s
        }
      : (s: string): string => {
          if (metas.length !== 0) restoreTime()
          return userStreamWrite(s)
        }

  // One reader of the request context for every mode: the pipeline's own or the application's.
  const getContext = e.context.get
  // A fresh object every line, the globals routed through the mixin in it: the call's fields are assigned into it.
  const globalFields = (s: LoggerState, level: number): Fields => {
    const out: Fields = {}
    if (inMixin) Object.assign(out, s.view.fragmentFields)
    const mg = s.view.mixinGlobals
    for (let i = 0; i < mg.length; i++) {
      const g = mg[i] as View['mixinGlobals'][number]
      if (level >= g.minLevel) Object.assign(out, g.fields)
    }
    return out
  }
  // Keyed and function enrichers: what they have ready now.
  const collect = (mergeObject: object, level: number, out: Fields, s: LoggerState): Problems | undefined => {
    const ctx: EnrichContext = {
      level,
      time: lineTime,
      record: mergeObject as Record<string, unknown>,
      context: getContext(),
    }
    return collector.collectNow(ctx, out, undefined, lineNow, s.writeContexts)
  }
  // The call's own fields last: a child's bindings beat every enricher, then the user's mixin runs.
  const finish = (out: Fields, s: LoggerState, mergeObject: object, level: number, logger: pino.Logger): Fields => {
    if (s.bound.length !== 0) dropKeys(out, s.bound)
    if (userMixin !== undefined) userValue = userMixin(mergeObject, level, logger)
    return out
  }
  // A line written in its call: what is ready now.
  const snapshotMixin = (mergeObject: object, level: number, logger: pino.Logger): object => {
    counters.enriched++
    const s = stateOf(logger)
    // The line is still written: to a destination that failed, where it is counted as dropped.
    if (s.destination?.failed === true) counters.dropped++
    // A deferred line is counted when logged: one logged before close() may be written by it.
    if (e.closed) counters.afterClose++
    const out = globalFields(s, level)
    let problems: Line['problems']
    if ((registry.keyed.length !== 0 || registry.fns.length !== 0) && collector.enriching === 0) {
      problems = collect(mergeObject, level, out, s)
    } else if (registry.contexts.length !== 0) {
      // Only request-context fields: written straight in, no context object for the line.
      const c = getContext()
      if (c !== undefined) problems = s.writeContexts(c, level, out)
    }
    const all = problems === undefined ? globals.problems : globals.problemsFor(problems)
    if (all !== undefined) out[errorKey] = all
    return finish(out, s, mergeObject, level, logger)
  }
  // A deferred line being written: what was gathered for it.
  const deferredMixin = (mergeObject: object, level: number, logger: pino.Logger): object => {
    const line = current
    if (line === undefined) return snapshotMixin(mergeObject, level, logger)
    counters.enriched++
    const s = line.logger === logger ? line.state : stateOf(logger)
    if (s.destination?.failed === true) counters.dropped++
    const out = globalFields(s, level)
    line.mergeInto(out)
    // Its problems went out with the timestamp fragment, unless that is not written.
    if (inMixin && lineProblems !== undefined) out[errorKey] = lineProblems
    return finish(out, s, mergeObject, level, logger)
  }
  // pino calls this with the mixin's result: the user's mixin and merge
  // strategy apply exactly as pino applies them, and the enriched fields go
  // beneath their result. A line with nothing added is pino's own object.
  const userMerged = (mergeObject: object): object => {
    const value = userValue as object
    userValue = undefined
    return userStrategy !== undefined ? userStrategy(mergeObject, value) : Object.assign(value, mergeObject)
  }
  const mixinMergeStrategy =
    userMixin === undefined
      ? (mergeObject: object, out: object): object => {
          for (const _ in out) return assignOwn(out as Fields, mergeObject)
          return mergeObject
        }
      : (mergeObject: object, out: object): object => {
          const merged = userMerged(mergeObject)
          for (const _ in out) return assignOwn(out as Fields, merged)
          return merged
        }

  const userOnChild = user.onChild
  const onChild = (child: pino.Logger): void => {
    // A child given its own serializers, redact or formatters.log gets a view
    // routing those keys through pino's object path, as the root's options do.
    const c = child as unknown as Record<symbol, unknown> & Views
    const parent = Object.getPrototypeOf(child) as Record<symbol, unknown> & Views
    const log = (c[formattersSym] as { log?: unknown } | undefined)?.log
    if (
      c[serializersSym] !== parent[serializersSym] ||
      c[stringifiersSym] !== parent[stringifiersSym] ||
      log !== (parent[formattersSym] as { log?: unknown } | undefined)?.log
    ) {
      const base = (parent[VIEW] ?? rootView).routed
      c[VIEW] = globals.view(childRouted(base, c, log !== undefined))
    }
    if (typeof userOnChild === 'function') userOnChild(child)
  }

  const options: LoggerOptions = {
    ...user,
    timestamp,
    mixin: mode === PinoMode.Deferred ? deferredMixin : snapshotMixin,
    mixinMergeStrategy,
    onChild,
    hooks: { ...user.hooks, streamWrite },
  }
  if (mode === PinoMode.Deferred) {
    const queue = deferredQueue(
      e,
      () => (current === undefined ? 0 : current.depth + 1),
      stateOf,
      (item) => {
        current = item
        try {
          if (item.chindings === undefined) item.method.apply(item.logger, item.args)
          else writeAsCalled(item)
        } catch (e) {
          item.failure = e
          throw e
        } finally {
          current = undefined
        }
      },
    )
    const userHook = user.hooks?.logMethod
    // One stand-in per pino log method, named and shaped like it, handed to the
    // user's hook: calling it queues the line instead of writing it.
    const standIns = new WeakMap<LogMethod, LogMethod>()
    const standIn = (logger: pino.Logger, method: LogMethod, level: number): LogMethod => {
      let fn = standIns.get(method)
      if (fn === undefined) {
        fn = function (this: pino.Logger, ...a: unknown[]) {
          queue.call(this ?? logger, a, method, level)
        }
        Object.defineProperty(fn, 'name', { value: method.name })
        Object.defineProperty(fn, 'length', { value: method.length })
        standIns.set(method, fn)
      }
      return fn
    }
    options.hooks = {
      ...options.hooks,
      logMethod(this: pino.Logger, args: unknown[], method: LogMethod, level: number) {
        if (userHook === undefined) {
          queue.call(this, args, method, level)
          return
        }
        userHook.call(
          this,
          args as Parameters<typeof userHook>[0],
          standIn(this, method, level) as unknown as Parameters<typeof userHook>[1],
          level,
        )
      },
    }
  }
  return options
}

/** A line's arguments and its logger's bindings, as they are at the call. */
function copyAtCallOf(item: Pending): void {
  const args = item.args
  for (let i = 0; i < args.length; i++) args[i] = copyAtCall(args[i])
  item.chindings = (item.logger as unknown as Record<symbol, unknown>)[chindingsSym]
}

/**
 * The record of a queued line copied one level deep, where {@link copyAtCall}
 * kept it by reference. A top-level value that throws while read leaves the
 * record as it is: the write fails there, as pino's would, and is counted,
 * instead of the log call throwing.
 */
function copyTopLevel(item: Pending, first: object): void {
  let copy: Fields
  try {
    copy = assignOwn({}, first)
  } catch {
    return
  }
  ;(item.ctx as { record: Record<string, unknown> }).record = copy
  item.args[0] = copy
}

/** Writes a line that waited with its logger's bindings as they were at the call. */
function writeAsCalled(item: Pending): void {
  const logger = item.logger as unknown as Record<symbol, unknown>
  const bindings = logger[chindingsSym]
  if (item.chindings === bindings) {
    item.method.apply(item.logger, item.args)
    return
  }
  logger[chindingsSym] = item.chindings
  try {
    item.method.apply(item.logger, item.args)
  } finally {
    logger[chindingsSym] = bindings
  }
}

/**
 * Deferred queues with lines waiting, of every pipeline, for the exit drain.
 * A queue is here only while it holds lines: loggers with nothing pending are
 * not kept alive, and one process 'exit' listener serves them all.
 */
const waitingQueues = new Set<OrderedQueue<Pending>>()
let listening = false
// Once 'exit' has begun nothing asynchronous runs again: a line logged from
// then on (another 'exit' listener) is written at once with what is ready.
let exiting = false
function drainAllAtExit(): void {
  exiting = true
  for (const queue of Array.from(waitingQueues)) drainAtExit(queue)
}

/** Writes every line of `queue` now, then flushes the streams they went to. */
function drainAtExit(queue: OrderedQueue<Pending>, written?: pino.Logger): void {
  const streams = new Set<{ flushSync?: () => void }>()
  const add = (l: pino.Logger): void => {
    const s = (l as unknown as Record<symbol, unknown>)[pino.symbols.streamSym] as
      | { flushSync?: () => void }
      | undefined
    if (s !== undefined) streams.add(s)
  }
  if (written !== undefined) add(written)
  queue.forEach((item) => {
    add(item.logger)
  })
  queue.drain(true)
  // These lines were written during 'exit': flush them now rather than rely
  // on the order of pino's own exit handler.
  for (const s of streams) {
    try {
      s.flushSync?.()
    } catch {
      // A destination that cannot flush synchronously at exit has nothing more we can do.
    }
  }
}

/**
 * Deferred mode: lines queue in call order (see {@link OrderedQueue}); on
 * process exit every waiting line is written synchronously with what is ready.
 * The pipeline and the exit drain know the queue only while it holds lines.
 */
function deferredQueue(
  e: Enrichment,
  depthNow: () => number,
  stateOf: (logger: pino.Logger) => LoggerState,
  write: (item: Pending) => void,
) {
  const { clock, counters } = e
  const collector = e.collect
  const queue: OrderedQueue<Pending> = new OrderedQueue<Pending>(e, write, (active) => {
    if (active) {
      e.queues.add(queue)
      waitingQueues.add(queue)
    } else {
      e.queues.delete(queue)
      waitingQueues.delete(queue)
    }
  })
  if (!listening) {
    listening = true
    process.prependListener('exit', drainAllAtExit)
  }

  return {
    call(this: void, logger: pino.Logger, args: unknown[], method: LogMethod, level: number): void {
      const depth = depthNow()
      if (depth > MAX_NESTED_WRITES) {
        // Each write logs again: queued, the loop that writes would never end.
        counters.dropped++
        return
      }
      const time = clock.now()
      let record: Record<string, unknown> = EMPTY
      const first = args[0]
      const plain = typeof first === 'object' && first !== null && Object.getPrototypeOf(first) === Object.prototype
      if (plain) record = first as Record<string, unknown>
      const state = stateOf(logger)
      const ctx: EnrichContext = { level, time, record, context: e.context.get() }
      const item = new Pending(ctx, e.deadlineMs, logger, state, args, method, depth)
      if (e.closed) counters.afterClose++
      // Logged from inside an enricher of this pipeline: written as it is, not enriched again.
      else if (collector.enriching === 0) collector.gather(item, state.writeContexts)
      // The line is written later: it shows its objects, format arguments,
      // errors and bindings as they are now, as pino would have. A line
      // written at once (every value cached) pays nothing for this.
      if (item.waiting !== undefined || queue.busy) copyAtCallOf(item)
      queue.push(item)
      // Queued with its record kept by reference: copyAtCall gave up on it
      // (reading it threw: a getter or a Proxy trap somewhere inside). Its top
      // level is still copied, so a key the caller sets after the call does not show.
      if (plain && !item.done && args[0] === first) copyTopLevel(item, first as object)
      if (exiting) drainAtExit(queue, logger)
      // Written during the call, a line that pino's write refused throws to the caller, as in pino.
      if (item.done && item.failure !== undefined) throw item.failure
    },
  }
}

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

const DEFAULT_CONTEXT_KEYS: readonly string[] = ['requestId', 'method', 'route', 'userId']

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
function transportOptions(e: Enrichment, user: LoggerOptions, contextKeys: readonly string[]): LoggerOptions {
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

/**
 * `target` with `source`'s own enumerable keys, an own `__proto__` key (what
 * `JSON.parse` makes of untrusted input) kept as an own key, as pino writes it.
 */
function assignOwn(target: Fields, source: object): Fields {
  return Object.hasOwn(source, '__proto__') ? defineOwn(target, source) : Object.assign(target, source)
}

/** {@link assignOwn} for a source with an own `__proto__` key: kept out of the common path, which pino's write inlines. */
function defineOwn(target: Fields, source: object): Fields {
  for (const k of Object.keys(source)) {
    Object.defineProperty(target, k, {
      value: (source as Fields)[k],
      enumerable: true,
      writable: true,
      configurable: true,
    })
  }
  return target
}

/** Deletes `keys` from `out`. */
function dropKeys(out: Fields, keys: readonly string[]): void {
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i] as string
    if (k in out) delete out[k]
  }
}

/** `routed` plus the keys pino writes as bindings: `base` (but pid and hostname, which enrichers never set) and `name`. */
function withBindingKeys(routed: ReadonlySet<string> | true, user: LoggerOptions): ReadonlySet<string> | true {
  if (routed === true) return true
  const keys = new Set(routed)
  const base = user.base
  if (typeof base === 'object' && base !== null) {
    for (const k of Object.keys(base)) if (k !== 'pid' && k !== 'hostname') keys.add(k)
  }
  if (user.name !== undefined) keys.add('name')
  return keys
}

/** The routed keys of a child logger made with its own serializers, redact or formatters.log. */
function childRouted(
  parent: ReadonlySet<string> | true,
  child: Record<symbol, unknown>,
  hasLog: boolean,
): ReadonlySet<string> | true {
  const stringifiers = child[stringifiersSym] as Record<string | symbol, unknown> | undefined
  if (parent === true || hasLog || stringifiers?.[wildcardFirstSym] !== undefined) return true
  const keys = new Set(parent)
  for (const k of Object.keys((child[serializersSym] as object | undefined) ?? {})) keys.add(k)
  for (const k of Object.keys(stringifiers ?? {})) keys.add(k)
  return keys
}

/** Top-level keys pino must see as objects for the user's options to apply, or `true` for all. */
function routedKeys(user: LoggerOptions): ReadonlySet<string> | true {
  if (user.formatters?.log !== undefined) return true
  const keys = new Set<string>(Object.keys(user.serializers ?? {}))
  const redact = user.redact
  const paths = Array.isArray(redact) ? redact : (redact?.paths ?? [])
  for (const path of paths) {
    const first = firstSegment(path)
    if (first === '*') return true
    keys.add(first)
  }
  return keys
}

function firstSegment(path: string): string {
  const m = /^\s*\[\s*(["'])((?:\\.|(?!\1).)*)\1\s*\]/.exec(path)
  if (m !== null) return m[2] as string
  const end = path.search(/[.[]/)
  return (end === -1 ? path : path.slice(0, end)).trim()
}

function timeFormatter(t: LoggerOptions['timestamp']): (now: number) => string {
  // As pino: a function is called, any other truthy value is epoch time, a falsy one none.
  if (typeof t !== 'function') return t || t === undefined ? (now) => `,"time":${now}` : () => ''
  if (t === pino.stdTimeFunctions.nullTime) return () => ''
  if (t === pino.stdTimeFunctions.epochTime) return (now) => `,"time":${now}`
  if (t === pino.stdTimeFunctions.unixTime) return (now) => `,"time":${Math.round(now / 1000)}`
  if (t === pino.stdTimeFunctions.isoTime) return (now) => `,"time":"${new Date(now).toISOString()}"`
  // A custom function cannot be told the call time: it is called when the line is written.
  return () => t()
}
