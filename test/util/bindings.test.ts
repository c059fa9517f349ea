import pino from 'pino'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { requestEnricher } from '../../enrichers/index.js'
import { createPipeline } from '../../src/index.js'
import { bindingKeys, scanKeys } from '../../src/util/bindings.js'

const { chindingsSym } = pino.symbols

/** What the whole bindings parse to, as pino's own `bindings()` parses them; none when they are not JSON. */
function wholeParse(logger: pino.Logger): string[] {
  const chindings = (logger as unknown as Record<symbol, unknown>)[chindingsSym]
  if (typeof chindings !== 'string' || chindings.length < 2) return []
  try {
    return Object.keys(JSON.parse(`{${chindings.slice(1)}}`) as object)
  } catch {
    return []
  }
}

const root = (options: pino.LoggerOptions = {}): pino.Logger => pino({ enabled: false, ...options })

/** A xorshift generator of integers below `n`: from a fixed seed, the same sequence on every run. */
function seeded(seed: number): (n: number) => number {
  let x = seed
  return (n) => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return (x >>> 0) % n
  }
}

afterEach(() => {
  vi.restoreAllMocks()
})

describe('bindingKeys', () => {
  it.for([
    ['a __proto__ key', () => root().child(JSON.parse('{"__proto__":{"polluted":1},"a":1}') as pino.Bindings)],
    ['a value with escaped quotes that looks like a key', () => root().child({ note: 'x","reqId":"forged' })],
    ['a key with a quote', () => root().child({ 'x","y': 1 })],
    ['a key with a backslash', () => root().child({ 'x\\': 1 })],
    ['a key with an escape JSON reads (\\u0062)', () => root().child({ 'a\\u0062': 1 })],
    ['a key nested in a bound object', () => root().child({ req: { reqId: 'n', headers: { a: '}' } } })],
    ['a child redefining its parent key', () => root().child({ reqId: 'a' }).child({ reqId: 'b', c: 1 })],
    ['array-index keys bound over two levels', () => root().child({ 1: 'x', a: 2 }).child({ 0: 'y', b: 3 })],
    ['a child of bindings that are not JSON', () => root().child({ 'x":{"y': 1 }).child({ 'z}': 2 })],
    ['a parent with no base (empty chindings)', () => root({ base: null }).child({ a: 1 }).child({ b: 2 })],
    [
      'bindings renamed by formatters.bindings',
      () => root({ formatters: { bindings: (b) => ({ ...b, extra: 1 }) } }).child({ a: 1 }),
    ],
    ['a child without bindings of its own', () => root().child({ a: 1 }).child({})],
  ] as const)('lists the keys JSON.parse finds in the whole bindings: %s', ([, make]) => {
    const logger = make()
    expect([...bindingKeys(logger)]).toEqual(wholeParse(logger))
    // Kept: the same answer again, not a new parse.
    expect(bindingKeys(logger)).toBe(bindingKeys(logger))
  })

  it('keeps a nested key and a key inside a value out, and counts a redefined key once', () => {
    const child = root()
      .child({ req: { reqId: 'n' }, note: '","userId":"u' })
      .child({ note: 'again' })
    expect(bindingKeys(child)).toEqual(['pid', 'hostname', 'req', 'note'])
    // pino escapes a key as JSON: a quote in one is part of the key.
    expect(bindingKeys(root().child({ 'x","y': 1 }).child({ a: 1 }))).toEqual(['pid', 'hostname', 'x","y', 'a'])
  })

  it('sees setBindings() on the logger, and on its parent after the child was made', () => {
    const parent = root().child({ a: 1 })
    const child = parent.child({ b: 2 })
    expect(bindingKeys(child)).toEqual(['pid', 'hostname', 'a', 'b'])
    child.setBindings({ c: 3 })
    expect(bindingKeys(child)).toEqual(['pid', 'hostname', 'a', 'b', 'c'])
    // The child's bindings no longer begin with the parent's: the whole is parsed.
    parent.setBindings({ d: 4 })
    expect(bindingKeys(parent)).toEqual(['pid', 'hostname', 'a', 'd'])
    expect(bindingKeys(child)).toEqual(['pid', 'hostname', 'a', 'b', 'c'])
    expect(bindingKeys(parent.child({ e: 5 }))).toEqual(['pid', 'hostname', 'a', 'd', 'e'])
  })

  it('works on frozen loggers and on anything that is not a logger', () => {
    const frozen = Object.freeze(root().child({ a: 1 }))
    expect(bindingKeys(frozen)).toEqual(['pid', 'hostname', 'a'])
    expect(bindingKeys(frozen)).toBe(bindingKeys(frozen))
    // A logger that had its keys kept on it before it was frozen, then bound more (setBindings before freeze).
    const sealed = root().child({ a: 1 })
    bindingKeys(sealed)
    sealed.setBindings({ b: 2 })
    Object.freeze(sealed)
    expect(bindingKeys(sealed)).toEqual(['pid', 'hostname', 'a', 'b'])
    for (const v of [undefined, null, 1, 'x', {}, { [chindingsSym]: 7 }]) expect(bindingKeys(v)).toEqual([])
  })

  it('agrees with JSON.parse on 2,000 random loggers with hostile keys and values', () => {
    // A fixed seed: the same loggers on every run.
    const rand = seeded(0x2545f491)
    const KEYS = [
      'a',
      'reqId',
      '__proto__',
      '0',
      '7',
      '42',
      'x"y',
      'q\\',
      ' ',
      '',
      '}',
      'a":1,"b',
      'a":{"b',
      'c"}',
      'ü',
    ]
    const VALUES: unknown[] = ['s', '"quoted"', '\\', '","reqId":"f', 1, -0.5, true, null, { reqId: 1 }, ['}', '{'], '']
    let checked = 0
    for (let t = 0; t < 200; t++) {
      let logger = root(rand(4) === 0 ? { base: null } : {})
      for (let depth = 0; depth < 10; depth++) {
        const bindings: Record<string, unknown> = {}
        const n = rand(3)
        for (let i = 0; i < n; i++) {
          Object.defineProperty(bindings, KEYS[rand(KEYS.length)] as string, {
            value: VALUES[rand(VALUES.length)],
            enumerable: true,
            configurable: true,
            writable: true,
          })
        }
        logger = logger.child(bindings)
        // Now and then the keys of the parent are known first, so the child reuses them.
        if (rand(2) === 0) expect([...bindingKeys(logger)]).toEqual(wholeParse(logger))
        if (rand(8) === 0) logger.setBindings({ [KEYS[rand(KEYS.length)] as string]: 1 })
        expect([...bindingKeys(logger)]).toEqual(wholeParse(logger))
        checked++
      }
    }
    expect(checked).toBe(2_000)
  })

  it('answers for a chain of 5,000 children, each adding a key, as pino logs from it', async () => {
    const p = createPipeline({ enrichers: [requestEnricher()] })
    const lines: string[] = []
    let logger = pino(p.pinoOptions({}), { write: (s: string) => void lines.push(s) })
    for (let i = 0; i < 5_000; i++) logger = logger.child({ [`k${i % 3}`]: i })
    expect([...bindingKeys(logger)]).toEqual(wholeParse(logger))
    expect(() => logger.info('deep')).not.toThrow()
    expect((JSON.parse(lines[0] as string) as Record<string, unknown>).k1).toBe(4_999)
    await p.close()
  }, 60_000)

  it("reads only what a child adds to its parent's bindings", () => {
    const parent = root().child({ service: 'checkout' })
    bindingKeys(parent)
    const parse = vi.spyOn(JSON, 'parse')
    // Text as pino writes it is scanned: nothing is built of it.
    const child = parent.child({ reqId: 'r-1', req: { headers: { host: 'h' }, query: {} } })
    expect(bindingKeys(child)).toEqual(['pid', 'hostname', 'service', 'reqId', 'req'])
    expect(parse).not.toHaveBeenCalled()
    // An escape is left to JSON.parse, given the child's part alone.
    const escaped = parent.child({ reqId: 'r\\1' })
    expect(bindingKeys(escaped)).toEqual(['pid', 'hostname', 'service', 'reqId'])
    expect(parse.mock.calls.map((c) => c[0])).toEqual(['{"reqId":"r\\\\1"}'])
  })
})

