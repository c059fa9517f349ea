import { EntryState, freshValue, NOT_FRESH, type SmartCache } from '../cache/smart-cache.js'
import { beginLine, endLine } from '../context/line-scope.js'
import type { ContextWriter } from '../context/writer.js'
import type { EnrichContext, Enricher, EnricherFn, Fields } from '../enricher.js'
import { errorKind } from '../errors.js'
import { sanitizeFields } from '../sanitize.js'
import { isThenable } from '../util/async.js'
import { noop } from '../util/constants.js'
import { UNSAFE_KEYS } from '../util/keys.js'
import type { Line, Waiter } from './line.js'
import type { LineCounters } from './metrics.js'
import { addProblem, mergeProblems, ProblemKind, type Problems, problemOf, slotProblem } from './problems.js'
import type { Prepared, Registry, Slot } from './registry.js'

const KEY_FAILED = Symbol('key failed')
const UNSAFE_FLAT_KEYS: ReadonlySet<string> = new Set([...UNSAFE_KEYS, 'then'])

/**
 * What {@link Collector.readCached} found for a line: each keyed enricher's
 * value at hand, by position, its problems, and where the read stopped (the
 * first value that must be waited for, its key already read and looked up).
 * One is kept by a reader and reused line after line: a line whose values are
 * all at hand costs no allocation here.
 */
export class KeyedRead {
  /** The keyed values by position. Emptied by whoever takes them, so that the next line starts from none. */
  readonly parts: Array<Fields | undefined> = []
  problems: Problems | undefined = undefined
  /** Position of the keyed enricher whose value is missing, or -1 when every value is at hand. */
  stop = -1
  /** The keyed enrichers the read went through: the registry's array may be replaced before the read goes on. */
  keyed: readonly Slot[] = []
  /** The missing enricher's key as its `key()` returned it, and the cache key made of it. */
  raw: unknown = undefined
  key = ''
}

/**
 * The log path's read of keyed and function enrichers, one step for every
 * mode. A snapshot ({@link collectNow}) takes what is ready into the line's
 * object and refreshes what is missing; a line that may wait ({@link gather})
 * takes what is ready into its parts and waits for the rest. Both go through
 * the same read of each enricher: its key, its cache's entry, its fallback
 * and its problems are worked out in one place.
 */
export class Collector {
  /**
   * Above 0 while a line's keyed and function enrichers run: a log call made
   * from inside one (a `key()` or a function that logs) is written without
   * enrichment, once, instead of re-entering it line after line.
   */
  enriching = 0
  readonly #registry: Registry
  readonly #counters: LineCounters
  /** Lines waiting on each running compute. */
  readonly #waiters = new WeakMap<Promise<Prepared | undefined>, Set<Waiter>>()

  constructor(registry: Registry, counters: LineCounters) {
    this.#registry = registry
    this.#counters = counters
  }

  /**
   * Adds what keyed and function enrichers have ready now to `out`, starting
   * background refreshes for what is missing or stale. Never waits. Returns the
   * problems met, or undefined. `inLine`: the caller has begun the line (see
   * {@link readCached}).
   */
  collectNow(
    ctx: EnrichContext,
    out: Fields,
    into: Problems | undefined,
    now: number,
    writeContexts: ContextWriter<Problems> = this.#registry.writeContexts,
    inLine = false,
  ): Problems | undefined {
    const outer = inLine ? -1 : beginLine()
    this.enriching++
    try {
      return this.#read(ctx, now, into, out, undefined, writeContexts)
    } finally {
      this.enriching--
      if (outer !== -1) endLine(outer)
    }
  }

