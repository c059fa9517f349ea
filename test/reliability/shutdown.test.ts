import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { afterAll, describe, expect, it } from 'vitest'
import { createPipeline, defineEnricher } from '../../src/index.js'
import { type ChildResult, runChild } from '../helpers/child.js'
import { figures, resultOf } from '../helpers/figures.js'
import { sink } from '../helpers/sink.js'

// Each scenario runs test/fixtures/reliability/shutdown.ts in a real process,
// writing to a real destination: a sync or async pino.destination, or a
// transport (pino/file in a worker), in snapshot or deferred mode; and the
// pino-enrich/transport (enrichment in the worker, then pino/file). The keyed
// enricher hangs, so deferred lines are still waiting when the scenario strikes.

const dir = mkdtempSync(join(tmpdir(), 'pino-enrich-shutdown-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

type Dest = 'sync' | 'async' | 'transport' | 'enrich-transport'
type Mode = 'snapshot' | 'deferred' | 'plain'
const ROWS: Array<[Dest, Mode]> = [
  ['sync', 'snapshot'],
  ['sync', 'deferred'],
  ['async', 'snapshot'],
  ['async', 'deferred'],
  ['transport', 'snapshot'],
  ['transport', 'deferred'],
  ['enrich-transport', 'snapshot'],
]
const rowName = (dest: Dest, mode: Mode): string => (dest === 'enrich-transport' ? dest : `${dest}/${mode}`)

// Two children at a time: this box has two cores.
let running = 0
const queue: Array<() => void> = []
async function limited<T>(fn: () => Promise<T>): Promise<T> {
  if (running >= 2) await new Promise<void>((resolve) => queue.push(resolve))
  running++
  try {
    return await fn()
  } finally {
    running--
    queue.shift()?.()
  }
}

interface Outcome {
  r: ChildResult
  res: Record<string, unknown> | undefined
  written: number
  unique: number
  duplicates: number
  torn: number
  /** Lines written after a later one. */
  outOfOrder: number
}

let n = 0
function run(
  scenario: string,
  dest: Dest,
  mode: Mode,
  count: number,
  options: { env?: Record<string, string>; signal?: NodeJS.Signals } = {},
): Promise<Outcome> {
  const file = join(dir, `${scenario}-${dest}-${mode}-${++n}.ndjson`)
  return limited(async () => {
    const r = await runChild('reliability/shutdown.ts', [scenario, dest, mode, file, String(count)], {
      timeoutMs: 60_000,
      env: { DEADLINE_MS: '2000', ...options.env },
      onStdout: (chunk, pid) => {
        if (options.signal !== undefined && chunk.includes('ready')) process.kill(pid, options.signal)
      },
    })
    const text = existsSync(file) ? readFileSync(file, 'utf8') : ''
    const ids: number[] = []
    let torn = 0
    for (const l of text.split('\n')) {
      if (l.length === 0) continue
      try {
        ids.push((JSON.parse(l) as { i: number }).i)
      } catch {
        torn++
      }
    }
    const unique = new Set(ids).size
    let res: Record<string, unknown> | undefined
    try {
      res = resultOf(r.stdout)
    } catch {
      res = undefined
    }
    return {
      r,
      res,
      written: ids.length,
      unique,
      duplicates: ids.length - unique,
      torn,
      outOfOrder: ids.filter((v, i) => i > 0 && v < (ids[i - 1] as number)).length,
    }
  })
}

/**
 * Every line once, none torn, in call order. An async pino.destination is the
 * exception for order: when pino flushes it synchronously (process exit, a
 * signal handled, flushSync()) while an asynchronous write is still in flight,
 * that write's chunk lands after the flushed one (SonicBoom's behavior, plain
 * pino's too): complete, but not always in order. Seen in about one async run
 * in ten; the figure is reported.
 */
function expectComplete(o: Outcome, count: number, dest: Dest): void {
  expect(o.torn).toBe(0)
  expect(o.duplicates).toBe(0)
  expect(o.written).toBe(count)
  if (dest !== 'async') expect(o.outOfOrder).toBe(0)
}

// Every row starts at once and waits its turn in `limited`: vitest's per-test
// timeout would count that wait, which on a loaded machine (load 25 on these two
// cores, measured) passes 30 s for rows far down the queue. Each child has its
// own 60 s bound (runChild); the test's bound is only the whole queue's.
describe.concurrent('shutdown and data loss (real child processes, every destination kind and mode)', {
  timeout: 15 * 60_000,
}, () => {
  it.for(ROWS)(
    'process.exit(0) after 100,000 lines (%s, %s): 100,000 written, none twice, none torn',
    async ([dest, mode], ctx) => {
      const o = await run('exit', dest, mode, 100_000)
      figures(ctx, {
        row: rowName(dest, mode),
        outOfOrder: o.outOfOrder,
        written: o.written,
        duplicates: o.duplicates,
        torn: o.torn,
        ms: o.r.elapsedMs,
      })
      expect(o.r.stderr).toBe('')
      expect(o.r.code).toBe(0)
      expectComplete(o, 100_000, dest)
    },
  )

  // Why every fixture here waits for an async destination's 'ready': pino's
  // exit flush of a SonicBoom that has not opened its file yet throws ("sonic
  // boom is not ready yet") and the lines are gone. Plain pino and pino-enrich alike.
  it.for(['plain', 'snapshot', 'deferred'] as const)(
    'an async pino.destination not yet ready at process.exit() loses every line (%s)',
    async (mode, ctx) => {
      const o = await run('exit-not-ready', 'async', mode, 1_000)
      figures(ctx, { mode, logged: 1_000, written: o.written, code: o.r.code })
      expect(o.r.stderr).toMatch(/sonic boom is not ready yet/)
      expect(o.written).toBe(0)
    },
  )

  it.for(ROWS)(
    'handleSignals() then SIGTERM (%s, %s): every line written once, exit code 143',
    async ([dest, mode], ctx) => {
      const o = await run('sigterm', dest, mode, 20_000, { signal: 'SIGTERM' })
      figures(ctx, {
        row: rowName(dest, mode),
        outOfOrder: o.outOfOrder,
        pendingAtSignal: (o.res?.pending as number) ?? null,
        written: o.written,
        code: o.r.code,
      })
      expect(o.r.signal).toBeNull()
      expect(o.r.code).toBe(143)
      expectComplete(o, 20_000, dest)
    },
  )

  // What pino loses on a signal without handleSignals(): Node's default for SIGTERM
  // ends the process at once, with no 'exit' event, so nothing is flushed. These
  // figures are the README's; the assertions hold what it states.
  it.for(ROWS)(
    'without handleSignals(), SIGTERM (%s, %s) kills the process unflushed: what is lost is measured, nothing is duplicated',
    async ([dest, mode], ctx) => {
      const count = 20_000
      // A deadline no run reaches: a line whose deadline passed between the child's count of what
      // is pending and the signal (a loaded machine is slow to send it) would be written, not lost.
      const o = await run('sigterm-plain', dest, mode, count, { signal: 'SIGTERM', env: { DEADLINE_MS: '600000' } })
      const pending = (o.res?.pending as number) ?? 0
      figures(ctx, {
        row: rowName(dest, mode),
        logged: count,
        lost: count - o.unique,
        pendingAtSignal: pending,
        torn: o.torn,
      })
      expect(o.r.signal).toBe('SIGTERM')
      expect(o.duplicates).toBe(0)
      expect(o.unique).toBeLessThanOrEqual(count)
      // A synchronous destination holds nothing back: only deferred lines still waiting are lost.
      if (dest === 'sync') expect(count - o.unique).toBe(pending)
      if (mode === 'deferred' && dest !== 'enrich-transport') expect(count - o.unique).toBeGreaterThanOrEqual(pending)
    },
  )

  it.for(ROWS.filter(([dest]) => dest === 'sync'))(
    'await enrich.flush() then SIGKILL (%s, %s): nothing lost, duplicated or torn',
    async ([dest, mode], ctx) => {
      const o = await run('flush-kill', dest, mode, 100_000, { env: { DEADLINE_MS: '200' } })
      figures(ctx, { row: rowName(dest, mode), written: o.written, flushMs: (o.res?.flushMs as number) ?? null })
      expect(o.r.signal).toBe('SIGKILL')
      expectComplete(o, 100_000, dest)
    },
  )

  // enrich.flush() writes our pending lines into pino; what pino's async
  // destination or transport still buffers needs the destination's own flush:
  // flushSync() for an async pino.destination (its flush(cb) does nothing when
  // minLength is 0), logger.flush(cb) for a transport.
  it.for(ROWS.filter(([dest]) => dest === 'async' || dest === 'transport'))(
    'await enrich.flush() and the destination flush, then SIGKILL (%s, %s): nothing lost, duplicated or torn',
    async ([dest, mode], ctx) => {
      const [alone, both] = await Promise.all([
        run('flush-kill', dest, mode, 100_000, { env: { DEADLINE_MS: '200' } }),
        run('flush-kill-pino', dest, mode, 100_000, { env: { DEADLINE_MS: '200' } }),
      ])
      figures(ctx, {
        row: rowName(dest, mode),
        outOfOrder: both.outOfOrder,
        written: both.written,
        lostWithEnrichFlushAlone: 100_000 - alone.unique,
        tornWithEnrichFlushAlone: alone.torn,
      })
      expect(both.r.signal).toBe('SIGKILL')
      expectComplete(both, 100_000, dest)
      // Killed with pino's buffers unflushed, a transport may leave a torn last line: counted, not judged.
      expect(alone.duplicates).toBe(0)
    },
  )

  // pino's logger.flush() on a pipeline transport flushes the worker's first
  // stream only (pino's worker gives thread-stream a PassThrough without
  // flush()), so lines still waiting for their deadline in our worker are not
  // reached. Documented; this test fails once that changes, to update the README.
  it('pino-enrich/transport: after logger.flush(), a SIGKILL loses the lines still waiting in the worker (documented limit)', async (ctx) => {
    const o = await run('flush-kill-pino', 'enrich-transport', 'snapshot', 20_000, { env: { DEADLINE_MS: '5000' } })
    figures(ctx, { logged: 20_000, written: o.unique, lost: 20_000 - o.unique, torn: o.torn })
    expect(o.r.signal).toBe('SIGKILL')
    expect(o.duplicates).toBe(0)
    expect(o.unique).toBeLessThan(20_000)
  })

  for (const scenario of ['uncaught', 'rejection'] as const) {
    const what = scenario === 'uncaught' ? 'an uncaught exception' : 'an unhandled rejection'
    it.for(ROWS)(
      `${what} right after logging 20,000 lines (%s, %s): every earlier line is at the destination`,
      async ([dest, mode], ctx) => {
        const o = await run(scenario, dest, mode, 20_000)
        figures(ctx, { row: rowName(dest, mode), outOfOrder: o.outOfOrder, written: o.written, code: o.r.code })
        expect(o.r.code).toBe(1)
        expect(o.r.stderr).toMatch(
          scenario === 'uncaught' ? /uncaught right after logging/ : /unhandled rejection right/,
        )
        expectComplete(o, 20_000, dest)
      },
    )
  }

  it.for(ROWS)(
    'close() with a hung enricher (%s, %s) returns within closeTimeoutMs, writes every line and lets the process exit',
    async ([dest, mode], ctx) => {
      const o = await run('close-hung', dest, mode, 1_000)
      const closeMs = o.res?.closeMs as number
      const timeoutMs = o.res?.closeTimeoutMs as number
      const transportCloseMs = o.res?.transportCloseMs as number | null
      const workerCloseMs = o.res?.workerCloseMs as number | null
      const stall = o.res?.loopDelayMaxMs as number
      const workerStall = (o.res?.workerLoopDelayMaxMs as number | null) ?? 0
      figures(ctx, {
        row: rowName(dest, mode),
        closeMs,
        closeTimeoutMs: timeoutMs,
        transportCloseMs,
        workerCloseMs,
        loopDelayMaxMs: stall,
        workerLoopDelayMaxMs: workerStall,
      })
      expect(o.r.code).toBe(0)
      expect(o.r.stderr).toBe('')
      // Writing the 1,000 lines waiting on the hung enricher comes on top of the bound: in
      // deferred mode 40-80 ms here (each line timed out, its problems serialized, first runs
      // of those paths and a GC), a few ms in snapshot mode. Stalls of the child's event loop
      // while it closed (a loaded machine) are allowed for, and what the stall misses of
      // them (522 ms against 478 in a run on Node 22 at load average 6). A close that waited
      // on the hung compute would miss this by seconds.
      expect(closeMs).toBeLessThan(timeoutMs + 400 + stall)
      if (dest === 'enrich-transport') {
        // The worker was started before this was timed. From end() here to the worker's pipeline
        // closed (its enricher's dispose()): its wait of closeTimeoutMs for the hung enricher, the
        // 1,000 lines read and written as they are (330-355 ms in all, quiet or beside three CPU
        // hogs), and the stalls of both threads. A worker that waited for the lines' 2 s deadline
        // or for the hung compute would miss it.
        expect(workerCloseMs).not.toBeNull()
        expect(workerCloseMs as number).toBeLessThan(timeoutMs + 400 + stall + workerStall)
        // Then pino/file ends and the thread exits: thread-stream's teardown, 5-150 ms here.
        expect(o.res?.closedInTime).toBe(true)
        expect(transportCloseMs as number).toBeLessThan(timeoutMs + 500 + stall + workerStall)
      }
      expectComplete(o, 1_000, dest)
    },
  )

  it.for(ROWS)('logging after close() (%s, %s) never throws, is written and is counted', async ([dest, mode], ctx) => {
    const o = await run('after-close', dest, mode, 1_000)
    figures(ctx, {
      row: rowName(dest, mode),
      threw: o.res?.threw as number,
      afterClose: o.res?.afterClose as number,
      written: o.written,
    })
    expect(o.r.code).toBe(0)
    expect(o.res?.threw).toBe(0)
    // The main thread of pino-enrich/transport does not enrich, so it counts nothing: the worker does.
    if (dest !== 'enrich-transport') expect(o.res?.afterClose).toBe(1_000)
    expectComplete(o, 2_000, dest)
  })

  it.for(ROWS)("logging inside process.on('exit') (%s, %s) never throws and is counted", async ([dest, mode], ctx) => {
    const o = await run('in-exit', dest, mode, 1_000)
    figures(ctx, {
      row: rowName(dest, mode),
      threw: o.res?.threw as number,
      counted: o.res?.enriched as number,
      pending: o.res?.pending as number,
      written: o.written,
    })
    expect(o.r.code).toBe(0)
    expect(o.res?.threw).toBe(0)
    expect(o.duplicates).toBe(0)
    if (dest !== 'enrich-transport') {
      expect(o.res?.enriched).toBe(1_000)
      expect(o.res?.pending).toBe(0)
    }
    // pino's own exit flush of an async destination has run by then: in snapshot
    // mode those lines stay in its buffer (plain pino loses them the same way).
    // Deferred mode flushes the destination itself after writing them.
    if (dest === 'async' && mode === 'snapshot') expect(o.written).toBeLessThan(1_000)
    else expectComplete(o, 1_000, dest)
  })
})

describe('process listeners', () => {
  it('20 deferred loggers share one exit listener: no MaxListenersExceededWarning', async (ctx) => {
    const before = process.listenerCount('exit')
    const pipelines = Array.from({ length: 20 }, () => {
      const p = createPipeline({ deadlineMs: 5 })
      p.register(defineEnricher({ name: 'user', key: () => 'k', compute: () => new Promise(() => {}) }))
      return p
    })
    const out = sink()
    const loggers = pipelines.map((p) => pino(p.pinoOptions({ mode: 'deferred' }), out))
    const added = process.listenerCount('exit') - before
    for (const log of loggers) log.info('x')
    await Promise.all(pipelines.map((p) => p.close()))
    figures(ctx, { loggers: loggers.length, exitListenersAdded: added })
    expect(added).toBeLessThanOrEqual(1)
    expect(out.lines()).toHaveLength(20)
  })
})