describe('scanKeys', () => {
  /** Object.keys of what JSON.parse makes of the text as a member list, or undefined when it throws. */
  const parsed = (text: string): string[] | undefined => {
    try {
      return Object.keys(JSON.parse(`{${text.slice(1)}}`) as object)
    } catch {
      return undefined
    }
  }

  it('reads the bindings pino writes, pino-http and Fastify request loggers among them', () => {
    const req = {
      id: 'c0a8-1',
      method: 'GET',
      url: '/users/u1/orders?x=1',
      query: { x: '1' },
      params: {},
      headers: { host: '127.0.0.1:3000', 'user-agent': 'curl/8.5.0', accept: '*/*' },
      remoteAddress: '127.0.0.1',
      remotePort: 51234,
    }
    for (const bindings of [
      { req },
      { reqId: 'req-1' },
      { pid: 1, hostname: 'h', n: -1.5e-7, z: 0, t: true, f: false, u: null, a: [1, [2, {}], [], 'x'] },
      { nested: { a: { b: { c: [{ d: [] }] } } }, 'ü key': '€ value', '': 'empty key' },
    ]) {
      const text = (root().child(bindings) as unknown as Record<symbol, string>)[chindingsSym] as string
      expect(scanKeys(text, 0)).toEqual(parsed(text))
    }
  })

  it.for([
    ['a leading member only', ',"a":1', ['a']],
    ['a repeated key, once at its first place', ',"a":1,"b":2,"a":3', ['a', 'b']],
    ['an empty member list', ',', []],
    ['a __proto__ key', ',"__proto__":{"x":1}', ['__proto__']],
  ] as const)('lists what JSON.parse lists: %s', ([, text, keys]) => {
    expect(scanKeys(text, 0)).toEqual(keys)
    expect(parsed(text)).toEqual(keys)
  })

  it.for([
    ',"a":01',
    ',"a":1.',
    ',"a":.5',
    ',"a":-',
    ',"a":1e',
    ',"a":1e+',
    ',"a":+1',
    ',"a":tru',
    ',"a":nul',
    ',"a":True',
    ',"a":NaN',
    ',"a":"x',
    ',"a":{',
    ',"a":{"b"}',
    ',"a":{"b":}',
    ',"a":{"b":1,}',
    ',"a":[1,]',
    ',"a":[,1]',
    ',"a":[1}',
    ',"a":{"b":1]',
    ',"a":1}',
    ',"a":1,',
    ',"a":1"b":2',
    ',"a"1',
    ',a:1',
    ",'a':1",
    ',"a":undefined',
    ',"a":{}}',
    ',"a":[]]',
  ])('gives no keys to text that is not JSON: %s', (text) => {
    expect(parsed(text)).toBeUndefined()
    expect(scanKeys(text, 0)).toBeUndefined()
  })

  it('leaves to JSON.parse what it does not read itself: escapes, whitespace, array indices, many keys, long text', () => {
    const many = Array.from({ length: 40 }, (_, i) => `,"k${i}":${i}`).join('')
    // Long text: JSON.parse reads long runs of numbers faster than the scan would.
    const long = `,"a":${JSON.stringify(Array.from({ length: 5_000 }, (_, i) => i))}`
    for (const text of [',"a\\u0062":1', ',"a":"\\""', ', "a":1', ',"a":\t1', ',"1":1,"a":2', many, long]) {
      expect(scanKeys(text, 0)).toBeUndefined()
      expect(parsed(text)).toBeDefined()
    }
    // A control character in a string is not JSON, and not read either.
    expect(parsed(',"a":"\u0001"')).toBeUndefined()
    expect(scanKeys(',"a":"\u0001"', 0)).toBeUndefined()
  })

  it('reads from where it is told, past the character there', () => {
    const text = 'xx,"a":1,"b":{"c":2}'
    expect(scanKeys(text, 2)).toEqual(['a', 'b'])
    expect(scanKeys(text, 8)).toEqual(['b'])
  })

  it('agrees with JSON.parse on 20,000 mutations of text pino writes', () => {
    const rand = seeded(0x9e3779b9)
    const PIECES = [
      '"',
      ':',
      ',',
      '{',
      '}',
      '[',
      ']',
      '0',
      '1',
      '-',
      '.',
      'e',
      '+',
      'true',
      'null',
      'f',
      ' ',
      '\\',
      'x',
      '"k"',
    ]
    const SOURCES = [
      ',"pid":1,"hostname":"h","req":{"id":"r","method":"GET","query":{},"headers":{"a":"b"},"port":-12.5e+3}',
      ',"a":[1,[2,[]],{"b":[{}]}],"c":"d","e":false,"f":null',
      ',"n":0,"m":-0.0,"o":1E-2,"p":[true,false,null]',
    ]
    let scanned = 0
    for (let t = 0; t < 20_000; t++) {
      let text = SOURCES[rand(SOURCES.length)] as string
      for (let m = rand(3) + 1; m > 0; m--) {
        const at = rand(text.length)
        const op = rand(3)
        const piece = PIECES[rand(PIECES.length)] as string
        if (op === 0) text = text.slice(0, at) + piece + text.slice(at)
        else if (op === 1) text = text.slice(0, at) + text.slice(at + 1 + rand(3))
        else text = text.slice(0, at) + piece + text.slice(at + piece.length)
      }
      const keys = scanKeys(text, 0)
      if (keys === undefined) continue
      scanned++
      expect(keys, text).toEqual(parsed(text))
    }
    // The scan answered for a good share of them: the comparison is not with an empty set.
    expect(scanned).toBeGreaterThan(1_000)
  })
})

