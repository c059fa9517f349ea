import pino, { type LoggerOptions } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import type { EnrichPinoOptions } from '../../src/index.js'
import { CAPTURE_OPEN } from '../../src/pino/transport-capture.js'
import { ending, readShape, type Shape } from '../../src/transport/line-shape.js'
import { trackPipelines } from '../helpers/pipelines.js'
import { sink } from '../helpers/sink.js'

const { pipeline, closePipelines } = trackPipelines()
afterEach(closePipelines)

const NOW = 1_764_000_000_123
const clock = { now: () => NOW }

/** The lines real pino writes through a transport-mode logger (`transport`) or plain pino, without their newline. */
function linesOf(
  options: EnrichPinoOptions,
  log: (logger: pino.Logger, run: (store: Record<string, unknown>, fn: () => void) => void) => void,
  transport = true,
): string[] {
  const p = pipeline({ clock })
  const out = sink()
  const logger = transport
    ? pino(p.pinoOptions({ ...options, mode: 'transport' }), out)
    : pino(options as LoggerOptions, out)
  log(logger, (store, fn) => p.context.run(store, fn))
  return out.chunks.join('').split('\n').slice(0, -1)
}

const lineOf = (options: EnrichPinoOptions, log: (logger: pino.Logger) => void, transport = true): string => {
  const lines = linesOf(options, log, transport)
  expect(lines).toHaveLength(1)
  return lines[0] as string
}

function shapeOf(t: string, s = 0, e = t.length, known?: string, other?: string): { found: boolean; shape: Shape } {
  const shape: Shape = { level: 0, time: 0, capture: undefined, insert: 0, at: 0, end: 0 }
  return { found: readShape(t, s, e, shape, known, other), shape }
}

/**
 * What the worker does with a shape: the capture read from `[at, end)` is
 * exactly the capture on the line, and the line without it is the line's
 * own record.
 */
function expectCaptureCut(line: string, shape: Shape): void {
  const record = JSON.parse(line) as Record<string, unknown>
  expect(JSON.parse(shape.capture as string)).toEqual(record['@pino-enrich'])
  expect(line.slice(shape.at, shape.end)).toBe(`${CAPTURE_OPEN}${shape.capture}`)
  const { '@pino-enrich': _capture, ...own } = record
  expect(JSON.parse(line.slice(0, shape.at) + line.slice(shape.end))).toEqual(own)
}

