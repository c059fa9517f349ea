/**
 * A strict JSON scanner that reports keys appearing twice in one object, at
 * any depth: `JSON.parse` keeps the last silently, which is what a log store
 * that rejects or mishandles duplicate keys does not do.
 */

/** A key met twice in one object: `path` is where that object is (`''` the top, `'req'` ...). */
export interface DuplicateKey {
  path: string
  key: string
}

/** Every duplicate key of the JSON text `text`; throws a SyntaxError on text that is not one JSON value. */
export function duplicateKeys(text: string): DuplicateKey[] {
  const found: DuplicateKey[] = []
  let i = 0

  const fail = (what: string): never => {
    throw new SyntaxError(`${what} at ${i} in ${text.slice(0, 200)}`)
  }
  const space = (): void => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++
  }
  const string = (): string => {
    const start = i
    if (text[i] !== '"') fail('expected a string')
    i++
    while (i < text.length && text[i] !== '"') {
      if (text.charCodeAt(i) < 0x20) fail('control character in a string')
      i += text[i] === '\\' ? 2 : 1
    }
    if (i >= text.length) fail('unterminated string')
    i++
    // The raw text is a valid JSON string now: let JSON decode its escapes.
    return JSON.parse(text.slice(start, i)) as string
  }
  const value = (path: string): void => {
    space()
    const c = text[i]
    if (c === '{') {
      i++
      const keys = new Set<string>()
      space()
      if (text[i] === '}') {
        i++
        return
      }
      for (;;) {
        space()
        const key = string()
        if (keys.has(key)) found.push({ path, key })
        keys.add(key)
        space()
        if (text[i] !== ':') fail('expected ":"')
        i++
        value(path === '' ? key : `${path}.${key}`)
        space()
        if (text[i] === ',') {
          i++
          continue
        }
        if (text[i] === '}') {
          i++
          return
        }
        fail('expected "," or "}"')
      }
    }
    if (c === '[') {
      i++
      space()
      if (text[i] === ']') {
        i++
        return
      }
      for (let n = 0; ; n++) {
        value(`${path}[${n}]`)
        space()
        if (text[i] === ',') {
          i++
          continue
        }
        if (text[i] === ']') {
          i++
          return
        }
        fail('expected "," or "]"')
      }
    }
    if (c === '"') {
      string()
      return
    }
    const m = /^(?:-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)/.exec(text.slice(i, i + 64))
    if (m === null) fail('expected a value')
    i += (m as RegExpExecArray)[0].length
  }

  value('')
  space()
  if (i !== text.length) fail('text after the value')
  return found
}

/** How many times `key` appears at the top level of the JSON object `line`, counting duplicates. */
export function topLevelCount(line: string, key: string): number {
  const parsed = JSON.parse(line) as Record<string, unknown>
  const dupes = duplicateKeys(line).filter((d) => d.path === '' && d.key === key).length
  return Object.hasOwn(parsed, key) ? 1 + dupes : 0
}

/** The raw NDJSON lines of a sink's chunks. */
export function rawLines(chunks: readonly string[]): string[] {
  return chunks
    .join('')
    .split('\n')
    .filter((l) => l.length > 0)
}