describe('a request logger in snapshot and deferred mode', () => {
  it.for(['snapshot', 'deferred'] as const)(
    'parses its bindings once, its own part only, for every reader of them (%s)',
    async (mode) => {
      // The request fields: their writer, too, reads which of its keys the logger binds.
      const p = createPipeline({ enrichers: [requestEnricher()] })
      await p.ready()
      const lines: string[] = []
      const logger = pino(p.pinoOptions({ mode }), { write: (s: string) => void lines.push(s) })
      logger.info('warm')
      await p.flush()
      const parse = vi.spyOn(JSON, 'parse')
      // An escaped value: left to JSON.parse, which shows what is parsed and how often.
      const request = logger.child({ reqId: 'r-2', marker: 'one \\ parse' })
      request.info('first')
      request.info('second')
      await p.flush()
      const ofRequest = parse.mock.calls.filter((c) => String(c[0]).includes('marker'))
      expect(ofRequest.map((c) => c[0])).toEqual(['{"reqId":"r-2","marker":"one \\\\ parse"}'])
      parse.mockRestore()
      const written = lines.map((l) => JSON.parse(l) as Record<string, unknown>)
      expect(written.map((l) => l.msg)).toEqual(['warm', 'first', 'second'])
      expect(written[1]?.reqId).toBe('r-2')
      await p.close()
    },
  )
})