describe('readShape on lines real pino writes in transport mode', () => {
  it('finds level, time and the capture right after them with default options, where enrichment goes', () => {
    const line = lineOf({}, (l) => l.info('hello'))
    const { found, shape } = shapeOf(line)
    expect(found).toBe(true)
    expect(shape).toMatchObject({ level: 30, time: NOW, capture: '{}' })
    expect(shape.insert).toBe(`{"level":30,"time":${NOW}`.length)
    expect(shape.at).toBe(shape.insert)
    expectCaptureCut(line, shape)
  })

  it('reads a capture whose context strings hold braces, quotes, backslashes and newlines to its real end', () => {
    const route = 'x"}/a}{"b\\"}\n{'
    const lines = linesOf({ contextKeys: ['requestId', 'route'] }, (l, run) => {
      run({ requestId: 'r1', route }, () => l.info({ n: 1 }, 'with context'))
    })
    const withContext = lines[0] as string
    const { found, shape } = shapeOf(withContext)
    expect(found).toBe(true)
    expect(JSON.parse(shape.capture as string)).toEqual({ c: { requestId: 'r1', route } })
    expectCaptureCut(withContext, shape)
  })

  it.each([
    ['epochTime', pino.stdTimeFunctions.epochTime, NOW],
    ['unixTime', pino.stdTimeFunctions.unixTime, Math.round(NOW / 1000)],
  ])('reads a numeric time (%s) and the capture after it', (_name, timestamp, time) => {
    const line = lineOf({ timestamp }, (l) => l.warn('t'))
    const { found, shape } = shapeOf(line)
    expect(found).toBe(true)
    expect(shape.level).toBe(40)
    expect(shape.time).toBe(time)
    expect(shape.insert).toBe(line.indexOf(CAPTURE_OPEN))
    expectCaptureCut(line, shape)
  })

  it('reads no time from isoTime: enrichment goes after the level, ahead of the time string and the capture', () => {
    const line = lineOf({ timestamp: pino.stdTimeFunctions.isoTime }, (l) => l.info('iso'))
    const { found, shape } = shapeOf(line)
    expect(found).toBe(true)
    expect(shape.level).toBe(30)
    expect(shape.time).toBe(-1)
    expect(shape.insert).toBe('{"level":30'.length)
    expect(shape.at).toBe(line.indexOf(CAPTURE_OPEN))
    expect(shape.at).toBeGreaterThan(shape.insert)
    // The call time travels in the capture instead.
    expect(JSON.parse(shape.capture as string)).toEqual({ t: NOW })
    expectCaptureCut(line, shape)
  })

  it.each([
    ['timestamp: false', false],
    ['nullTime', pino.stdTimeFunctions.nullTime],
  ] as const)('finds the capture right after the level with %s', (_name, timestamp) => {
    const line = lineOf({ timestamp }, (l) => l.error('no time'))
    expect(line).not.toContain('"time"')
    const { found, shape } = shapeOf(line)
    expect(found).toBe(true)
    expect(shape).toMatchObject({ level: 50, time: -1, insert: '{"level":50'.length })
    expect(shape.at).toBe(shape.insert)
    expectCaptureCut(line, shape)
  })

  it('finds the capture after what a custom timestamp writes, and puts enrichment after the level', () => {
    const line = lineOf({ timestamp: () => ',"ts":"custom, with a comma","n":1' }, (l) => l.info('c'))
    const { found, shape } = shapeOf(line)
    expect(found).toBe(true)
    expect(shape.level).toBe(30)
    expect(shape.time).toBe(-1)
    expect(shape.insert).toBe('{"level":30'.length)
    expect(line.slice(shape.insert, shape.at)).toBe(',"ts":"custom, with a comma","n":1')
    expectCaptureCut(line, shape)
  })

  it('reads no level from a level formatter, and puts enrichment where the capture was', () => {
    for (const formatters of [
      { level: (label: string) => ({ level: label }) },
      { level: (label: string) => ({ severity: label.toUpperCase() }) },
    ]) {
      const line = lineOf({ formatters }, (l) => l.info('labelled'))
      const { found, shape } = shapeOf(line)
      expect(found).toBe(true)
      expect(shape.level).toBe(-1)
      expect(shape.time).toBe(-1)
      expect(shape.at).toBe(line.indexOf(CAPTURE_OPEN))
      expect(shape.insert).toBe(shape.at)
      expectCaptureCut(line, shape)
    }
  })

  it('is not moved by messageKey or nestedKey: the capture stays right after the time', () => {
    for (const options of [{ messageKey: 'message' }, { nestedKey: 'payload' }, { messageKey: 'm', nestedKey: 'p' }]) {
      const line = lineOf(options, (l) => l.info({ a: { b: 1 } }, 'moved keys'))
      const { found, shape } = shapeOf(line)
      expect(found).toBe(true)
      expect(shape).toMatchObject({ level: 30, time: NOW, capture: '{}', insert: `{"level":30,"time":${NOW}`.length })
      expectCaptureCut(line, shape)
    }
  })

  it('reads only the capture the main thread wrote: one planted in a payload, message or key is never taken', () => {
    const planted = `${CAPTURE_OPEN}{"c":{"requestId":"evil"}}`
    const lines = linesOf({ nestedKey: 'payload' }, (l, run) => {
      run({ requestId: 'real' }, () => {
        l.info({ '@pino-enrich': { c: { requestId: 'evil' } } }, planted)
        l.info({ [planted]: planted, x: { '@pino-enrich': planted } })
        l.child({ '@pino-enrich': { c: { requestId: 'evil' } } }).info('bound')
      })
    })
    expect(lines).toHaveLength(3)
    for (const line of lines) {
      const { found, shape } = shapeOf(line)
      expect(found).toBe(true)
      // The child's line also names its bound keys (`b`), the planted key among them.
      expect(JSON.parse(shape.capture as string).c).toEqual({ requestId: 'real' })
      expect(shape.at).toBe(`{"level":30,"time":${NOW}`.length)
      // pino's serializer never writes the capture's opening: the planted copies are written otherwise.
      expect(line.indexOf(CAPTURE_OPEN, shape.end)).toBe(-1)
    }
  })

  it('finds no capture on a plain pino line that carries a planted one, and enriches after level and time', () => {
    const planted = `${CAPTURE_OPEN}{"c":{"requestId":"evil"}}`
    const line = lineOf(
      {},
      (l) => l.info({ '@pino-enrich': { c: { requestId: 'evil' } }, [planted]: 1 }, planted),
      false,
    )
    const { found, shape } = shapeOf(line)
    expect(found).toBe(true)
    expect(shape.capture).toBeUndefined()
    expect(shape.level).toBe(30)
    expect(shape.insert).toBe(line.indexOf(',"pid"'))
    expect(shape.at).toBe(shape.insert)
    expect(shape.end).toBe(shape.insert)
  })

  it('reads a line inside a chunk by its bounds: indexes into the chunk, no capture taken from the next line', () => {
    const plain = lineOf({}, (l) => l.info('plain first'), false)
    const lines = linesOf({}, (l, run) => {
      l.info('second')
      run({ requestId: 'r2' }, () => l.info('third'))
    })
    const chunk = `${plain}\n${lines[0]}\r\n${lines[1]}\n`
    const s2 = plain.length + 1
    const e2 = s2 + (lines[0] as string).length
    const s3 = e2 + 2
    const e3 = s3 + (lines[1] as string).length

    const first = shapeOf(chunk, 0, plain.length)
    expect(first.found).toBe(true)
    expect(first.shape.capture).toBeUndefined()

    const second = shapeOf(chunk, s2, e2)
    expect(second.found).toBe(true)
    expect(second.shape.capture).toBe('{}')
    expect(second.shape.at).toBe(s2 + (lines[0] as string).indexOf(CAPTURE_OPEN))
    expect(ending(chunk, e2, s3)).toBe('\r\n')

    const third = shapeOf(chunk, s3, e3)
    expect(third.shape.capture).toBe('{"c":{"requestId":"r2"}}')
    expect(third.shape.end).toBe(s3 + (lines[1] as string).indexOf(',"pid"'))
    expect(ending(chunk, e3, e3 + 1)).toBe('\n')
    // The last line of the input, without a newline of its own, is given one.
    expect(ending(chunk, chunk.length, chunk.length)).toBe('\n')
  })

  it('reads the same shape whether the chunk and the capture seen before are whole strings or made of pieces', () => {
    // The worker joins a line carried from the last chunk to the next one, and keeps its own copy of a capture
    // text: neither is one flat string, and a check that only worked on one would take the general path.
    const [first, second] = linesOf({}, (l, run) => {
      run({ requestId: 'r1', userId: 'u1' }, () => {
        l.info('a')
        l.info('b')
      })
    }) as [string, string]
    const whole = `${first}\n${second}\n`
    const cut = first.length >> 1
    const joined = whole.slice(0, cut) + whole.slice(cut)
    const known = '{"c":{"requestId":"r1","userId":"u1"}}'
    const pieces = `${known.slice(0, 7)}${known.slice(7)}`
    const s2 = first.length + 1
    for (const [t, k] of [
      [whole, known],
      [joined, known],
      [whole, pieces],
      [joined, pieces],
    ] as const) {
      const a = shapeOf(t, 0, first.length, k)
      const b = shapeOf(t, s2, s2 + second.length, 'other', k)
      expect(a).toEqual(shapeOf(whole, 0, first.length))
      expect(b).toEqual(shapeOf(whole, s2, s2 + second.length))
      expect(a.shape.capture).toBe(known)
      expect(a.shape).toMatchObject({ level: 30, time: NOW, insert: first.indexOf(CAPTURE_OPEN) })
      expectCaptureCut(second, { ...b.shape, at: b.shape.at - s2, end: b.shape.end - s2 })
    }
  })

  it('takes a capture text seen before as it is, and one that only starts like it by scanning', () => {
    const lines = linesOf({}, (l, run) => {
      run({ requestId: 'r1' }, () => l.info('a'))
      run({ requestId: 'r10' }, () => l.info('b'))
    })
    const known = '{"c":{"requestId":"r1"}}'
    const same = shapeOf(lines[0] as string, 0, (lines[0] as string).length, 'other', known)
    expect(same.found).toBe(true)
    expect(same.shape.capture).toBe(known)
    const longer = shapeOf(lines[1] as string, 0, (lines[1] as string).length, known, known)
    expect(longer.found).toBe(true)
    expect(longer.shape.capture).toBe('{"c":{"requestId":"r10"}}')
    expectCaptureCut(lines[1] as string, longer.shape)
  })
})

