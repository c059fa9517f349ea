import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { OrderedQueue, type QueuedLine, type QueueHost } from '../../src/core/ordered-queue.js'
import { manualClock } from '../helpers/deferred.js'

// The queue alone, behind a host of the test's making: a clock moved by hand,
// fake timers for the head's deadline, lines that are ready when the test says.

interface TestLine extends QueuedLine {
  readonly id: string
  waiting: string[] | undefined
  timedOut: boolean
}

function line(id: string, waits = false): TestLine {
  return {
    id,
    waiting: waits ? ['lookup'] : undefined,
    done: false,
    onReady: undefined,
    deadline: 0,
    start: 0,
    timedOut: false,
  }
}

/** The line's lookup answers: it waits for nothing now, and says so. */
function answer(l: TestLine): void {
  l.waiting = undefined
  l.onReady?.()
}

const DEADLINE_MS = 10

// The clock of the latest setup(): a line is pushed at its time, as the pipeline pushes it at the time it was taken.
let ticks = manualClock(0)

function setup(options: { maxPending?: number; write?: (l: TestLine, q: OrderedQueue<TestLine>) => void } = {}) {
  const clock = manualClock(0)
  ticks = clock
  const host: QueueHost<TestLine> = {
    ticks: clock,
    deadlineMs: DEADLINE_MS,
    maxPending: options.maxPending ?? 100,
    counters: { dropped: 0, maxAddedDelayMs: 0 },
    timeOut: (l) => {
      l.timedOut = true
      l.waiting = undefined
    },
  }
  const written: string[] = []
  const active: boolean[] = []
  const queue: OrderedQueue<TestLine> = new OrderedQueue<TestLine>(
    host,
    (l) => {
      written.push(l.timedOut ? `${l.id} (timed out)` : l.id)
      options.write?.(l, queue)
    },
    (a) => active.push(a),
  )
  /** Moves the host's clock and the timers together. */
  const advance = async (ms: number): Promise<void> => {
    clock.advance(ms)
    await vi.advanceTimersByTimeAsync(ms)
  }
  return { queue, host, written, active, advance }
}

beforeEach(() => {
  vi.useFakeTimers()
})

afterEach(() => {
  vi.useRealTimers()
})

