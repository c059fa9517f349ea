// A line's request fields written as text: byte for byte what pino writes of
// the same fields in the line's object, for values and keys an outsider picks.
import pino from 'pino'
import { describe, expect, it } from 'vitest'
import {
  type ContextSlot,
  ContextWriters,
  compileContextFragment,
  compileContextWriter,
  fieldsText,
  MAX_CONTEXT_VALUE_LENGTH,
  pinoString,
} from '../../src/context/writer.js'
import { sink } from '../helpers/sink.js'

const ALL = Number.NEGATIVE_INFINITY
const slot = (keys: Record<string, string>, minLevel = ALL): ContextSlot => ({
  from: Object.keys(keys),
  to: Object.values(keys),
  minLevel,
  errors: 0,
})
const refused = (_slot: ContextSlot, so: number | undefined): number => (so ?? 0) + 1

/** What pino writes of `fields` as a line's object: the text between the level and the end. */
function pinoText(fields: Record<string, unknown>): string {
  const out = sink()
  pino({ base: null, timestamp: false }, out).info(fields)
  const line = out.chunks[0] as string
  return line.slice('{"level":30'.length, -'}\n'.length)
}

const HOSTILE: unknown[] = [
  'plain',
  '',
  'a"b',
  'back\\slash',
  'tab\there',
  'nl\nhere',
  '\u0000nul',
  '\u2028line sep',
  'lone \ud800 surrogate',
  'pair \ud83d\ude00',
  'é ñ 中文',
  'x'.repeat(100),
  'y'.repeat(101),
  `${'"'.repeat(60)}\\`,
  'z'.repeat(MAX_CONTEXT_VALUE_LENGTH),
  0,
  -0,
  1.5,
  1e21,
  -1e-7,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
  Number.MAX_SAFE_INTEGER,
  true,
  false,
]
const SKIPPED: unknown[] = [undefined, null, { a: 1 }, ['x'], Symbol('s'), 10n, () => 1]

describe('pinoString', () => {
  it.each(HOSTILE.filter((v) => typeof v === 'string'))('quotes %j as pino writes a string value', (v) => {
    expect(`,"k":${pinoString(v as string)}`).toBe(pinoText({ k: v }))
  })
})

describe('compileContextFragment', () => {
  it.each(HOSTILE)('writes %j as pino writes it from the line object', (v) => {
    const f = compileContextFragment([slot({ v: 'value' })]) as NonNullable<ReturnType<typeof compileContextFragment>>
    expect(f.text({ v })).toBe(pinoText({ value: v }))
  })

  it.each(SKIPPED.map((v) => [typeof v, v]))('leaves out a %s value, as the writer does', (_t, v) => {
    const f = compileContextFragment([slot({ v: 'value', w: 'other' })])
    expect(f?.text({ v, w: 'kept' })).toBe(',"other":"kept"')
  })

  it('writes awkward output keys, in the order the writer object lists them', () => {
    const keys = { a: 'a"b', b: 'c\\d', c: 'é', d: '1e3', e: '10', f: '0', g: 'constructor', h: '\u2028', i: 'tab\t' }
    const c = Object.fromEntries(Object.keys(keys).map((k, i) => [k, `v${i}`]))
    const writer = compileContextWriter([slot(keys)], refused)
    const out: Record<string, unknown> = {}
    writer(c, 30, out)
    expect(compileContextFragment([slot(keys)])?.text(c)).toBe(pinoText(out))
    expect(fieldsText(out)).toBe(pinoText(out))
  })

  it('refuses a line whose value is too long or whose getter throws: the writer records those', () => {
    const f = compileContextFragment([slot({ v: 'value' })]) as NonNullable<ReturnType<typeof compileContextFragment>>
    expect(f.text({ v: 'x'.repeat(MAX_CONTEXT_VALUE_LENGTH + 1) })).toBeUndefined()
    const throwing = Object.defineProperty({}, 'v', {
      get() {
        throw new Error('getter')
      },
    })
    expect(f.text(throwing)).toBeUndefined()
    // A good value after them is written: nothing of the refused one is kept.
    expect(f.text({ v: 'ok' })).toBe(',"value":"ok"')
  })

  it('makes the text again when a value changes, and keeps it while none does', () => {
    const f = compileContextFragment([slot({ a: 'a', b: 'b' })]) as NonNullable<
      ReturnType<typeof compileContextFragment>
    >
    const first = f.text({ a: 'r1', b: 'u1' })
    expect(f.text({ a: 'r1', b: 'u1' })).toBe(first)
    expect(f.text({ a: 'r2', b: 'u1' })).toBe(',"a":"r2","b":"u1"')
    expect(f.text({ a: 'r2' })).toBe(',"a":"r2"')
    expect(f.text({ a: 'r2', b: 'u1' })).toBe(',"a":"r2","b":"u1"')
    // NaN is never equal to itself: written again, the same.
    expect(f.text({ a: Number.NaN, b: 'u1' })).toBe(',"a":null,"b":"u1"')
    expect(f.text({ a: Number.NaN, b: 'u1' })).toBe(',"a":null,"b":"u1"')
  })

  it('has no text for a slot with a minLevel, two slots writing one key, __proto__, or nothing to write', () => {
    expect(compileContextFragment([slot({ a: 'a' }, 40)])).toBeUndefined()
    expect(compileContextFragment([slot({ a: 'a' }), slot({ b: 'a' })])).toBeUndefined()
    expect(compileContextFragment([slot({ a: '__proto__' })])).toBeUndefined()
    expect(compileContextFragment([])).toBeUndefined()
    expect(compileContextFragment([slot({ a: 'a' })], new Set(['a']))).toBeUndefined()
  })
})

describe('ContextWriters', () => {
  it('tells a call object that has an output key, own, inherited, undefined or a getter (not called), and one whose check throws', () => {
    const w = new ContextWriters([slot({ requestId: 'requestId', user: 'userId' })], refused)
    expect(w.sets({ a: 1 })).toBe(false)
    expect(w.sets({ requestId: undefined })).toBe(true)
    expect(w.sets({ userId: 'mine' })).toBe(true)
    expect(w.sets(Object.create({ requestId: 'inherited' }))).toBe(true)
    let reads = 0
    const getter = Object.defineProperty({}, 'userId', { get: () => String(++reads) })
    expect(w.sets(getter)).toBe(true)
    expect(reads).toBe(0)
    const trap = new Proxy(
      {},
      {
        has() {
          throw new Error('trap')
        },
      },
    )
    expect(w.sets(trap)).toBe(true)
    expect(new ContextWriters([], refused).sets({ requestId: 1 })).toBe(false)
  })

  it('gives no text when a key is one pino must see as an object, or one of its own', () => {
    const w = new ContextWriters([slot({ requestId: 'requestId' })], refused)
    expect(w.fragmentFor([], new Set(), new Set())).toBeDefined()
    expect(w.fragmentFor([], true, new Set())).toBeUndefined()
    expect(w.fragmentFor([], new Set(['requestId']), new Set())).toBeUndefined()
    expect(w.fragmentFor([], new Set(), new Set(['requestId']))).toBeUndefined()
  })
})
