// The replay guard of signed invalidation messages: a message validly signed
// is still dropped when its timestamp is too far from this clock, or when the
// same message was received within that window (a captured message sent again).

/** Signatures of messages received within `maxMessageAgeMs`, kept to refuse a replay: at most this many. */
const MAX_SEEN = 10_000

/** What {@link ReplayGuard.check} made of a validly signed message. */
export const Verdict = {
  /** Recent and not seen before: to be acted on. */
  New: 'new',
  /** Its timestamp is beyond the age bound, or no later than one forgotten to make room. */
  Stale: 'stale',
  /** Received before, within the age bound. */
  Replayed: 'replayed',
} as const
export type Verdict = (typeof Verdict)[keyof typeof Verdict]

/** Remembers the signatures of recent messages, to refuse old and repeated ones. */
export class ReplayGuard {
  readonly #maxAgeMs: number
  readonly #seen = new SeenSignatures()

  /** @param maxAgeMs - how far a message's timestamp may be from this clock, either way, in ms */
  constructor(maxAgeMs: number) {
    this.#maxAgeMs = maxAgeMs
  }

  /**
   * Whether a validly signed message is recent and new: its timestamp `ts`
   * within `maxAgeMs` of `now` either way, and its signature `sig` not seen
   * within that window (so a captured message cannot be sent again). A new
   * one is remembered.
   */
  check(ts: unknown, sig: string, now: number): Verdict {
    if (typeof ts !== 'number' || !(Math.abs(now - ts) <= this.#maxAgeMs)) return Verdict.Stale
    const seen = this.#seen
    // Kept until the message itself goes stale, when the age check refuses it anyway.
    seen.expire(now - this.#maxAgeMs)
    if (seen.has(sig)) return Verdict.Replayed
    // Past MAX_SEEN, the earliest timestamps are forgotten before they go stale: from then on
    // a message no later than one forgotten may be a replay, and is refused as stale.
    if (ts <= seen.floor) return Verdict.Stale
    seen.add(sig, ts)
    return Verdict.New
  }
}

/**
 * The signatures of the messages received within the age bound, each with
 * its timestamp, at most {@link MAX_SEEN}: a min-heap on the timestamp, so the
 * earliest go first, whether they expire or make room.
 */
interface Seen {
  readonly ts: number
  readonly sig: string
}

class SeenSignatures {
  readonly #sigs = new Set<string>()
  readonly #heap: Array<Seen> = []
  /** The latest timestamp forgotten to make room: no message at or before it is known new. */
  floor = Number.NEGATIVE_INFINITY

  has(sig: string): boolean {
    return this.#sigs.has(sig)
  }

  /** Forgets the signatures of messages timestamped before `oldest`. */
  expire(oldest: number): void {
    while (this.#heap.length > 0 && (this.#heap[0] as Seen).ts < oldest) this.#pop()
  }

  add(sig: string, ts: number): void {
    while (this.#heap.length >= MAX_SEEN) {
      const top = this.#pop()
      if (top.ts > this.floor) this.floor = top.ts
    }
    this.#sigs.add(sig)
    const h = this.#heap
    let i = h.push({ ts, sig }) - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if ((h[parent] as Seen).ts <= ts) break
      ;[h[i], h[parent]] = [h[parent] as Seen, h[i] as Seen]
      i = parent
    }
  }

  #pop(): Seen {
    const h = this.#heap
    const top = h[0] as Seen
    const last = h.pop() as Seen
    this.#sigs.delete(top.sig)
    if (h.length === 0) return top
    h[0] = last
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let m = i
      if (l < h.length && (h[l] as Seen).ts < (h[m] as Seen).ts) m = l
      if (r < h.length && (h[r] as Seen).ts < (h[m] as Seen).ts) m = r
      if (m === i) break
      ;[h[i], h[m]] = [h[m] as Seen, h[i] as Seen]
      i = m
    }
    return top
  }
}
