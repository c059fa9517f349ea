import { CAPTURE_OPEN } from '../pino/transport-capture.js'

// Where things are on a raw line of pino's, found without parsing it: the
// level and time pino writes first, and the capture the main thread wrote
// right after them. A line this cannot read takes the worker's general path
// (JSON.parse), so a shape is only ever reported where it is certain.

const LEVEL_START = '{"level":'
const TIME_START = ',"time":'

/**
 * Where the line's level, time and our capture are, read in place without
 * parsing the rest. Indexes are into the chunk the line is in.
 */
export interface Shape {
  /** The level written as `{"level":N`, or -1 when the line opens otherwise. */
  level: number
  /** The time written as `,"time":T` right after it, or -1. */
  time: number
  /** The capture's JSON object text, and where `,"@pino-enrich" :{...}` starts and ends. */
  capture: string | undefined
  /** Where the enrichment goes: after level and time, or where the capture was when the line opens otherwise. */
  insert: number
  /** Where the capture starts and ends; both `insert` when there is none. */
  at: number
  end: number
}

/**
 * Reads the shape of the line `t[s, e)` into `into`; false when it has no
 * place for enrichment that can be found without parsing (it then takes the
 * general path). `known` and `other` are the two capture texts seen last (a
 * request's `request.log` and `app.log` lines differ by their bound keys): a
 * JSON object ends where its text does, so a capture that starts with one is
 * exactly it.
 *
 * The capture is read only where the main thread wrote it: the first
 * {@link CAPTURE_OPEN} on the line, which pino's serializer cannot write, and
 * which the main thread puts on every line, right after the time.
 */
export function readShape(
  t: string,
  s: number,
  e: number,
  into: Shape,
  known: string | undefined,
  other: string | undefined,
): boolean {
  if (t.charCodeAt(s) !== 123) return false
  let level = -1
  let time = -1
  let i = s
  if (startsAt(t, LEVEL_START, s, e)) {
    i += LEVEL_START.length
    const levelStart = i
    let n = 0
    for (let c = t.charCodeAt(i); c >= 48 && c <= 57 && i < e; c = t.charCodeAt(++i)) n = n * 10 + c - 48
    const c = t.charCodeAt(i)
    if (i !== levelStart && i - levelStart <= 9 && i < e && (c === 44 || c === 125)) {
      level = n
      if (startsAt(t, TIME_START, i, e)) {
        let j = i + TIME_START.length
        const timeStart = j
        let m = 0
        for (let d = t.charCodeAt(j); d >= 48 && d <= 57 && j < e; d = t.charCodeAt(++j)) m = m * 10 + d - 48
        const d = t.charCodeAt(j)
        if (j !== timeStart && j - timeStart <= 15 && j < e && (d === 44 || d === 125)) {
          time = m
          i = j
        }
      }
    } else i = s
  }
  into.level = level
  into.time = time
  let at = i
  if (!startsAt(t, CAPTURE_OPEN, i, e)) {
    // Searched within this line only: the chunk may hold thousands more.
    const found = t.slice(s, e).indexOf(CAPTURE_OPEN)
    at = found === -1 ? -1 : s + found
  }
  if (at === -1) {
    // A line no transport-mode logger wrote: enrichment after level and time, if the line opens with them.
    if (i === s) return false
    into.capture = undefined
    into.insert = i
    into.at = i
    into.end = i
    return true
  }
  const valueStart = at + CAPTURE_OPEN.length
  // After level and time, ahead of every field of the line's own, which win over enrichment.
  into.insert = i === s ? at : i
  into.at = at
  const seen =
    known !== undefined && startsAt(t, known, valueStart, e)
      ? known
      : other !== undefined && startsAt(t, other, valueStart, e)
        ? other
        : undefined
  if (seen !== undefined) {
    into.capture = seen
    into.end = valueStart + seen.length
    return true
  }
  const valueEnd = objectEnd(t, valueStart, e)
  if (valueEnd === -1) return false
  into.capture = t.slice(valueStart, valueEnd)
  into.end = valueEnd
  return true
}

/**
 * Whether `t` holds `text` at `i`, ending before `e`. A slice compared whole,
 * not `startsWith` with a position: on Node 20 that took several hundred ns
 * a call on a line of pino's, 3-4 times a slice and `===`.
 */
function startsAt(t: string, text: string, i: number, e: number): boolean {
  const end = i + text.length
  return end <= e && t.slice(i, end) === text
}

/** The index after the JSON object starting at `i` and ending before `e`, or -1. */
function objectEnd(s: string, i: number, e: number): number {
  if (s.charCodeAt(i) !== 123) return -1
  let depth = 0
  let inString = false
  for (; i < e; i++) {
    const c = s.charCodeAt(i)
    if (inString) {
      if (c === 92) i++
      else if (c === 34) inString = false
    } else if (c === 34) inString = true
    else if (c === 123) depth++
    else if (c === 125 && --depth === 0) return i + 1
  }
  return -1
}

/** The line's own ending (`\n` or `\r\n`), or a newline for a last line without one. */
export function ending(t: string, e: number, next: number): string {
  return next > e ? t.slice(e, next) : '\n'
}
