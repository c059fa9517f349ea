import { describe, expect, it } from 'vitest'
import { objectKeys } from '../../src/util/json-keys.js'

/** What JSON.parse makes of the text: its keys, or undefined when it throws or is not an object. */
function oracle(text: string): string[] | undefined {
  try {
    const v: unknown = JSON.parse(text)
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? Object.keys(v) : undefined
  } catch {
    return undefined
  }
}

/** A small seeded generator, so that a failure names a case that can be run again. */
function random(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}

const ATOMS = [
  '0',
  '-0',
  '1.5e+3',
  '-12.25E-2',
  'true',
  'false',
  'null',
  '""',
  '"a\\"b"',
  '"\\u00e9\\n"',
  '"é"',
  '"\\ud800"',
  '{}',
  '[]',
]
const KEYS = [
  'a',
  'reqId',
  '__proto__',
  'constructor',
  '',
  '0',
  '17',
  'a\\u0062',
  'x\\"y',
  'é',
  'a b',
  '01',
  '4294967295',
]

function value(next: () => number, depth: number): string {
  const r = next()
  if (depth > 3 || r < 0.5) return ATOMS[Math.floor(next() * ATOMS.length)] as string
  const n = Math.floor(next() * 4)
  const items: string[] = []
  if (r < 0.75) {
    for (let i = 0; i < n; i++) items.push(value(next, depth + 1))
    return `[${items.join(',')}]`
  }
  for (let i = 0; i < n; i++) items.push(`"${KEYS[Math.floor(next() * KEYS.length)]}":${value(next, depth + 1)}`)
  return `{${items.join(',')}}`
}

/** One character of the text changed, dropped or doubled, or a piece of JSON syntax put in. */
function mutate(text: string, next: () => number): string {
  const at = Math.floor(next() * (text.length + 1))
  const pieces = ['"', '\\', ',', ':', '{', '}', '[', ']', ' ', '\n', '\u0001', 'e', '-', '.', '0', 'u', 'x']
  const r = next()
  if (r < 0.33) return text.slice(0, at) + text.slice(at + 1)
  if (r < 0.66) return text.slice(0, at) + (pieces[Math.floor(next() * pieces.length)] as string) + text.slice(at)
  return text.slice(0, at) + text.charAt(at) + text.slice(at)
}

describe('objectKeys', () => {
  it.for([
    '{}',
    ' { } ',
    '{"a":1,"b":{"c":[1,2,{"d":null}]},"a":2}',
    '{"__proto__":{"polluted":1},"a":1}',
    '{"req":{"id":"r1","method":"GET","url":"/u/1?q=\\"x\\"","headers":{"host":"h"}},"reqId":"r1"}',
    '{"1":"x","a":2,"0":"y"}',
    '{"a\\u0062":1}',
    '{"x":"\\u12"}',
    '{"x":"\u0001"}',
    '{"x":01}',
    '{"x":1.}',
    '{"x":.5}',
    '{"x":1e}',
    '{"x":-}',
    '{"x":tru}',
    '{"x":1,}',
    '{"x":[1,]}',
    '{"x":1}}',
    '{"x":1} x',
    '{"x"}',
    '{x:1}',
    '[1]',
    '"a"',
    '',
    `{"deep":${'['.repeat(200)}${']'.repeat(200)}}`,
    `{"deep":${'['.repeat(200)}${']'.repeat(199)}}`,
    '{"a" : 1 ,\n\t"b":\r2 }',
  ])('lists what JSON.parse lists, or none where it throws: %s', (text) => {
    expect(objectKeys(text)).toEqual(oracle(text))
  })

  it('agrees with JSON.parse on 20,000 generated texts, valid and broken', () => {
    const next = random(18)
    for (let i = 0; i < 20_000; i++) {
      let text = value(next, 0)
      if (!text.startsWith('{')) text = `{"k":${text}}`
      if (next() < 0.6) text = mutate(text, next)
      const got = objectKeys(text)
      if (JSON.stringify(got) !== JSON.stringify(oracle(text))) {
        expect({ text, got }).toEqual({ text, got: oracle(text) })
      }
    }
  })
})
