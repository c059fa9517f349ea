import type { Clock } from '../clock.js'

/** A line waiting for its enrichment, as the queue sees it. */
export interface QueuedLine {
  /** What the line still waits for; `undefined` once it waits for nothing. */
  readonly waiting: readonly unknown[] | undefined
  /** Set by the queue when the line is written. */
  done: boolean
  /** Set by the queue on a line that waits: to be called once it waits for nothing. */
  onReady: (() => void) | undefined
  /**
   * Time after which the line is written with what is ready. Set again by
   * {@link OrderedQueue.push} on the host's monotonic `ticks`: a step of the
   * system time must neither hold the line nor cut its wait short.
   */
  deadline: number
  /** Time from which the delay added to the line is measured; set with `deadline`. */
  start: number
}

/** What the pipeline needs of a deferred queue that has lines waiting. */
export interface ActiveQueue {
  readonly size: number
  whenEmpty(): Promise<void>
  close(): void
}

/** What a queue needs of whoever owns it: a clock, its bounds, its counters, and how a line times out. */
export interface QueueHost<T> {
  /** Deadlines and the added delay are measured on this (a monotonic clock). */
  readonly ticks: Clock
  /** How long a line may wait, in ms. */
  readonly deadlineMs: number
  /** Most lines held at once; beyond it the oldest is written early. */
  readonly maxPending: number
  /** Lines whose write threw are counted in `dropped`; the largest added delay is kept in `maxAddedDelayMs`. */
  readonly counters: { dropped: number; maxAddedDelayMs: number }
  /** Marks what a line still waits for as timed out, before it is written with what is ready. */
  timeOut(line: T): void
}

/**
 * Lines in arrival order, each written when its enrichment is complete or its
 * deadline passed, whichever is first; a line never overtakes an earlier one.
 * One unref'd timer, for the head's deadline. Bounded by the host's
 * `maxPending`: beyond it the oldest line is written early, still in order.
 */
export class OrderedQueue<T extends QueuedLine> implements ActiveQueue {
  readonly #host: QueueHost<T>
  // The host's clock, bounds and counters, read on every line: held here, one hop away.
  readonly #ticks: Clock
  readonly #deadlineMs: number
  readonly #maxPending: number
  readonly #counters: QueueHost<T>['counters']
  readonly #write: (item: T) => void
  readonly #onActive: ((active: boolean) => void) | undefined
  #active = false
  #items: Array<T | undefined> = []
  #head = 0
  #timer: NodeJS.Timeout | undefined
  #timerFor: T | undefined
  #waiters: Array<() => void> = []
  // True while a line is being written: a log call made from inside that write
  // (a serializer, a mixin, a destination) queues behind it instead of
  // re-entering the loop that is writing.
  #writing = false

  /** `onActive` is told when the queue starts holding lines (true) and when it is empty again (false). */
  constructor(host: QueueHost<T>, write: (item: T) => void, onActive?: (active: boolean) => void) {
    this.#host = host
    this.#ticks = host.ticks
    this.#deadlineMs = host.deadlineMs
    this.#maxPending = host.maxPending
    this.#counters = host.counters
    this.#write = write
    this.#onActive = onActive
  }

  get size(): number {
    return this.#items.length - this.#head
  }

  /** Whether a line pushed now is queued rather than written at once, even when it waits for nothing. */
  get busy(): boolean {
    return this.#writing || this.#items.length !== this.#head
  }