  /**
   * Reads a line's keyed enrichers into `into` (function and context-fields
   * enrichers are the caller's) and returns true when every value is at hand:
   * fresh, stale (a refresh is started), known failed, or not wanted (no key,
   * below `minLevel`). Returns false at the first value that must be waited
   * for, having read its key and looked it up: {@link gather} with `into`
   * goes on from there, so that no `key()` runs twice for one line and no
   * lookup is counted twice. `inLine`: the caller has begun the line
   * ({@link beginLine}) and ends it once the rest of the line is read, so that
   * a request store's `user(req)` is asked once for all of it.
   */
  readCached(ctx: EnrichContext, now: number, into: KeyedRead, inLine = false): boolean {
    const outer = inLine ? -1 : beginLine()
    this.enriching++
    try {
      into.stop = -1
      into.problems = this.#read(ctx, now, undefined, undefined, undefined, this.#registry.writeContexts, into)
      return into.stop === -1
    } finally {
      this.enriching--
      if (outer !== -1) endLine(outer)
    }
  }

  /**
   * Gathers a line's enrichment: what is ready now synchronously, the rest as
   * it arrives until `done` is set. `onReady` runs once nothing is awaited.
   * With `from`, a {@link readCached} that stopped at a missing value, its
   * values and problems are taken and the read goes on from that value;
   * `inLine` as for that read.
   */
  gather(
    line: Line,
    writeContexts: ContextWriter<Problems> = this.#registry.writeContexts,
    from: KeyedRead | undefined = undefined,
    inLine = false,
  ): void {
    const outer = inLine ? -1 : beginLine()
    this.enriching++
    try {
      line.problems = this.#read(line.ctx, line.now, line.problems, undefined, line, writeContexts, from)
    } finally {
      this.enriching--
      if (outer !== -1) endLine(outer)
    }
  }

  /**
   * Marks what a line still waits for as timed out. A value cached meanwhile
   * by another compute than the one it waits on (a newer one, after an
   * invalidation dropped the first) is taken instead: a line whose value is
   * in the cache is never written without it.
   */
  timeOut(line: Line): void {
    line.done = true
    if (line.waiting === undefined) return
    let missed = false
    for (const w of line.waiting) {
      w.set.delete(w)
      const { slot, i } = w
      if (w.key !== undefined && this.#cached(line, w.key, slot, i)) continue
      missed = true
      slot.lineTimeouts++
      if (slot.fallback !== undefined) line.parts[i] = slot.fallback
      line.problems = addProblem(line.problems, ProblemKind.Timeout, slot.name)
    }
    line.waiting = undefined
    if (missed) this.#counters.timedOut++
  }

  /** Takes a keyed value the cache holds now into the line; false when it holds none. */
  #cached(line: Line, key: string, slot: Slot, i: number): boolean {
    const p = (slot.cache as SmartCache<Prepared | undefined>).peek(key)
    if (p.state !== EntryState.Fresh && p.state !== EntryState.Stale) return false
    const v = p.value
    line.parts[i] = this.#registry.fieldsOf(v)
    if (v?.invalid) line.problems = addProblem(line.problems, ProblemKind.Invalid, slot.name)
    if (p.state === EntryState.Stale) line.problems = addProblem(line.problems, ProblemKind.Stale, slot.name)
    return true
  }

