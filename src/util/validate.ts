/**
 * The longest delay a Node timer holds, in ms (2^31 - 1, about 24.8 days).
 * Node turns a longer one into 1 ms, so a millisecond option above it would
 * silently fire at once: every such option is refused above it.
 */
export const MAX_TIMER_MS = 2_147_483_647

/**
 * Checks an integer option.
 * @throws RangeError quoting `value` when it is not an integer in `[min, max]`
 */
export function checkInteger(name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || Math.floor(value) !== value) {
    throw new RangeError(`${name} must be an integer >= ${min}, received ${String(value)}`)
  }
  if (value > max) throw new RangeError(`${name} must be at most ${max}, received ${String(value)}`)
}

/**
 * Checks a millisecond option: an integer from `min` to {@link MAX_TIMER_MS}.
 * @throws RangeError quoting `value` otherwise, NaN and Infinity included
 */
export function checkMs(name: string, value: unknown, min = 0): void {
  checkInteger(name, value, min, MAX_TIMER_MS)
}

/**
 * The entries of an options object whose value is not `undefined`: an option
 * given as `undefined` (a config value left unset) takes its default.
 * @throws TypeError quoting `o` when it is not an object (null, an array, a number)
 */
export function definedOnly<T extends object>(o: T, what: string): Partial<T> {
  if (typeof o !== 'object' || o === null || Array.isArray(o)) {
    throw new TypeError(`${what} expects an options object, received ${Array.isArray(o) ? 'an array' : String(o)}`)
  }
  const out: Partial<T> = {}
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v
  return out
}