describe('OrderedQueue', () => {
  describe('order', () => {
    it('writes a line that waits for nothing at once, in the push, when nothing is ahead of it', () => {
      const { queue, written, active } = setup()
      const l = line('a')
      queue.push(l, ticks.now())
      expect(written).toEqual(['a'])
      expect(l.done).toBe(true)
      expect(queue.size).toBe(0)
      // Written in the call: the queue never held it.
      expect(active).toEqual([])
    })

    it('holds a ready line behind an earlier one that waits, and writes both in call order once it answers', () => {
      const { queue, written, active } = setup()
      const first = line('first', true)
      const second = line('second')
      queue.push(first, ticks.now())
      queue.push(second, ticks.now())
      expect(written).toEqual([])
      expect(queue.size).toBe(2)
      expect(queue.busy).toBe(true)
      expect(active).toEqual([true])
      answer(first)
      expect(written).toEqual(['first', 'second'])
      expect(queue.size).toBe(0)
      expect(active).toEqual([true, false])
    })

    it('never lets a later line overtake an earlier one, whatever order their lookups answer in', () => {
      const { queue, written } = setup()
      const lines = ['a', 'b', 'c', 'd'].map((id) => line(id, true))
      for (const l of lines) queue.push(l, ticks.now())
      answer(lines[3] as TestLine)
      answer(lines[1] as TestLine)
      expect(written).toEqual([])
      answer(lines[0] as TestLine)
      expect(written).toEqual(['a', 'b'])
      answer(lines[2] as TestLine)
      expect(written).toEqual(['a', 'b', 'c', 'd'])
    })
  })

  describe('deadline', () => {
    it("writes a waiting line at its deadline on the host's ticks, timed out, and the ready lines behind it", async () => {
      const { queue, host, written, advance } = setup()
      const slow = line('slow', true)
      queue.push(slow, ticks.now())
      queue.push(line('ready'), ticks.now())
      expect(slow.deadline).toBe(DEADLINE_MS)
      await advance(DEADLINE_MS - 1)
      expect(written).toEqual([])
      await advance(1)
      expect(written).toEqual(['slow (timed out)', 'ready'])
      expect(host.counters.maxAddedDelayMs).toBe(DEADLINE_MS)
      // A lookup answering after the line was written changes nothing.
      answer(slow)
      expect(written).toHaveLength(2)
    })

    it('gives each line its own deadline from the time it was pushed at: the next head waits out the rest of its own', async () => {
      const { queue, written, advance } = setup()
      const a = line('a', true)
      queue.push(a, ticks.now())
      await advance(4)
      const b = line('b', true)
      queue.push(b, ticks.now())
      await advance(DEADLINE_MS - 4)
      expect(written).toEqual(['a (timed out)'])
      await advance(3)
      expect(written).toEqual(['a (timed out)'])
      await advance(1)
      expect(written).toEqual(['a (timed out)', 'b (timed out)'])
    })

    it('counts the deadline from the time the line was taken, before the push: time spent gathering it is part of its wait', async () => {
      const { queue, host, written, advance } = setup()
      const taken = ticks.now()
      // Gathering the line ran a compute's synchronous part for 8 ms before the push.
      ticks.advance(8)
      const slow = line('slow', true)
      queue.push(slow, taken)
      expect(slow.deadline).toBe(taken + DEADLINE_MS)
      await advance(DEADLINE_MS - 8 - 1)
      expect(written).toEqual([])
      await advance(1)
      expect(written).toEqual(['slow (timed out)'])
      expect(host.counters.maxAddedDelayMs).toBe(DEADLINE_MS)
    })

    it('writes a line queued ahead of an earlier-taken one by the earlier deadline: order kept, neither late', async () => {
      const { queue, written, advance } = setup()
      const takenA = ticks.now()
      ticks.advance(8)
      // B is logged while A is gathered (a getter in A's record), so it is pushed first.
      const b = line('b', true)
      queue.push(b, ticks.now())
      const a = line('a', true)
      queue.push(a, takenA)
      expect(b.deadline).toBe(takenA + DEADLINE_MS)
      await advance(DEADLINE_MS - 8 - 1)
      expect(written).toEqual([])
      await advance(1)
      expect(written).toEqual(['b (timed out)', 'a (timed out)'])
    })

    it('never waits more than its deadline from the push: a clock that stepped back during the gather, or a since that is NaN', async () => {
      const { queue, written, advance } = setup()
      const waiting = line('waiting', true)
      queue.push(waiting, ticks.now())
      await advance(2)
      const taken = ticks.now()
      // The clock steps back an hour while the next line is gathered.
      ticks.advance(-3_600_000)
      const stepped = line('stepped', true)
      queue.push(stepped, taken)
      expect(stepped.deadline).toBe(ticks.now() + DEADLINE_MS)
      const odd = line('odd', true)
      queue.push(odd, Number.NaN)
      expect(odd.deadline).toBe(ticks.now() + DEADLINE_MS)
      // The line ahead is neither cut short nor held for the hour: it waits a deadline from the step.
      expect(waiting.deadline).toBe(ticks.now() + DEADLINE_MS)
      expect(written).toEqual([])
      await advance(DEADLINE_MS)
      expect(written).toEqual(['waiting (timed out)', 'stepped (timed out)', 'odd (timed out)'])
    })

    it('beyond maxPending writes the oldest line early, timed out, still in order', () => {
      const { queue, written } = setup({ maxPending: 2 })
      queue.push(line('a', true), ticks.now())
      queue.push(line('b', true), ticks.now())
      queue.push(line('c', true), ticks.now())
      expect(written).toEqual(['a (timed out)'])
      expect(queue.size).toBe(2)
    })

    it('arms no timer once it is empty: nothing of it is left to hold the process', async () => {
      const { queue, advance } = setup()
      const l = line('a', true)
      queue.push(l, ticks.now())
      expect(vi.getTimerCount()).toBe(1)
      answer(l)
      expect(vi.getTimerCount()).toBe(0)
      await advance(DEADLINE_MS)
      expect(queue.size).toBe(0)
    })
  })

  describe('a push from inside a write', () => {
    it('queues a line logged while a line is written behind it, and writes it once that write returns', () => {
      const order: string[] = []
      const { queue, written } = setup({
        write: (l, q) => {
          order.push(`write ${l.id}`)
          if (l.id === 'outer') {
            q.push(line('inner'), ticks.now())
            order.push(`inner queued, size ${q.size}`)
          }
        },
      })
      queue.push(line('outer'), ticks.now())
      expect(order).toEqual(['write outer', 'inner queued, size 1', 'write inner'])
      expect(written).toEqual(['outer', 'inner'])
      expect(queue.size).toBe(0)
    })

    it('reports itself busy during a write, so that a caller copies what the line would otherwise share', () => {
      const seen: boolean[] = []
      const { queue } = setup({ write: (_l, q) => seen.push(q.busy) })
      queue.push(line('a'), ticks.now())
      expect(seen).toEqual([true])
      expect(queue.busy).toBe(false)
    })

    it('counts a line whose write throws as dropped and goes on with the next', () => {
      const { queue, host, written } = setup({
        write: (l) => {
          if (l.id === 'bad') throw new Error('destination refused it')
        },
      })
      const first = line('bad', true)
      queue.push(first, ticks.now())
      queue.push(line('good'), ticks.now())
      answer(first)
      expect(written).toEqual(['bad', 'good'])
      expect(host.counters.dropped).toBe(1)
      expect(queue.size).toBe(0)
    })
  })

  describe('close and drain', () => {
    it('close() writes every line now, timing out those still waiting, and leaves no timer', () => {
      const { queue, written, active } = setup()
      queue.push(line('a', true), ticks.now())
      queue.push(line('b'), ticks.now())
      queue.push(line('c', true), ticks.now())
      queue.close()
      expect(written).toEqual(['a (timed out)', 'b', 'c (timed out)'])
      expect(queue.size).toBe(0)
      expect(active).toEqual([true, false])
      expect(vi.getTimerCount()).toBe(0)
    })

    it('drain(false) writes only from the head while it is ready; drain(true) writes everything', () => {
      const { queue, written } = setup()
      const a = line('a', true)
      queue.push(a, ticks.now())
      queue.push(line('b', true), ticks.now())
      a.waiting = undefined
      queue.drain(false)
      expect(written).toEqual(['a'])
      queue.drain(true)
      expect(written).toEqual(['a', 'b (timed out)'])
    })

    it('whenEmpty() resolves once the last line is written, and at once when empty', async () => {
      const { queue, advance } = setup()
      await expect(queue.whenEmpty()).resolves.toBeUndefined()
      const a = line('a', true)
      queue.push(a, ticks.now())
      let empty = false
      const done = queue.whenEmpty().then(() => {
        empty = true
      })
      await advance(1)
      expect(empty).toBe(false)
      answer(a)
      await done
      expect(empty).toBe(true)
    })

    it('forEach() visits the lines still queued, in order', () => {
      const { queue } = setup()
      queue.push(line('a', true), ticks.now())
      queue.push(line('b'), ticks.now())
      const ids: string[] = []
      queue.forEach((l) => {
        ids.push(l.id)
      })
      expect(ids).toEqual(['a', 'b'])
    })
  })
})
