import { spawn } from 'node:child_process'
import { type Readable, Writable } from 'node:stream'
import { setImmediate as turn } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { defineEnricher } from '../../src/index.js'
import { figures } from '../helpers/figures.js'
import { trackPipelines } from '../helpers/pipelines.js'

const { pipeline, closePipelines } = trackPipelines()
afterEach(() => closePipelines())

interface ChildStats {
  dropped: number
  enriched: number
  metrics: string
}

/** `node app | head -1`: the child's stdout is read until its first line, then the reading end is closed. */
function headOne(
  mode: 'sync' | 'async',
): Promise<{ first: string; stats: ChildStats | undefined; code: number | null }> {
  const script = fileURLToPath(new URL('../fixtures/epipe.ts', import.meta.url))
  const child = spawn(process.execPath, ['--import', 'tsx', script, mode], {
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
  })
  let first = ''
  let stats: ChildStats | undefined
  child.on('message', (m) => {
    stats = m as ChildStats
  })
  const out = child.stdout as Readable
  out.setEncoding('utf8').on('data', (chunk: string) => {
    if (first !== '') return
    first = chunk.split('\n')[0] ?? ''
    out.destroy()
    child.send('closed')
  })
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ first, stats, code })
    })
  })
}

function droppedMetric(text: string): number | undefined {
  const m = /^pino_enrich_records_dropped_total (\d+)$/m.exec(text)
  return m?.[1] === undefined ? undefined : Number(m[1])
}

describe('lines a destination refuses are counted as dropped', { timeout: 120_000 }, () => {
  it.for(['sync', 'async'] as const)(
    'node app | head -1 (pino.destination(1), %s): every line after the reader left is counted in stats and metrics',
    async (mode, ctx) => {
      const r = await headOne(mode)
      figures(ctx, { linesAfterReaderLeft: 100, dropped: r.stats?.dropped, enriched: r.stats?.enriched, code: r.code })
      expect(r.code).toBe(0)
      expect(JSON.parse(r.first)).toMatchObject({ msg: 'first', host: { name: 'box' } })
      expect(r.stats?.enriched).toBe(101)
      expect(r.stats?.dropped).toBe(100)
      expect(droppedMetric(r.stats?.metrics ?? '')).toBe(100)
    },
  )

  it("a stream that fails (its own 'error' listener keeps the app up): lines given to it after the failure are counted", async (ctx) => {
    const p = pipeline()
    p.register(defineEnricher({ name: 'host', compute: () => ({ host: { name: 'box' } }) }))
    await p.ready()
    let accepted = 0
    const errors: unknown[] = []
    const stream = new Writable({
      write(_chunk, _enc, cb) {
        if (accepted === 5) cb(new Error('EIO: disk gone'))
        else {
          accepted++
          cb()
        }
      },
    })
    stream.on('error', (e) => errors.push(e))
    const log = pino(p.pinoOptions(), stream)
    for (let i = 0; i < 20; i++) {
      log.info({ i }, 'line')
      await turn()
    }
    figures(ctx, { lines: 20, accepted, dropped: p.stats().records.dropped })
    expect(accepted).toBe(5)
    expect(errors).toHaveLength(1)
    // Line 6 failed inside the stream, where a generic Writable's buffer cannot be read: not counted.
    expect(p.stats().records.dropped).toBe(14)
    expect(droppedMetric(p.metrics())).toBe(14)
  })

  it('costs one logger comparison per line: 1,000 lines of 50 child loggers on one stream add one error listener', async () => {
    const p = pipeline()
    const stream = new Writable({
      write(_chunk, _enc, cb) {
        cb()
      },
    })
    const log = pino(p.pinoOptions(), stream)
    for (let i = 0; i < 1_000; i++) log.child({ c: i % 50 }).info('line')
    expect(stream.listenerCount('error')).toBe(1)
    expect(p.stats().records.dropped).toBe(0)
  })
  it('adds one error listener to a stream shared by 200 loggers of their own pinoOptions(), and each still counts its refused lines', async () => {
    const p = pipeline()
    const q = pipeline()
    const warnings: Error[] = []
    const onWarning = (w: Error): void => {
      warnings.push(w)
    }
    process.on('warning', onWarning)
    try {
      const stream = new Writable({
        write(_chunk, _enc, cb) {
          cb(new Error('refused'))
        },
      })
      stream.on('error', () => {})
      const logs = Array.from({ length: 200 }, (_, i) => pino((i % 2 === 0 ? p : q).pinoOptions(), stream))
      for (const log of logs) log.info('line')
      expect(stream.listenerCount('error')).toBe(2)
      await turn()
      for (const log of logs) log.info('after')
      expect(p.stats().records.dropped).toBe(100)
      expect(q.stats().records.dropped).toBe(100)
      await turn()
      expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([])
    } finally {
      process.off('warning', onWarning)
    }
  })
})
