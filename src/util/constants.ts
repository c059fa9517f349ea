/** Does nothing: a callback whose outcome is not wanted (a rejection already recorded elsewhere). */
export const noop = (): void => {}

/** A frozen empty record: the `record` of a line that has none, shared rather than made per line. */
export const EMPTY: Readonly<Record<string, unknown>> = Object.freeze({})
