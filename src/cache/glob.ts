/**
 * Longest glob {@link SmartCache.invalidatePattern} accepts, in characters.
 * Matching costs at most the key's length times the pattern's, so the bound
 * keeps a pattern from another instance (pub/sub) cheap over any key.
 */
export const MAX_PATTERN_LENGTH = 1_024

/**
 * Compiles a glob (`*` any run of characters, `?` one UTF-16 unit, every other
 * character itself) into a matcher of whole keys. No RegExp is built: the
 * pattern is cut at its stars and each piece is found at its leftmost place
 * after the previous one, which is enough for `*` (a later place never helps
 * a later piece), so a key is scanned once per piece with no backtracking,
 * whatever the pattern.
 *
 * @throws RangeError for a pattern longer than {@link MAX_PATTERN_LENGTH}
 */
export function compileGlob(glob: string): (key: string) => boolean {
  if (glob.length > MAX_PATTERN_LENGTH) {
    throw new RangeError(
      `a pattern must be at most ${MAX_PATTERN_LENGTH} characters long, received one of ${glob.length}`,
    )
  }
  if (!glob.includes('*') && !glob.includes('?')) return (key) => key === glob
  const pieces = glob.split('*')
  if (pieces.length === 1) return (key) => key.length === glob.length && matchAt(key, 0, glob)
  const head = pieces[0] as string
  const tail = pieces[pieces.length - 1] as string
  // Runs of stars leave empty pieces: they match anywhere and are dropped.
  const middle = pieces.slice(1, -1).filter((p) => p.length > 0)
  let least = head.length + tail.length
  for (const p of middle) least += p.length
  if (head.length === 0 && tail.length === 0 && middle.length === 0) return () => true
  return (key) => {
    if (key.length < least) return false
    if (!matchAt(key, 0, head)) return false
    const end = key.length - tail.length
    if (!matchAt(key, end, tail)) return false
    let at = head.length
    for (const piece of middle) {
      const found = find(key, piece, at, end)
      if (found < 0) return false
      at = found + piece.length
    }
    return true
  }
}

/** Whether `piece` (with `?` for any unit) matches `key` at `at`. */
function matchAt(key: string, at: number, piece: string): boolean {
  for (let j = 0; j < piece.length; j++) {
    const c = piece.charCodeAt(j)
    if (c !== 63 /* ? */ && c !== key.charCodeAt(at + j)) return false
  }
  return true
}

/** Leftmost place at or after `from` where `piece` fits before `end`, or -1. */
function find(key: string, piece: string, from: number, end: number): number {
  if (!piece.includes('?')) {
    const i = key.indexOf(piece, from)
    return i >= 0 && i + piece.length <= end ? i : -1
  }
  for (let i = from; i + piece.length <= end; i++) if (matchAt(key, i, piece)) return i
  return -1
}