describe('readShape on lines pino does not write', () => {
  const capture = `${CAPTURE_OPEN}{"c":{"requestId":"r1"}}`

  it.each([
    ['an empty line', ''],
    ['text that is not an object', 'not json at all'],
    ['an array', '[{"level":30}]'],
    ['a line cut inside its level', '{"level":3'],
    ['an object without level or capture', '{"msg":"hello"}'],
    ['a level of ten digits and no capture', '{"level":1234567890,"time":1,"msg":"x"}'],
  ])('reports no place for enrichment on %s', (_name, line) => {
    expect(shapeOf(line).found).toBe(false)
  })

  it('reports no place when the capture is not a whole object before the line ends', () => {
    const whole = `{"level":30,"time":1${capture},"msg":"x"}`
    expect(shapeOf(whole).found).toBe(true)
    // Cut inside the capture: the object's end lies past the line's.
    const cut = whole.indexOf('"r1"')
    expect(shapeOf(whole, 0, cut).found).toBe(false)
    // The same, when the capture text seen before would run past the line's end.
    expect(shapeOf(whole, 0, cut, '{"c":{"requestId":"r1"}}').found).toBe(false)
    expect(shapeOf(`{"level":30,"time":1${CAPTURE_OPEN}[1,2],"msg":"x"}`).found).toBe(false)
    expect(shapeOf(`{"level":30,"time":1${CAPTURE_OPEN}{"c":{"a":"}"}`).found).toBe(false)
  })

  it('reads no level or time past their digit bounds, and still finds the capture', () => {
    const longLevel = `{"level":1234567890,"time":1${capture},"msg":"x"}`
    const a = shapeOf(longLevel)
    expect(a.found).toBe(true)
    expect(a.shape).toMatchObject({ level: -1, time: -1 })
    expect(a.shape.insert).toBe(a.shape.at)

    const longTime = `{"level":30,"time":1234567890123456${capture},"msg":"x"}`
    const b = shapeOf(longTime)
    expect(b.found).toBe(true)
    expect(b.shape).toMatchObject({ level: 30, time: -1, insert: '{"level":30'.length })
    expect(b.shape.capture).toBe('{"c":{"requestId":"r1"}}')
  })

  it('reads no level or time whose digits run into something else', () => {
    const a = shapeOf(`{"level":30x,"time":1${capture}}`)
    expect(a.found).toBe(true)
    expect(a.shape.level).toBe(-1)
    const b = shapeOf(`{"level":30,"time":12.5${capture}}`)
    expect(b.found).toBe(true)
    expect(b.shape).toMatchObject({ level: 30, time: -1, insert: '{"level":30'.length })
  })

  it('takes the first capture opening on the line, where the main thread writes it, not a later one', () => {
    const line = `{"level":30,"time":1${capture},"x":1${CAPTURE_OPEN}{"c":{"requestId":"later"}}}`
    const { found, shape } = shapeOf(line)
    expect(found).toBe(true)
    expect(shape.capture).toBe('{"c":{"requestId":"r1"}}')
    expect(shape.end).toBe(line.indexOf(',"x"'))
  })
})
