import { BreakerOpenError, CachedError, InflightLimitError, isEnrichError, TimeoutError } from '../errors.js'

/** Problem kinds recorded under `errorKey`. */
export const ProblemKind = {
  Timeout: 'timeout',
  Error: 'error',
  Open: 'open',
  Stale: 'stale',
  Pending: 'pending',
  Invalid: 'invalid',
  /** The lookup was refused: the enricher's `maxInflight` computes were running. Nothing failed. */
  Busy: 'busy',
} as const
export type ProblemKind = (typeof ProblemKind)[keyof typeof ProblemKind]

/** `{ timeout: ['user'], stale: ['host'] }`: enricher names by problem. */
export type Problems = Partial<Record<ProblemKind, string[]>>

/** An enricher as its problems are recorded: its name, and one shared problem set per kind. */
export interface ProblemSource {
  readonly name: string
  /** One frozen `{ kind: [name] }` per kind, reused so a repeated problem costs no allocation. */
  readonly memo: Partial<Record<ProblemKind, Problems>>
}

/** `problems` with `name` recorded under `kind`; a shared (frozen) set is copied first. */
export function addProblem(problems: Problems | undefined, kind: ProblemKind, name: string): Problems {
  // Frozen problem sets are shared (memoized); they are copied before a change.
  const p = problems === undefined ? {} : Object.isFrozen(problems) ? copyProblems(problems) : problems
  const list = p[kind]
  if (list === undefined) p[kind] = [name]
  else if (!list.includes(name)) list.push(name)
  return p
}

/** The problem of one enricher, as a shared frozen object when it is the record's first. */
export function slotProblem(problems: Problems | undefined, kind: ProblemKind, slot: ProblemSource): Problems {
  if (problems !== undefined) return addProblem(problems, kind, slot.name)
  let memo = slot.memo[kind]
  if (memo === undefined) {
    memo = Object.freeze({ [kind]: Object.freeze([slot.name]) }) as Problems
    slot.memo[kind] = memo
  }
  return memo
}

/** `extra`'s problems added to `problems`. */
export function mergeProblems(problems: Problems | undefined, extra: Problems): Problems {
  if (problems === undefined) return extra
  let p = problems
  for (const [kind, names] of Object.entries(extra) as Array<[ProblemKind, string[]]>) {
    for (const name of names) p = addProblem(p, kind, name)
  }
  return p
}

/**
 * A line's own problems after the global ones, or undefined when there are
 * none; either set alone is returned as it is (shared sets stay shared).
 */
export function withGlobal(global: Problems | undefined, local: Problems | undefined): Problems | undefined {
  if (local === undefined) return global
  if (global === undefined) return local
  const merged = copyProblems(global)
  for (const [kind, names] of Object.entries(local) as Array<[ProblemKind, string[]]>) {
    merged[kind] = merged[kind] === undefined ? names : [...(merged[kind] as string[]), ...names]
  }
  return merged
}

const serialized = new WeakMap<Problems, string>()

/** JSON of a problem set, remembered for shared (frozen) sets. */
export function problemsJson(problems: Problems): string {
  let json = serialized.get(problems)
  if (json === undefined) {
    json = JSON.stringify(problems)
    if (Object.isFrozen(problems)) serialized.set(problems, json)
  }
  return json
}

function copyProblems(p: Problems): Problems {
  const out: Problems = {}
  for (const [k, v] of Object.entries(p) as Array<[ProblemKind, string[]]>) out[k] = [...v]
  return out
}

/** The problem kind of a failure. */
export function problemOf(e: unknown): ProblemKind {
  // Most failures are the backend's own errors: one brand check settles them.
  if (!isEnrichError(e)) return ProblemKind.Error
  if (e instanceof CachedError) return e.cause instanceof TimeoutError ? ProblemKind.Timeout : ProblemKind.Error
  if (e instanceof TimeoutError) return ProblemKind.Timeout
  if (e instanceof BreakerOpenError) return ProblemKind.Open
  // Refused before any compute: the backend is not at fault.
  if (e instanceof InflightLimitError) return ProblemKind.Busy
  if (isEnrichError(e) && e.code === 'ENRICH_TIMEOUT') return ProblemKind.Timeout
  return ProblemKind.Error
}
