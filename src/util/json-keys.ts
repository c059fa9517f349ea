// The top-level keys of a JSON object text, as Object.keys(JSON.parse(text))
// lists them, without building the values: a request logger's bindings
// (pino-http binds the whole serialized request, ~250 bytes with its headers)
// are read once per request, and JSON.parse spent most of that building
// objects only to be dropped. The scan accepts only text JSON.parse accepts
// (the same grammar, checked as strictly); anything else it does not settle,
// text it finds is not JSON included, an escaped key, an array-index key, deep
// nesting, is left to JSON.parse, which decides as before.

/** Deepest nesting the scan follows; deeper text is left to JSON.parse, whose own limit applies. */
const MAX_DEPTH = 64

/**
 * `Object.keys(JSON.parse(text))` for a JSON object text, or undefined when
 * `text` is not JSON or not an object. Exported for the tests.
 */
export function objectKeys(text: string): string[] | undefined {
  const keys = scanKeys(text)
  if (keys !== undefined) return keys
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return undefined
  }
  return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? Object.keys(parsed) : undefined
}

/** The keys of a JSON object text, or undefined for JSON.parse to decide. */
function scanKeys(text: string): string[] | undefined {
  const s = new Scan(text)
  s.space()
  if (s.code() !== OPEN_BRACE) return undefined
  s.i++
  s.space()
  const keys: string[] = []
  if (s.code() === CLOSE_BRACE) {
    s.i++
  } else {
    for (;;) {
      if (s.code() !== QUOTE) return undefined
      const start = s.i + 1
      if (!s.string()) return undefined
      const key = text.slice(start, s.i - 1)
      // Escapes need JSON's decoding; array-index keys are listed first by Object.keys.
      if (s.escaped || isIndexLike(key)) return undefined
      if (!keys.includes(key)) keys.push(key)
      s.space()
      if (s.code() !== COLON) return undefined
      s.i++
      if (!s.value(1)) return undefined
      s.space()
      const c = s.code()
      s.i++
      if (c === CLOSE_BRACE) break
      if (c !== COMMA) return undefined
      s.space()
    }
  }
  s.space()
  return s.i === text.length ? keys : undefined
}

/** A key that may be an array index (digits only): Object.keys would move it first. */
function isIndexLike(key: string): boolean {
  const c = key.charCodeAt(0)
  return c >= ZERO && c <= NINE
}

const OPEN_BRACE = 123
const CLOSE_BRACE = 125
const OPEN_BRACKET = 91
const CLOSE_BRACKET = 93
const QUOTE = 34
const BACKSLASH = 92
const COLON = 58
const COMMA = 44
const MINUS = 45
const PLUS = 43
const DOT = 46
const ZERO = 48
const NINE = 57

/** A cursor over JSON text; each reader moves past what it read, or reports that it is not JSON. */
class Scan {
  i = 0
  /** Whether the last string read had an escape in it. */
  escaped = false
  constructor(readonly text: string) {}

  code(): number {
    return this.text.charCodeAt(this.i)
  }

  /** JSON's whitespace: space, tab, line feed, carriage return. */
  space(): void {
    const t = this.text
    for (;;) {
      const c = t.charCodeAt(this.i)
      if (c === 32 || c === 9 || c === 10 || c === 13) this.i++
      else return
    }
  }

  /** A string starting at its opening quote; false when not JSON. */
  string(): boolean {
    const t = this.text
    this.escaped = false
    let i = this.i + 1
    for (;;) {
      const c = t.charCodeAt(i)
      if (c === QUOTE) {
        this.i = i + 1
        return true
      }
      // The end of the text (NaN) or a raw control character.
      if (!(c >= 32)) return false
      if (c === BACKSLASH) {
        this.escaped = true
        const e = t.charCodeAt(i + 1)
        if (e === 117) {
          for (let k = 2; k < 6; k++) if (!isHex(t.charCodeAt(i + k))) return false
          i += 6
          continue
        }
        // " \ / b f n r t
        if (e !== 34 && e !== 92 && e !== 47 && e !== 98 && e !== 102 && e !== 110 && e !== 114 && e !== 116) {
          return false
        }
        i += 2
        continue
      }
      i++
    }
  }

  /** Any value, after optional whitespace: true when read, false when not JSON or nested too deep. */
  value(depth: number): boolean {
    this.space()
    const t = this.text
    const c = t.charCodeAt(this.i)
    if (c === QUOTE) return this.string()
    if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (depth >= MAX_DEPTH) return false
      const object = c === OPEN_BRACE
      const close = object ? CLOSE_BRACE : CLOSE_BRACKET
      this.i++
      this.space()
      if (this.code() === close) {
        this.i++
        return true
      }
      for (;;) {
        if (object) {
          this.space()
          if (this.code() !== QUOTE || !this.string()) return false
          this.space()
          if (this.code() !== COLON) return false
          this.i++
        }
        if (!this.value(depth + 1)) return false
        this.space()
        const n = this.code()
        this.i++
        if (n === close) return true
        if (n !== COMMA) return false
      }
    }
    if (c === MINUS || (c >= ZERO && c <= NINE)) return this.number()
    if (t.startsWith('true', this.i)) {
      this.i += 4
      return true
    }
    if (t.startsWith('null', this.i)) {
      this.i += 4
      return true
    }
    if (t.startsWith('false', this.i)) {
      this.i += 5
      return true
    }
    return false
  }

  /** -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
  number(): boolean {
    const t = this.text
    let i = this.i
    if (t.charCodeAt(i) === MINUS) i++
    let c = t.charCodeAt(i)
    if (c === ZERO) i++
    else if (c >= 49 && c <= NINE) i = digits(t, i)
    else return false
    c = t.charCodeAt(i)
    if (c === DOT) {
      const j = digits(t, i + 1)
      if (j === i + 1) return false
      i = j
      c = t.charCodeAt(i)
    }
    if (c === 101 || c === 69) {
      i++
      c = t.charCodeAt(i)
      if (c === PLUS || c === MINUS) i++
      const j = digits(t, i)
      if (j === i) return false
      i = j
    }
    this.i = i
    return true
  }
}

function digits(t: string, i: number): number {
  for (;;) {
    const c = t.charCodeAt(i)
    if (c >= ZERO && c <= NINE) i++
    else return i
  }
}

function isHex(c: number): boolean {
  return (c >= ZERO && c <= NINE) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102)
}