  /**
   * Takes a gathered line: written at once when it waits for nothing and
   * nothing is ahead of it, else queued. `since`: the time on the host's
   * `ticks` when the line was taken, before it was gathered; its deadline
   * counts from then, since gathering runs computes up to their first await.
   */
  push(item: T, since: number): void {
    if (item.waiting === undefined && this.#items.length === this.#head && !this.#writing) {
      // Written in the call: no delay added, none to measure.
      this.#write1(item)
      // A line logged while that one was written waits for no earlier line now.
      if (this.#items.length !== this.#head) this.drain(false)
      return
    }
    this.#enqueue(item, since)
  }

  /**
   * Marks a write made by the caller, outside the queue, as under way: a line
   * that waits for nothing, with nothing ahead (see {@link busy}), written in
   * its log call without becoming a queued item. Lines logged meanwhile queue
   * behind it; {@link release} writes them once it returns, as {@link push} does.
   */
  hold(): void {
    this.#writing = true
  }

  /** Ends the write {@link hold} began and writes what was queued meanwhile. */
  release(): void {
    this.#writing = false
    if (this.#items.length !== this.#head) this.drain(false)
  }

  /** Queues a line that waits, or that has lines ahead of it. */
  #enqueue(item: T, since: number): void {
    // Not later than now: a clock that stepped back during the gather must not stretch the wait.
    const now = this.#ticks.now()
    const start = since < now ? since : now
    item.start = start
    item.deadline = start + this.#deadlineMs
    if (this.size >= this.#maxPending && !this.#writing) {
      const oldest = this.#items[this.#head] as T
      if (oldest.waiting !== undefined) this.#host.timeOut(oldest)
      this.#items[this.#head++] = undefined
      this.#emit(oldest)
    }
    const items = this.#items
    // A line logged while this one was gathered (from a getter in its record,
    // say) is queued ahead of it with a later deadline; written in order, it
    // is written by this one's.
    for (let i = items.length - 1; i >= this.#head; i--) {
      const ahead = items[i] as T
      // Negated, so that a deadline that is NaN (a clock that returned it) lowers none.
      if (!(ahead.deadline > item.deadline)) break
      ahead.deadline = item.deadline
      if (i === this.#head) this.#timerFor = undefined
    }
    items.push(item)
    if (!this.#active) {
      this.#active = true
      this.#onActive?.(true)
    }
    if (item.waiting !== undefined) item.onReady = () => this.drain(false)
    this.drain(false)
  }

  /**
   * Writes every line from the head that is ready or past its deadline; `force` writes all.
   * `exiting`: the process is exiting, possibly from inside the write under way
   * (a destination that calls process.exit()), which will never return to drain
   * what was queued meanwhile: it is written now.
   */
  drain(force: boolean, exiting = false): void {
    // The write under way drains what was queued meanwhile once it returns.
    if (this.#writing && !exiting) return
    const now = this.#ticks.now()
    // Re-read on every turn: a line written may queue another.
    while (this.#head < this.#items.length) {
      const items = this.#items
      const item = items[this.#head] as T
      if (item.waiting !== undefined) {
        if (!force && now < item.deadline) break
        this.#host.timeOut(item)
      }
      items[this.#head++] = undefined
      this.#emit(item)
    }
    if (this.#head === this.#items.length) {
      this.#items = []
      this.#head = 0
      // The deadline it was armed for is gone; left running, a ref'd one would hold the process.
      if (this.#timer !== undefined) clearTimeout(this.#timer)
      this.#timer = undefined
      this.#timerFor = undefined
      if (this.#active) {
        this.#active = false
        this.#onActive?.(false)
      }
      const waiters = this.#waiters
      this.#waiters = []
      for (const resolve of waiters) resolve()
    } else if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head)
      this.#head = 0
    }
    this.#arm()
  }

  /** Calls `fn` for every line still queued. */
  forEach(fn: (item: T) => void): void {
    for (let i = this.#head; i < this.#items.length; i++) fn(this.#items[i] as T)
  }

  /** Resolves when the queue is next empty. */
  whenEmpty(): Promise<void> {
    if (this.size === 0) return Promise.resolve()
    // Someone awaits the queue: its deadline timer holds the process until it is empty.
    this.#timer?.ref()
    return new Promise<void>((resolve) => this.#waiters.push(resolve))
  }

  /** Writes everything now and stops the timer. */
  close(): void {
    this.drain(true)
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    this.#timerFor = undefined
  }

  #emit(item: T): void {
    this.#write1(item)
    const delay = this.#ticks.now() - item.start
    if (delay > this.#counters.maxAddedDelayMs) this.#counters.maxAddedDelayMs = delay
  }

  #write1(item: T): void {
    item.done = true
    this.#writing = true
    try {
      this.#write(item)
    } catch {
      this.#counters.dropped++
    } finally {
      this.#writing = false
    }
  }

  #arm(): void {
    const first = this.#items[this.#head]
    if (first === undefined || first.waiting === undefined || this.#timerFor === first) return
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timerFor = first
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined
        this.#timerFor = undefined
        this.drain(false)
      },
      Math.max(0, first.deadline - this.#ticks.now()),
    )
    // Unref'd unless a flush() awaits this queue: a line alone never holds the process.
    if (this.#waiters.length === 0) this.#timer.unref()
  }
}
