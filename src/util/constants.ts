/** Does nothing: a callback whose outcome is not wanted (a rejection already recorded elsewhere). */
export const noop = (): void => {}
