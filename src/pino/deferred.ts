import pino, { type LoggerOptions } from 'pino'
import { beginLine, endLine } from '../context/line-scope.js'
import { KeyedRead } from '../core/collect.js'
import type { Enrichment } from '../core/enrichment.js'
import { Line } from '../core/line.js'
import { OrderedQueue } from '../core/ordered-queue.js'
import type { EnrichContext, Fields } from '../enricher.js'
import { EMPTY } from '../util/constants.js'
import { assignOwn, copyAtCall } from '../util/copy.js'
import { drainAtExit, exiting, listenAtExit, waitingQueues } from './exit-drain.js'
import type { LoggerState } from './logger-state.js'

export type LogMethod = (this: pino.Logger, ...args: unknown[]) => void

/** A deferred line: a {@link Line} with the pino call that writes it. */
export class Pending extends Line {
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

/**
 * Whether the call's first argument is a plain object. A Proxy whose
 * getPrototypeOf trap throws is not: the line is kept as it is and fails, if
 * at all, where pino's write fails with it, never in our hook.
 */
function isPlain(first: unknown): boolean {
  if (typeof first !== 'object' || first === null) return false
  try {
    return Object.getPrototypeOf(first) === Object.prototype
  } catch {
    return false
  }
}

/** Writes a line that waited with its logger's bindings as they were at the call. */
export function writeAsCalled(item: Pending): void {
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

/** How deferred mode writes its lines: the pieces of the one pino write it shares with snapshot mode. */
export interface DeferredWriter {
  /** How many lines' writes the call being made is made from within. */
  depth(): number
  stateOf(logger: pino.Logger): LoggerState
  /** Writes a line that waited (or went through the queue): what was gathered for it. */
  write(item: Pending): void
  /**
   * Writes a line in its call, as a snapshot line is written, when it waits
   * for nothing and nothing is ahead of it: with `read`, the keyed values
   * found at hand for it (the writer empties it); without, there are none.
   * `level`: the line's, which pino's `timestamp` is not told. `context`: with
   * `read`, the request context its keys were read from, which the line's
   * request fields are written from too.
   */
  writeNow(
    logger: pino.Logger,
    args: unknown[],
    method: LogMethod,
    level: number,
    read: KeyedRead | undefined,
    context: unknown,
  ): void
}

/**
 * Deferred mode: lines queue in call order (see {@link OrderedQueue}); on
 * process exit every waiting line is written synchronously with what is ready.
 * The pipeline and the exit drain know the queue only while it holds lines.
 *
 * A line that waits for nothing, with nothing queued or being written, is
 * written in its call as a snapshot line is: no queued item, no copy of its
 * arguments, its keyed values (if any) read once into a {@link KeyedRead}
 * kept for the next line. Function enrichers may answer with a promise, known
 * only once called, so a pipeline with any takes the queued path.
 */
function deferredQueue(e: Enrichment, io: DeferredWriter) {
  const { clock, counters, registry, globals } = e
  const collector = e.collect
  const { depth: depthNow, stateOf, write, writeNow } = io
  const queue: OrderedQueue<Pending> = new OrderedQueue<Pending>(e, write, (active) => {
    if (active) {
      e.queues.add(queue)
      waitingQueues.add(queue)
    } else {
      e.queues.delete(queue)
      waitingQueues.delete(queue)
    }
  })
  listenAtExit()
  const read = new KeyedRead()

  // Written in the call, as the queue writes a line: one logged meanwhile queues behind it.
  const direct = (
    logger: pino.Logger,
    args: unknown[],
    method: LogMethod,
    level: number,
    from: KeyedRead | undefined,
    context: unknown,
  ): void => {
    queue.hold()
    try {
      writeNow(logger, args, method, level, from, context)
    } catch (err) {
      // A line that pino's write refused throws to the caller, as in pino, and is counted.
      counters.dropped++
      throw err
    } finally {
      queue.release()
    }
  }

  const queued = (
    logger: pino.Logger,
    args: unknown[],
    method: LogMethod,
    level: number,
    ctx: EnrichContext | undefined,
    from: KeyedRead | undefined,
  ): void => {
    const depth = depthNow()
    if (depth > MAX_NESTED_WRITES) {
      // Each write logs again: queued, the loop that writes would never end.
      counters.dropped++
      return
    }
    // Its deadline counts from here: gathering runs each compute it starts up to its first await.
    const since = e.ticks.now()
    const first = args[0]
    const plain = ctx === undefined ? isPlain(first) : ctx.record === first
    const state = stateOf(logger)
    if (ctx === undefined) {
      const record = plain ? (first as Record<string, unknown>) : EMPTY
      ctx = { level, time: clock.now(), record, context: e.context.get() }
    }
    const item = new Pending(ctx, e.deadlineMs, logger, state, args, method, depth)
    // Logged from inside an enricher of this pipeline: written as it is, not enriched again.
    const fromEnrichment = collector.enriching !== 0
    if (e.closed) counters.afterClose++
    else if (!fromEnrichment) {
      // `from`: readCached stopped at a missing value; the read goes on from there.
      collector.gather(item, state.writeContexts, from, from !== undefined)
    } else collector.gatherContexts(item, state.writeContexts)
    // The line is written later: it shows its objects, format arguments,
    // errors and bindings as they are now, as pino would have. A line
    // written at once (every value cached) pays nothing for this.
    if (item.waiting !== undefined || queue.busy) copyAtCallOf(item)
    queue.push(item, since)
    // Queued with its record kept by reference: copyAtCall gave up on it
    // (reading it threw: a getter or a Proxy trap somewhere inside). Its top
    // level is still copied, so a key the caller sets after the call does not show.
    if (plain && !item.done && args[0] === first) copyTopLevel(item, first as object)
    if (exiting) drainAtExit(queue, logger)
    // Written during the call, a line that pino's write refused throws to the caller, as in pino;
    // not into an enricher's key() or function that logged it, which would fail the line it enriches.
    if (item.done && item.failure !== undefined && !fromEnrichment) throw item.failure
  }

  return {
    call(this: void, logger: pino.Logger, args: unknown[], method: LogMethod, level: number): void {
      // Nothing ahead and nothing to wait for but keyed values: the snapshot's path, after one check.
      if (queue.busy || exiting || e.closed || collector.enriching !== 0 || registry.fns.length !== 0) {
        queued(logger, args, method, level, undefined, undefined)
        return
      }
      // A failing global takes the keyed path, which has nothing to read: its problems go out with the time part.
      if (registry.keyed.length === 0 && globals.problems === undefined) {
        // The snapshot's mixin reads its request fields in one line scope.
        direct(logger, args, method, level, undefined, undefined)
        return
      }
      const first = args[0]
      const record = isPlain(first) ? (first as Record<string, unknown>) : EMPTY
      const time = clock.now()
      const ctx: EnrichContext = { level, time, record, context: e.context.get() }
      // One line from the keyed read to the context fields written in the mixin (or gathered, if it waits).
      const outer = beginLine()
      try {
        if (collector.readCached(ctx, time, read, true)) direct(logger, args, method, level, read, ctx.context)
        else queued(logger, args, method, level, ctx, read)
      } finally {
        endLine(outer)
      }
    },
  }
}

/**
 * Deferred mode's `hooks`: `logMethod` queues the line in call order instead
 * of writing it. A `logMethod` of the user's (in `hooks`) is handed a
 * stand-in for pino's method: calling it queues the line.
 */
export function deferredHooks(
  e: Enrichment,
  hooks: LoggerOptions['hooks'],
  io: DeferredWriter,
): NonNullable<LoggerOptions['hooks']> {
  const queue = deferredQueue(e, io)
  const userHook = hooks?.logMethod
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
  return {
    ...hooks,
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
