import { tracingChannel } from 'node:diagnostics_channel'
import pino, { type LoggerOptions } from 'pino'
import { beginLine, endLine, lineNow as lineInScope } from '../context/line-scope.js'
import { fieldsText } from '../context/writer.js'
import type { KeyedRead } from '../core/collect.js'
import type { Enrichment } from '../core/enrichment.js'
import type { View } from '../core/globals.js'
import type { Line } from '../core/line.js'
import { mergeProblems, type Problems, problemsJson } from '../core/problems.js'
import type { EnrichContext, Fields } from '../enricher.js'
import { assignOwn } from '../util/copy.js'
import { deferredHooks, type LogMethod, type Pending, writeAsCalled } from './deferred.js'
import { type LoggerState, loggerStates, VIEW, type Views } from './logger-state.js'
import { baseKeysOf, childRouted, routedKeys, timeFormatter, withBindingKeys } from './user-options.js'

type PinoSymbol = 'serializersSym' | 'stringifiersSym' | 'formattersSym'
const { serializersSym, stringifiersSym, formattersSym } = pino.symbols as unknown as Record<PinoSymbol, symbol>
// pino's own tracing channel for asJson: channels are shared by name, so this sees its subscribers.
const asJsonChannel = tracingChannel('pino_asJson')
/** No request context read yet for the line: whatever needs it reads it. */
const NOT_READ: unique symbol = Symbol('not read')

/**
 * pino options for snapshot mode, and with `deferred` for deferred mode:
 * deferred is the same line with a queue in front of pino's write
 * ({@link deferredHooks}). A deferred line's `timestamp` and mixin are built
 * here, beside the snapshot's, because they share the one line pino is
 * writing (its call time, whether its globals go through the mixin, the user
 * mixin's value for the merge strategy): closure slots, not properties.
 *
 * What a line reads of the pipeline is taken from `e` here, when the logger
 * is made: the registry, the globals, the log path and the counters, each
 * one hop away on every line.
 */
