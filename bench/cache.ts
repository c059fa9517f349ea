// The cache part of `npm run bench`: SmartCache against lru-cache, which it is
// built on, for the three things a log call can hit. Each round measures both
// sides back to back (alternating which goes first), so drift hits them alike;
// the reported figure is the median over rounds, after warm-up rounds.
import { LRUCache } from 'lru-cache'
import { type Clock, SmartCache, systemClock } from '../src/index.js'
import { type Paired, paired as pairedRounds } from './measure.js'
import type { Row } from './table.js'

const WARMUP = 3
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 21)
const KEYS = Array.from({ length: 1_024 }, (_, i) => `key:${i}`)
const MASK = KEYS.length - 1
const HOUR = 3_600_000
const HIT_OPS = 300_000
const PEEK_OPS = 2_000_000
const STAMPEDE_CALLERS = 10_000

const elapsedNs = (t0: bigint): number => Number(process.hrtime.bigint() - t0)

// Results are summed into this so no loop can be optimised away.
let sink = 0

// The default clock reads Date.now() at most once per millisecond, as lru-cache
// does; an injected clock is read on every lookup. The exact system clock shows
// what a Date.now() per lookup (~30 ns here) would cost.
const EXACT_CLOCK: Clock = systemClock

function warmCaches(clock?: Clock): { ours: SmartCache<string>; lru: LRUCache<string, string> } {
  const ours = new SmartCache<string>({ name: 'bench', max: 10_000, ttlMs: HOUR, ...(clock ? { clock } : {}) })
  const lru = new LRUCache<string, string>({ max: 10_000, ttl: HOUR, fetchMethod: async (k) => k })
  for (const k of KEYS) {
    ours.set(k, k)
    lru.set(k, k)
  }
  return { ours, lru }
}

const paired = (a: () => Promise<number> | number, b: () => Promise<number> | number) =>
  pairedRounds(a, b, WARMUP, ROUNDS)

async function hits(clock?: Clock): Promise<Row> {
  const { ours, lru } = warmCaches(clock)
  const compute = (k: string): string => k
  const p = await paired(
    async () => {
      const t0 = process.hrtime.bigint()
      for (let i = 0; i < HIT_OPS; i++) sink += (await ours.getOrCompute(KEYS[i & MASK] as string, compute)).length
      return elapsedNs(t0) / HIT_OPS
    },
    async () => {
      const t0 = process.hrtime.bigint()
      for (let i = 0; i < HIT_OPS; i++) sink += ((await lru.fetch(KEYS[i & MASK] as string)) as string).length
      return elapsedNs(t0) / HIT_OPS
    },
  )
  return clock === undefined
    ? ratioRow('getOrCompute() fresh hit vs lru-cache fetch() hit', p, 1.2)
    : ratioRow('  the same with an exact clock, Date.now() per lookup', p)
}

async function peeks(clock?: Clock): Promise<Row> {
  const { ours, lru } = warmCaches(clock)
  const p = await paired(
    () => {
      const t0 = process.hrtime.bigint()
      for (let i = 0; i < PEEK_OPS; i++) sink += (ours.peek(KEYS[i & MASK] as string).value as string).length
      return elapsedNs(t0) / PEEK_OPS
    },
    () => {
      const t0 = process.hrtime.bigint()
      for (let i = 0; i < PEEK_OPS; i++) sink += (lru.get(KEYS[i & MASK] as string) as string).length
      return elapsedNs(t0) / PEEK_OPS
    },
  )
  return clock === undefined
    ? ratioRow('peek() vs lru-cache get()', p, 2)
    : ratioRow('  the same with an exact clock, Date.now() per lookup', p)
}

function ratioRow(bench: string, { a, b, ratio }: Paired, max?: number): Row {
  return {
    bench,
    value: `${a.toFixed(1)} ns/op vs ${b.toFixed(1)} ns/op`,
    ratio: `${ratio.toFixed(2)}x`,
    target: max === undefined ? '' : `<= ${max.toFixed(2)}x`,
    verdict: max === undefined ? '' : ratio <= max ? 'ok' : 'MISSED',
  }
}

async function stampede(): Promise<Row> {
  let oursComputes = 0
  let lruComputes = 0
  let rounds = 0
  const { a, b, diff } = await paired(
    async () => {
      const cache = new SmartCache<string>({ name: 'bench', max: 10 })
      const compute = async (k: string): Promise<string> => {
        oursComputes++
        return k
      }
      const t0 = process.hrtime.bigint()
      const all = new Array<Promise<string>>(STAMPEDE_CALLERS)
      for (let i = 0; i < STAMPEDE_CALLERS; i++) all[i] = cache.getOrCompute('cold', compute)
      for (const v of await Promise.all(all)) sink += v.length
      rounds++
      return elapsedNs(t0) / 1e6
    },
    async () => {
      const lru = new LRUCache<string, string>({
        max: 10,
        fetchMethod: async (k) => {
          lruComputes++
          return k
        },
      })
      const t0 = process.hrtime.bigint()
      const all = new Array<Promise<string | undefined>>(STAMPEDE_CALLERS)
      for (let i = 0; i < STAMPEDE_CALLERS; i++) all[i] = lru.fetch('cold')
      for (const v of await Promise.all(all)) sink += (v as string).length
      return elapsedNs(t0) / 1e6
    },
  )
  const oursPerRound = oursComputes / rounds
  const lruPerRound = lruComputes / rounds
  return {
    bench: `stampede: ${STAMPEDE_CALLERS.toLocaleString('en')} callers on a cold key vs lru-cache fetch()`,
    value: `${oursPerRound} compute, ${a.toFixed(2)} ms vs ${lruPerRound} compute, ${b.toFixed(2)} ms`,
    ratio: `${diff >= 0 ? '+' : ''}${diff.toFixed(2)} ms`,
    target: '1 compute, <= +1.00 ms',
    verdict: oursPerRound === 1 && lruPerRound === 1 && diff <= 1 ? 'ok' : 'MISSED',
  }
}

/** SmartCache against lru-cache: hit, peek and stampede. About 10 s. */
export async function runCacheBench(): Promise<Row[]> {
  const rows = [await hits(), await hits(EXACT_CLOCK), await peeks(), await peeks(EXACT_CLOCK), await stampede()]
  if (sink === -1) console.log(sink)
  return rows
}
