/**
 * Internal helpers shared by the built-in enrichers. Not exported from
 * `pino-enrich/enrichers`.
 */

/**
 * Cache options of a value that never changes: it never goes stale and is
 * never recomputed. 2^40 ms is about 35 years; finite because the cache
 * takes integer ttls.
 */
export const ONCE = { ttlMs: 2 ** 40, staleMs: 0, jitter: 0 } as const

/** Longest string a built-in enricher copies from the environment or a remote answer. */
export const MAX_VALUE_LENGTH = 256

/** `v` when it is a usable string (non-empty after trimming, at most {@link MAX_VALUE_LENGTH}), else undefined. */
export function text(v: unknown): string | undefined {
  if (typeof v !== 'string') return undefined
  const t = v.trim()
  return t.length === 0 || t.length > MAX_VALUE_LENGTH ? undefined : t
}

/** The first usable value among `names` in `env`. */
export function fromEnv(
  env: Readonly<Record<string, string | undefined>>,
  names: readonly string[],
): string | undefined {
  for (const name of names) {
    const v = text(env[name])
    if (v !== undefined) return v
  }
  return undefined
}

/** A copy of `o` without its undefined values, or undefined when none is left. */
export function compact<T extends Record<string, unknown>>(o: T): Partial<T> | undefined {
  let out: Partial<T> | undefined
  for (const k of Object.keys(o) as Array<keyof T>) {
    if (o[k] === undefined) continue
    out ??= {}
    out[k] = o[k]
  }
  return out
}

/** Rounds to `digits` decimals, so sampled figures do not print 17 digits. */
export function round(v: number, digits: number): number {
  const f = 10 ** digits
  return Math.round(v * f) / f
}