  /**
   * The read, for a snapshot (`out` given: what is ready is assigned into it,
   * a missing value is `pending` and refreshed), for a line that may wait
   * (`line` given: what is ready goes into its parts, a missing value is
   * loaded and waited for), or for a line that goes out at once if it can
   * (neither given, `read` given: keyed values only, into `read.parts`, up to
   * the first missing one). A line given with `read` goes on where that read
   * stopped. Returns the problems, `problems` included.
   */
  #read(
    ctx: EnrichContext,
    now: number,
    problems: Problems | undefined,
    out: Fields | undefined,
    line: Line | undefined,
    writeContexts: ContextWriter<Problems>,
    read?: KeyedRead,
  ): Problems | undefined {
    const registry = this.#registry
    let keyed: readonly Slot[] = registry.keyed
    const fns = registry.fns
    const level = ctx.level
    const parts = line === undefined ? read?.parts : line.parts
    let i = 0
    if (read !== undefined) {
      if (line === undefined) read.keyed = keyed
      else {
        // Going on after readCached stopped: its values are taken as they are, its missing one is loaded with
        // the key it read, and the keyed enrichers are those it went through.
        keyed = read.keyed
        const stop = read.stop
        const given = read.parts
        for (; i < stop; i++) {
          line.parts[i] = given[i]
          given[i] = undefined
        }
        const found = read.problems
        if (found !== undefined) problems = problems === undefined ? found : mergeProblems(problems, found)
        const slot = keyed[stop] as Slot
        const raw = read.raw
        read.raw = undefined
        read.problems = undefined
        const cache = slot.cache as SmartCache<Prepared | undefined>
        this.#wait(
          line,
          stop,
          slot,
          cache.load(read.key, (_k, { signal }) => registry.compute(slot, raw, ctx, signal)),
          read.key,
        )
        i = stop + 1
      }
    }
    for (; i < keyed.length; i++) {
      const slot = keyed[i] as Slot
      if (level < slot.minLevel) continue
      const raw = rawKey(slot, ctx)
      const k = toKey(raw)
      if (k === undefined) continue
      if (k === null) {
        // An async key(): unusable as a key, and its rejection is the enricher's, not an unhandled one.
        if (isThenable(raw)) Promise.resolve(raw).catch(noop)
        problems = addProblem(problems, ProblemKind.Invalid, slot.name)
        continue
      }
      const cache = slot.cache as SmartCache<Prepared | undefined>
      // Nearly every line finds its value fresh: read without the result object lookup() builds.
      const hit = freshValue(cache, k, now)
      if (hit !== NOT_FRESH) {
        const fields = hit === undefined || hit.gen === registry.coreGen ? hit?.fields : registry.fieldsOf(hit)
        if (parts !== undefined) parts[i] = fields
        else if (fields !== undefined) Object.assign(out as Fields, fields)
        if (hit?.invalid) problems = addProblem(problems, ProblemKind.Invalid, slot.name)
        continue
      }
      const p = cache.lookup(k, now)
      if (p.state === EntryState.Fresh || p.state === EntryState.Stale) {
        const v = p.value
        const fields = v === undefined || v.gen === registry.coreGen ? v?.fields : registry.fieldsOf(v)
        if (parts !== undefined) parts[i] = fields
        else if (fields !== undefined) Object.assign(out as Fields, fields)
        if (v?.invalid) problems = addProblem(problems, ProblemKind.Invalid, slot.name)
        if (p.state === EntryState.Stale) {
          problems = addProblem(problems, ProblemKind.Stale, slot.name)
          if (p.error === undefined) this.#refresh(slot, k, raw, ctx)
        }
        continue
      }
      // The error tier and an open breaker are known now: nothing to wait for.
      const open = p.state === EntryState.Miss && cache.breaker?.state === 'open'
      if (p.state === EntryState.Error || open) {
        if (parts !== undefined) parts[i] = slot.fallback
        else if (slot.fallback !== undefined) Object.assign(out as Fields, slot.fallback)
        problems = slotProblem(problems, open ? ProblemKind.Open : problemOf(p.error), slot)
      } else if (line !== undefined) {
        this.#wait(
          line,
          i,
          slot,
          cache.load(k, (_k, { signal }) => registry.compute(slot, raw, ctx, signal)),
          k,
        )
      } else if (out === undefined) {
        // readCached: stops here, for gather to load this value and go on.
        const r = read as KeyedRead
        r.stop = i
        r.raw = raw
        r.key = k
        return problems
      } else {
        if (slot.fallback !== undefined) Object.assign(out, slot.fallback)
        problems = slotProblem(problems, ProblemKind.Pending, slot)
        this.#refresh(slot, k, raw, ctx)
      }
    }
    // readCached reads keyed values only: the caller has none of the rest, or writes it itself.
    if (line === undefined && out === undefined) return problems
    for (let j = 0; j < fns.length; j++) {
      const slot = fns[j] as Slot
      if (level < slot.minLevel) continue
      const i = keyed.length + j
      // A throw from the enricher or from reading its result (a getter, a Proxy trap) is its failure.
      try {
        const r: unknown = (slot.fn as EnricherFn)(ctx)
        if (r === undefined || r === null) continue
        let into = out
        // The usual result, a fresh flat object of primitives, is copied in one pass.
        if (typeof r === 'object' && Object.getPrototypeOf(r) === Object.prototype) {
          if (line !== undefined) into = {}
          if (copyFlat(r as Fields, into as Fields, registry.coreKeys, slot, registry.maxFieldBytes)) {
            if (line !== undefined) line.parts[i] = into
            continue
          }
        }
        if (isThenable(r)) {
          if (line !== undefined) this.#wait(line, i, slot, this.#settle(slot, r), undefined)
          else {
            // A snapshot cannot wait; the promise's outcome is only observed.
            Promise.resolve(r).catch(noop)
            problems = addProblem(problems, ProblemKind.Pending, slot.name)
          }
          continue
        }
        if (into === undefined) into = {}
        problems = this.#assignFnResult(slot, r, into, problems)
        if (line !== undefined) line.parts[i] = into
      } catch (e) {
        problems = this.#fnFailed(slot, e, problems)
      }
    }
    const c = ctx.context
    if (c !== undefined) {
      if (line === undefined) {
        const refused = writeContexts(c, level, out as Fields)
        if (refused !== undefined) problems = mergeProblems(problems, refused)
      } else if (registry.contexts.length !== 0) {
        problems = contextsInto(line, c, writeContexts, keyed.length + fns.length, problems)
      }
    }
    return problems
  }

  /**
   * A line logged from inside an enricher of this pipeline, which is not
   * enriched again: its request fields only, as a snapshot line written then
   * has them. In the line scope of the line being enriched.
   */
  gatherContexts(line: Line, writeContexts: ContextWriter<Problems>): void {
    const registry = this.#registry
    const c = line.ctx.context
    if (c === undefined || registry.contexts.length === 0) return
    line.problems = contextsInto(line, c, writeContexts, registry.keyed.length + registry.fns.length, line.problems)
  }

  /** A function enricher's promised result, sanitized as it is awaited. */
  #settle(slot: Slot, r: PromiseLike<unknown>): Promise<Prepared> {
    const registry = this.#registry
    return Promise.resolve(r).then((v) => {
      const s = sanitizeFields(v, registry.maxFieldBytes, registry.coreKeys, undefined)
      if (s.problem !== undefined) slot.invalid++
      const prepared: Prepared = { fields: s.fields, invalid: s.problem !== undefined, gen: registry.coreGen }
      return prepared
    })
  }

  #wait(line: Line, i: number, slot: Slot, promise: Promise<Prepared | undefined>, key: string | undefined): void {
    // One reaction per compute, however many lines wait on it (single flight).
    let set = this.#waiters.get(promise)
    if (set === undefined) {
      const s = new Set<Waiter>()
      set = s
      this.#waiters.set(promise, s)
      promise.then(
        (v) => {
          for (const w of s) this.#settled(w, v, undefined, true)
          s.clear()
        },
        (e: unknown) => {
          for (const w of s) this.#settled(w, undefined, e, false)
          s.clear()
        },
      )
    }
    const w: Waiter = { slot, i, line, set, key }
    set.add(w)
    line.waiting = line.waiting === undefined ? [w] : [...line.waiting, w]
  }

  #settled(w: Waiter, v: Prepared | undefined, e: unknown, ok: boolean): void {
    const { line, slot, i } = w
    if (line.done || line.waiting === undefined) return
    if (ok) {
      line.parts[i] = this.#registry.fieldsOf(v)
      if (v?.invalid) line.problems = addProblem(line.problems, ProblemKind.Invalid, slot.name)
    } else {
      line.parts[i] = slot.fallback
      if (slot.fn !== undefined) {
        slot.errors++
        this.#emitError(slot, e)
      }
      const kind = problemOf(e)
      if (kind === ProblemKind.Busy) slot.busy++
      line.problems = addProblem(line.problems, kind, slot.name)
    }
    line.waiting = line.waiting.filter((x) => x !== w)
    if (line.waiting.length === 0) {
      line.waiting = undefined
      line.onReady?.()
    }
  }

  #refresh(slot: Slot, k: string, raw: unknown, ctx: EnrichContext): void {
    const registry = this.#registry
    ;(slot.cache as SmartCache<Prepared | undefined>).refresh(k, (_k, { signal }) =>
      registry.compute(slot, raw, ctx, signal),
    )
  }

  #fnFailed(slot: Slot, e: unknown, problems: Problems | undefined): Problems {
    slot.errors++
    this.#emitError(slot, e)
    return addProblem(problems, ProblemKind.Error, slot.name)
  }

  #emitError(slot: Slot, e: unknown): void {
    const events = this.#registry.events
    if (events.hasListeners) events.emit({ type: 'error', enricher: slot.name, code: errorKind(e), error: e })
  }

  /** Copies a function enricher's output that is not a flat object of primitives: sanitized. */
  #assignFnResult(slot: Slot, r: unknown, out: Fields, problems: Problems | undefined): Problems | undefined {
    if (typeof r !== 'object' || r === null || Array.isArray(r)) {
      slot.invalid++
      return addProblem(problems, ProblemKind.Invalid, slot.name)
    }
    const registry = this.#registry
    const s = sanitizeFields(r, registry.maxFieldBytes, registry.coreKeys, undefined)
    if (s.fields !== undefined) Object.assign(out, s.fields)
    if (s.problem !== undefined) {
      slot.invalid++
      return addProblem(problems, ProblemKind.Invalid, slot.name)
    }
    return problems
  }
}

