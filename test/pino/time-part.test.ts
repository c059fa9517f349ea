// Lines logged in the same millisecond share their time part (the time and
// the globals' fragment after it): what each line shows must stay its own.
import pino from 'pino'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { defineEnricher } from '../../src/index.js'
import { trackPipelines } from '../helpers/pipelines.js'
import { sink } from '../helpers/sink.js'

const { pipeline, closePipelines } = trackPipelines()

afterEach(async () => {
  await closePipelines()
  vi.useRealTimers()
})

const host = () => defineEnricher({ name: 'host', compute: () => ({ host: { name: 'box' } }) })

describe('time part of lines logged in the same millisecond', () => {
  it('writes the clock time of each line, and a new one once the clock moves', async () => {
    vi.useFakeTimers({ toFake: ['Date'], now: 1_000 })
    const enrich = pipeline({ enrichers: [host()] })
    await enrich.ready()
    const out = sink()
    const logger = pino(enrich.pinoOptions(), out)
    logger.info('a')
    logger.info('b')
    vi.setSystemTime(1_001)
    logger.info('c')
    vi.setSystemTime(999)
    logger.info('d')
    expect(out.lines().map((l) => [l.msg, l.time, l.host])).toEqual([
      ['a', 1_000, { name: 'box' }],
      ['b', 1_000, { name: 'box' }],
      ['c', 1_001, { name: 'box' }],
      ['d', 999, { name: 'box' }],
    ])
  })

  it('calls a custom timestamp function for every line, as pino does', async () => {
    vi.useFakeTimers({ toFake: ['Date'], now: 1_000 })
    const enrich = pipeline({ enrichers: [host()] })
    await enrich.ready()
    const out = sink()
    let n = 0
    const logger = pino(enrich.pinoOptions({ timestamp: () => `,"seq":${++n}` }), out)
    for (let i = 0; i < 3; i++) logger.info('x')
    expect(out.lines().map((l) => [l.seq, l.host])).toEqual([
      [2, { name: 'box' }],
      [3, { name: 'box' }],
      [4, { name: 'box' }],
    ])
  })

  it('keeps each logger its own fields when a root and a child with its own serializers alternate', async () => {
    vi.useFakeTimers({ toFake: ['Date'], now: 1_000 })
    const enrich = pipeline({ enrichers: [host()] })
    await enrich.ready()
    const out = sink()
    const root = pino(enrich.pinoOptions(), out)
    // The child's serializer routes `host` through pino's object path: its lines have another fragment.
    const child = root.child({}, { serializers: { host: (h: { name: string }) => `host:${h.name}` } })
    child.info('child')
    root.info('root')
    child.info('child again')
    expect(out.lines().map((l) => [l.msg, l.time, l.host])).toEqual([
      ['child', 1_000, 'host:box'],
      ['root', 1_000, { name: 'box' }],
      ['child again', 1_000, 'host:box'],
    ])
    // Each line carries the key once: the child's without the root's fragment.
    for (const chunk of out.chunks) expect(chunk.split('"host"').length).toBe(2)
  })

  it('writes the isoTime of each millisecond', async () => {
    vi.useFakeTimers({ toFake: ['Date'], now: Date.UTC(2026, 0, 2, 3, 4, 5, 6) })
    const enrich = pipeline({ enrichers: [host()] })
    await enrich.ready()
    const out = sink()
    const logger = pino(enrich.pinoOptions({ timestamp: pino.stdTimeFunctions.isoTime }), out)
    logger.info('a')
    logger.info('b')
    vi.advanceTimersByTime(1)
    logger.info('c')
    expect(out.lines().map((l) => l.time)).toEqual([
      '2026-01-02T03:04:05.006Z',
      '2026-01-02T03:04:05.006Z',
      '2026-01-02T03:04:05.007Z',
    ])
  })
})