export function snapshotOptions(e: Enrichment, user: LoggerOptions, deferred: boolean): LoggerOptions {
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
  const baseKeys = baseKeysOf(user)
  const errorKey = e.errorKey
  const timePart = timeFormatter(user.timestamp)
  // The deferred line being written now; pino's write is synchronous, so one slot suffices.
  let current: Pending | undefined
  // A deferred line written in its call (no Pending): 1 while pino writes it,
  // for the depth of a line logged meanwhile; with keyed enrichers, the keyed
  // values its call found at hand.
  let directDepth = 0
  let directRead: KeyedRead | undefined
  // Set when that line's problems were known before pino's write (see earlyProblems): they go
  // out with its time part, and its request fields, read in its call, are these.
  let directEarly = false
  let directContexts: Fields | undefined
  // Or, when they may go out as text, that text.
  let directText: string | undefined
  // The state `timestamp` found for the line pino is writing, for its mixin, which pino calls next.
  let lineState: LoggerState | undefined
  // The line's call time, and the clock's time when pino took the line.
  let lineTime = 0
  let lineNow = 0
  // This line's prepared globals (and a deferred line's problems) go through
  // the mixin as objects: pino hands its time string to asJson's tracing subscribers.
  let inMixin = false
  let lineProblems: Problems | undefined
  // The queued line being written logs the errorKey itself: its problems go in the mixin's object.
  let lineOwnsErrorKey = false
  // The request fields of the queued line being written, when they went out with its time part.
  let lineContextsText: Fields | undefined
  // Metadata streams (pino.multistream) whose `lastTime` pino sets from the
  // time string: set back to the time alone before the line reaches the stream.
  // One entry per line under way: a line logged from a serializer or a mixin
  // is timed and written between its outer line's timestamp and write.
  const metas: Array<{ stream: { lastTime?: string }; time: string; full: string }> = []
  let sliceIndex = 0
  // What the user's mixin returned for this line, for the merge strategy pino calls next.
  let userValue: object | undefined
  // A line's request fields can go in its time part, as text (see ContextFragment), when
  // nothing of the user's reads or changes the object pino writes after it is made: no
  // mixin of theirs, no nestedKey, and in snapshot mode no logMethod hook of theirs (the
  // call's object is read before pino's write, in a hook of ours). With pino's nestedKey the
  // mixin's object is nested with the call's fields: a line's problems go there too.
  const nested = typeof user.nestedKey === 'string'
  const pinoErrorKey = user.errorKey ?? 'err'
  const fragments = userMixin === undefined && !nested && (deferred || user.hooks?.logMethod === undefined)
  // Set for a call whose object has none of the request fields' keys (the call's own
  // value must win, once), for its `timestamp`, which pino calls first in its write.
  let callFrag = false
  // The line scope that call began: its request fields, read in `timestamp`, and its keyed
  // enrichers' keys, read in the mixin, ask a request store's `user(req)` once.
  let callLine = 0
  // The text of the request fields of the line being written, from its `timestamp` to its
  // mixin, when they went out with its time part. Each call that may write them as text keeps
  // the outer call's and gives it back when it returns or throws: a line logged from a getter
  // pino reads between the two has its own.
  let lineText: string | undefined
  // The request context that text was read from, kept with it: the line's keyed enrichers
  // read their keys from the same object, and the context is read once per line.
  let lineContext: unknown = NOT_READ
  // The request context a deferred line written in its call read its keyed keys from: its
  // request fields are written from it, not from a second read.
  let callContext: unknown = NOT_READ
  const contextNow = (): unknown => (callContext === NOT_READ ? getContext() : callContext)

  const stateOf = loggerStates(registry, counters, rootView, baseKeys, e.errorKey, fragments)

  const errorKeyJson = JSON.stringify(errorKey)
  // Lines logged in the same millisecond (hundreds of them in a burst) share
  // their time part: kept with the time and fragment it was made of, it saves
  // formatting the time and joining the fragment, and two strings, per line.
  // Not for a custom time function, which is called for every line, as pino does.
  const timeIsOfNow = !isCustomTime(user.timestamp)
  let keptNow = Number.NaN
  let keptFragment = ''
  let keptTime = ''
  let keptFull = ''
  // The time part of a line, and after it the globals' fragment and `tail`.
  const timeOf = (s: LoggerState, now: number, tail: string): string => {
    inMixin = asJsonChannel.hasSubscribers !== false
    const fragment = s.view.fragment
    let t: string
    let full: string
    if (now === keptNow && tail === '' && fragment === keptFragment && !inMixin) {
      t = keptTime
      full = keptFull
    } else {
      t = timePart(now)
      full = inMixin ? t : t + fragment + tail
      if (timeIsOfNow && tail === '' && !inMixin) {
        keptNow = now
        keptFragment = fragment
        keptTime = t
        keptFull = full
      }
    }
    if (s.metadata !== undefined) noteTime(s.metadata, t, full)
    return full
  }
  const noteTime = (stream: { lastTime?: string }, time: string, full: string): void => {
    // A line pino never wrote (its serializer threw) leaves an entry: bounded all the same.
    if (metas.length >= 64) metas.shift()
    metas.push({ stream, time, full })
  }
  // The problems part of the time part. A failing enricher's lines share one
  // frozen problem set: its text is kept for the next line, not looked up again.
  let keptProblems: Problems | undefined
  let keptTail = ''
  const tailOf = (problems: Problems | undefined): string => {
    if (problems === undefined) return ''
    if (problems !== keptProblems) {
      keptTail = `,${errorKeyJson}:${problemsJson(problems)}`
      keptProblems = Object.isFrozen(problems) ? problems : undefined
    }
    return keptTail
  }
  const deferredTime = (logger: pino.Logger, line: Pending): string => {
    // A deferred line's problems are known before pino writes it: serialize
    // them here, once per shared problem set, instead of per line in the mixin.
    const now = line.ctx.time
    lineTime = now
    // Set again for this line only: one whose write threw before its mixin leaves nothing to the next.
    lineContextsText = undefined
    if (line.now >= globals.nextCheck) globals.prepare()
    lineProblems = globals.problemsFor(line.problems)
    // A call that logs the errorKey itself: its value replaces the problems, in the mixin's object, as snapshot writes it.
    // So does a logger whose bindings carry it: they are written after the time part, before the mixin's object.
    const s = line.logger === logger ? line.state : stateOf(logger)
    lineOwnsErrorKey = lineProblems !== undefined && (s.bindsErrorKey || hasErrorKey(line.args[0]))
    const tail = lineOwnsErrorKey ? '' : tailOf(lineProblems)
    const full = timeOf(s, now, tail)
    // Its request fields, read at the call, as text, as a line written in its call has them.
    const fields = line.contexts
    if (fields !== undefined && s.fragment !== undefined && fragments && !inMixin && mayUseText(line.args)) {
      lineContextsText = fields
      const text = fieldsText(fields)
      return text === '' ? full : withContext(full, text)
    }
    return full
  }
  const timestamp = function (this: pino.Logger | undefined): string {
    if (this === undefined) {
      // pino's call at construction, to find where its time value starts: the time alone.
      const t = timePart(clock.now())
      sliceIndex = t.indexOf(':') + 1
      return t
    }
    if (current !== undefined) return deferredTime(this, current)
    const allow = callFrag
    callFrag = false
    const now = clock.now()
    lineTime = now
    lineNow = now
    if (now >= globals.nextCheck) globals.prepare()
    const s = stateOf(this)
    lineState = s
    const full = timeOf(s, now, directEarly ? earlyTail() : '')
    const fragment = s.fragment
    if (allow && fragment !== undefined && !inMixin) {
      // A deferred line whose problems were known in its call has had its fields read there.
      let text: string | undefined
      if (directEarly) {
        text = directText !== undefined ? directText : directContexts === undefined ? '' : fieldsText(directContexts)
        directText = undefined
        lineContext = NOT_READ
      } else {
        const c = contextNow() as Record<string, unknown> | undefined
        text = c === undefined ? '' : fragment.text(c)
        if (text !== undefined) lineContext = c
      }
      if (text !== undefined) {
        lineText = text
        return text === '' ? full : withContext(full, text)
      }
    }
    lineText = undefined
    lineContext = NOT_READ
    return full
  }
  // An enricher's value (keyed, function, a global through the mixin) for a key the line's
  // request fields wrote as text: the request field ranks above it, and the key is written once.
  const dropWritten = (out: Fields, text: string): void => {
    const keys = registry.contextWriters.keyTexts
    for (let i = 0; i < keys.length; i++) {
      const [key, keyText] = keys[i] as readonly [string, string]
      if (key in out && text.includes(keyText)) delete out[key]
    }
  }
  // The time part and the request fields' text: lines of one request and millisecond share it.
  let keptBase = ''
  let keptText = ''
  let keptWith = ''
  const withContext = (full: string, text: string): string => {
    if (full !== keptBase || text !== keptText) {
      keptBase = full
      keptText = text
      keptWith = full + text
    }
    return keptWith
  }
  // Whether `args` (a log call's) may have its line's request fields written as text: the
  // object pino makes of them has none of their keys. pino logs a request under `req`, a
  // response under `res` and an Error under its errorKey; any other object as it is. Asked
  // with `in` and instanceof, so that no getter of the call's object runs more than pino runs it.
  const mayUseText = (args: unknown[]): boolean => {
    const first = args[0]
    if (typeof first !== 'object' || first === null) return true
    const writers = registry.contextWriters
    try {
      // Where a request field is named `req` or `res`, an object that may be one takes pino's object.
      if (writers.writesReq && 'method' in first && 'headers' in first && 'socket' in first) return false
      if (writers.writesRes && 'setHeader' in first) return false
      if (first instanceof Error) return !writers.writes(pinoErrorKey)
    } catch {
      return false
    }
    return !writers.sets(first)
  }
  // Writes a call's line in one line scope, its request fields as text where `args` allows.
  const callWithText = (logger: pino.Logger, args: unknown[], method: LogMethod): void => {
    const outerCall = callLine
    const outerText = lineText
    const outerContext = lineContext
    const outer = beginLine()
    callLine = lineInScope()
    callFrag = mayUseText(args)
    lineText = undefined
    lineContext = NOT_READ
    try {
      method.apply(logger, args)
    } finally {
      callFrag = false
      lineText = outerText
      lineContext = outerContext
      endLine(outer)
      callLine = outerCall
    }
  }
  // A deferred line written in its call whose problems were known in it: as a queued line's.
  const earlyTail = (): string => {
    lineProblems = globals.problemsFor((directRead as KeyedRead).problems)
    return tailOf(lineProblems)
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
  // `fromText`: its request fields went out with the time part, in the scope of its call.
  const collect = (
    mergeObject: object,
    level: number,
    out: Fields,
    s: LoggerState,
    fromText: boolean,
    context: unknown,
  ): Problems | undefined => {
    const ctx: EnrichContext = {
      level,
      time: lineTime,
      record: mergeObject as Record<string, unknown>,
      context: (context === NOT_READ ? getContext() : context) as EnrichContext['context'],
    }
    return fromText
      ? collector.collectNow(ctx, out, undefined, lineNow, writeNoContexts, inCallLine())
      : collector.collectNow(ctx, out, undefined, lineNow, s.writeContexts)
  }
  // Whether the line scope now is the one its log call began (callWithText).
  const inCallLine = (): boolean => callLine !== 0 && lineInScope() === callLine
  // The call's own fields last: a child's bindings beat every enricher, then the user's mixin runs.
  const finish = (out: Fields, s: LoggerState, mergeObject: object, level: number, logger: pino.Logger): Fields => {
    if (s.bound.length !== 0) dropKeys(out, s.bound)
    if (userMixin !== undefined) userValue = userMixin(mergeObject, level, logger)
    return out
  }
  // pino calls the mixin right after `timestamp`, nothing between: the state it found is this line's.
  const lineStateOf = (logger: pino.Logger): LoggerState => {
    const kept = lineState
    lineState = undefined
    return kept !== undefined && kept.logger === logger ? kept : stateOf(logger)
  }
  // A line written in its call: what is ready now.
  const snapshotMixin = (mergeObject: object, level: number, logger: pino.Logger): object => {
    const text = lineText
    const context = text === undefined ? NOT_READ : lineContext
    lineText = undefined
    lineContext = NOT_READ
    const fromText = text !== undefined
    counters.enriched++
    const s = lineStateOf(logger)
    // The line is still written: to a destination that failed, where it is counted as dropped.
    if (s.destination?.failed === true) counters.dropped++
    // A deferred line is counted when logged: one logged before close() may be written by it.
    if (e.closed) counters.afterClose++
    const out = globalFields(s, level)
    let problems: Line['problems']
    if ((registry.keyed.length !== 0 || registry.fns.length !== 0) && collector.enriching === 0) {
      problems = collect(mergeObject, level, out, s, fromText, context)
    } else if (!fromText && registry.contexts.length !== 0) {
      // Only request-context fields: written straight in, no context object for the line.
      const c = getContext()
      if (c !== undefined) {
        // One line for all of them: a request store asks `user(req)` once, however many read userId.
        const outer = inCallLine() ? -1 : beginLine()
        try {
          problems = s.writeContexts(c, level, out)
        } finally {
          if (outer !== -1) endLine(outer)
        }
      }
    }
    if (
      fromText &&
      text !== '' &&
      (s.view.mixinGlobals.length !== 0 || registry.keyed.length !== 0 || registry.fns.length !== 0)
    )
      dropWritten(out, text)
    const all = problems === undefined ? globals.problems : globals.problemsFor(problems)
    if (all !== undefined) out[errorKey] = all
    return finish(out, s, mergeObject, level, logger)
  }
  // A deferred line written in its call, its keyed values read there: as the snapshot's, those values in place of collect().
  const readMixin = (mergeObject: object, level: number, logger: pino.Logger, read: KeyedRead): object => {
    const text = lineText
    lineText = undefined
    const fromText = text !== undefined
    directRead = undefined
    counters.enriched++
    const s = lineStateOf(logger)
    if (s.destination?.failed === true) counters.dropped++
    const out = globalFields(s, level)
    const parts = read.parts
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]
      if (part === undefined) continue
      Object.assign(out, part)
      parts[i] = undefined
    }
    let problems = read.problems
    read.problems = undefined
    if (fromText && text !== '') dropWritten(out, text)
    if (directEarly) {
      directEarly = false
      const fields = directContexts
      if (fields !== undefined) {
        directContexts = undefined
        if (!fromText) Object.assign(out, fields)
      } else if (directText !== undefined) {
        // Read as text that its time part did not take: its fields, which refused no value, go here.
        directText = undefined
        const c = contextNow() as Record<string, unknown> | undefined
        if (c !== undefined) s.writeContexts(c, level, out)
      }
      // Its problems went out with the time part, unless that is not written.
      if (inMixin && lineProblems !== undefined) out[errorKey] = lineProblems
      return finish(out, s, mergeObject, level, logger)
    }
    if (!fromText && registry.contexts.length !== 0) {
      const c = contextNow() as Record<string, unknown> | undefined
      if (c !== undefined) {
        const refused = s.writeContexts(c, level, out)
        if (refused !== undefined) problems = mergeProblems(problems, refused)
      }
    }
    const all = problems === undefined ? globals.problems : globals.problemsFor(problems)
    if (all !== undefined) out[errorKey] = all
    return finish(out, s, mergeObject, level, logger)
  }
  // A deferred line being written: what was gathered for it.
  const deferredMixin = (mergeObject: object, level: number, logger: pino.Logger): object => {
    const line = current
    if (line === undefined) {
      // Written in its call: the snapshot's line, with the keyed values its call read if it read any.
      const read = directRead
      return read === undefined
        ? snapshotMixin(mergeObject, level, logger)
        : readMixin(mergeObject, level, logger, read)
    }
    counters.enriched++
    const s = line.logger === logger ? line.state : stateOf(logger)
    if (s.destination?.failed === true) counters.dropped++
    const out = globalFields(s, level)
    const fields = lineContextsText
    line.mergeInto(out, fields)
    if (fields !== undefined) {
      lineContextsText = undefined
      // Its request fields went out with the time part: they rank above the enrichers' values.
      for (const key in fields) if (key in out) delete out[key]
    }
    // Its problems went out with the timestamp fragment, unless that is not written.
    if ((inMixin || lineOwnsErrorKey) && lineProblems !== undefined) out[errorKey] = lineProblems
    lineOwnsErrorKey = false
    return finish(out, s, mergeObject, level, logger)
  }
  // A line written in its call with problems already (a keyed value failed, a global one is
  // failing): they are written with its time part, once per shared problem set as a queued
  // line's are, instead of pino serializing them in the mixin's object on every line. A
  // refused request field is a problem too: its fields are read here, where the level is
  // known, before pino asks for the time. A line with none yet reads them in its mixin, and
  // a refused one is written there: one key, whichever way.
  // `textOk`: its request fields may go out as text (mayUseText), read here as the text its
  // logger's fragment keeps while the values do not change.
  const earlyProblems = (logger: pino.Logger, level: number, read: KeyedRead, textOk: boolean): void => {
    directEarly = true
    if (registry.contexts.length === 0) return
    const c = contextNow() as Record<string, unknown> | undefined
    if (c === undefined) return
    const s = stateOf(logger)
    if (textOk && s.fragment !== undefined && asJsonChannel.hasSubscribers === false) {
      const text = s.fragment.text(c)
      if (text !== undefined) {
        directText = text
        return
      }
    }
    const fields: Fields = {}
    const refused = s.writeContexts(c, level, fields)
    if (refused !== undefined) read.problems = mergeProblems(read.problems, refused)
    directContexts = fields
  }
  // pino writes an Error logged alone under its own errorKey: when that is ours, the call sets it.
  const errorUnderKey = pinoErrorKey === errorKey
  // Whether the call sets the errorKey itself (or pino nests the line's object): its problems then go
  // in the mixin's object, never with the time part. Read inside the line's write: a getter that
  // throws refuses the line, as pino's own reads of it do.
  const hasErrorKey = (first: unknown): boolean =>
    nested ||
    (first instanceof Error
      ? errorUnderKey
      : typeof first === 'object' && first !== null && (first as Fields)[errorKey] !== undefined)
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
    mixin: deferred ? deferredMixin : snapshotMixin,
    mixinMergeStrategy,
    onChild,
    hooks: { ...user.hooks, streamWrite },
  }
  if (!deferred && fragments) {
    // The call's object, read before pino's write: whether its request fields may go out as text.
    ;(options.hooks as NonNullable<LoggerOptions['hooks']>).logMethod = function (
      this: pino.Logger,
      args: unknown[],
      method: LogMethod,
    ) {
      if (registry.contexts.length === 0) method.apply(this, args)
      else callWithText(this, args, method)
    } as NonNullable<NonNullable<LoggerOptions['hooks']>['logMethod']>
  }
  if (deferred) {
    options.hooks = deferredHooks(e, options.hooks, {
      depth: () => (current === undefined ? directDepth : current.depth + 1),
      stateOf,
      write: (item) => {
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
      writeNow: (logger, args, method, level, read, context) => {
        directDepth = 1
        directRead = read
        const outerContext = callContext
        if (read !== undefined) callContext = context
        try {
          const textOk = read !== undefined && fragments && registry.contexts.length !== 0 && mayUseText(args)
          // A call that logs the errorKey itself keeps it, as in snapshot mode: its mixin writes the line's problems, which the call's value replaces.
          if (
            read !== undefined &&
            (read.problems !== undefined || globals.problems !== undefined) &&
            !stateOf(logger).bindsErrorKey &&
            !hasErrorKey(args[0])
          ) {
            earlyProblems(logger, level, read, textOk)
          }
          // The snapshot's line: its request fields as text where it can. With keyed values
          // read, in the line scope the call began for them (or read already, by earlyProblems).
          if (!fragments || registry.contexts.length === 0) method.apply(logger, args)
          else if (read === undefined) callWithText(logger, args, method)
          else {
            // Nothing is written between this line's timestamp and its mixin (lines logged meanwhile queue).
            callFrag = textOk
            method.apply(logger, args)
          }
        } finally {
          callFrag = false
          lineText = undefined
          lineContext = NOT_READ
          callContext = outerContext
          directDepth = 0
          directEarly = false
          directContexts = undefined
          directText = undefined
          if (read !== undefined && directRead === read) {
            // pino threw before its mixin took them: the next line must not start from these values.
            directRead = undefined
            read.problems = undefined
            read.parts.length = 0
          }
        }
      },
    })
  }
  return options
}

/** The context writer of a line whose request fields went out as text. */
const writeNoContexts = (): undefined => undefined

/** Whether `t` is a time function of the application's own, which pino calls for every line. */
function isCustomTime(t: LoggerOptions['timestamp']): boolean {
  if (typeof t !== 'function') return false
  const std = pino.stdTimeFunctions
  return t !== std.epochTime && t !== std.unixTime && t !== std.isoTime && t !== std.nullTime
}

/** Deletes `keys` from `out`. */
function dropKeys(out: Fields, keys: readonly string[]): void {
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i] as string
    if (k in out) delete out[k]
  }
}