/** Writes a queued line's request fields into its last part, the text its time part writes them from. */
function contextsInto(
  line: Line,
  c: NonNullable<EnrichContext['context']>,
  writeContexts: ContextWriter<Problems>,
  at: number,
  problems: Problems | undefined,
): Problems | undefined {
  const fields: Fields = {}
  const refused = writeContexts(c, line.ctx.level, fields)
  line.parts[at] = fields
  line.contexts = fields
  return refused === undefined ? problems : mergeProblems(problems, refused)
}

/** The key function's raw result, or {@link KEY_FAILED} when it threw. */
function rawKey(slot: Slot, ctx: EnrichContext): unknown {
  try {
    return (slot.def as Enricher).key?.(ctx)
  } catch {
    return KEY_FAILED
  }
}

/** A cache key from a key function's result: undefined to skip, null when unusable. */
function toKey(raw: unknown): string | undefined | null {
  if (raw === undefined || raw === null) return undefined
  if (typeof raw === 'string') return raw
  if (typeof raw === 'number' || typeof raw === 'bigint' || typeof raw === 'boolean') return String(raw)
  return null
}

/**
 * Copies a flat object of primitives into `out` and returns true; returns
 * false, having written nothing, at the first key or value that needs the
 * sanitizer, or when the output is over `maxBytes`. Each value is read once.
 */
function copyFlat(r: Fields, out: Fields, drop: ReadonlySet<string>, slot: Slot, maxBytes: number): boolean {
  const keys = Object.keys(r)
  // Keys are checked once per shape: a function returns the same keys line after line.
  const last = slot.flatKeys
  let known = last !== undefined && last.length === keys.length
  if (known) {
    for (let i = 0; i < keys.length; i++) {
      if (keys[i] !== (last as string[])[i]) {
        known = false
        break
      }
    }
  }
  let budget = maxBytes
  const values: unknown[] = new Array(keys.length)
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i] as string
    const v = r[key]
    const t = typeof v
    if (t === 'string') {
      if ((v as string).length > 1024) return false
      budget -= (v as string).length
    } else if (t !== 'number' && t !== 'boolean' && t !== 'undefined') {
      return false
    }
    budget -= key.length + 8
    if (budget < 0) return false
    if (!known && (drop.has(key) || UNSAFE_FLAT_KEYS.has(key))) return false
    values[i] = v
  }
  for (let i = 0; i < keys.length; i++) if (values[i] !== undefined) out[keys[i] as string] = values[i]
  if (!known) slot.flatKeys = keys
  return true
}
