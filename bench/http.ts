// The HTTP part of `npm run bench`: Express 5 + pino-http and Fastify 5, one
// route logging two lines per request (plus the framework's own line), driven
// by autocannon over loopback with 20 connections. Each variant's server runs
// in its own process (bench/http-server.ts); autocannon runs here. Rounds
// alternate the variants, the order rotated each round; the figures are the
// medians of the per-round ratios against the hand-written equivalent.
//
// Every round starts its servers afresh, so that one process's luck (its
// heap layout, its JIT's choices) is not in every round of a run: with one
// process per variant for all rounds, two runs of the same code put Express
// snapshot at 1.00x and 1.10x of hand-written, most rounds of each agreeing.
// The server's CPU time per request is reported beside req/s and p99: what a
// request costs it, apart from how much of the cores it got beside autocannon.
import { type ChildProcess, execFileSync, fork } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { median } from './measure.js'
import type { Row } from './table.js'

const ROUNDS = Number(process.env.BENCH_HTTP_ROUNDS ?? 6)
const SECONDS = Number(process.env.BENCH_HTTP_SECONDS ?? 4)
/** Load before each measurement, on the server just started: JIT, and every user's value cached. */
const WARMUP_SECONDS = Number(process.env.BENCH_HTTP_WARMUP_SECONDS ?? 2)
const CONNECTIONS = 20
const USERS = 300
const FRAMEWORKS = ['express', 'fastify'] as const
const VARIANTS = ['plain', 'hand', 'snapshot', 'deferred'] as const
type Framework = (typeof FRAMEWORKS)[number]
type Variant = (typeof VARIANTS)[number]

const serverFile = fileURLToPath(new URL('./http-server.ts', import.meta.url))

/** What is used of autocannon 8 (it ships no types). */
interface AutocannonResult {
  requests: { total: number }
  duration: number
  errors: number
  timeouts: number
  non2xx: number
}
interface AutocannonInstance extends PromiseLike<AutocannonResult> {
  on(event: 'response', listener: (client: unknown, status: number, bytes: number, ms: number) => void): void
}
type Autocannon = (options: Record<string, unknown>) => AutocannonInstance
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon

interface Server {
  child: ChildProcess
  port: number
}

async function start(framework: Framework, variant: Variant, dest: string): Promise<Server> {
  const child = fork(serverFile, [framework, variant, dest], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  const [message] = (await Promise.race([
    once(child, 'message'),
    once(child, 'exit').then(([code]) => {
      throw new Error(`${framework} ${variant} server exited with ${code} before listening`)
    }),
  ])) as [{ port: number }]
  return { child, port: message.port }
}

async function stop(server: Server): Promise<void> {
  const exited = once(server.child, 'exit')
  server.child.send({ close: true })
  await exited
}

/** One request per user, in turn: autocannon cycles through them on every connection. */
const requests = Array.from({ length: USERS }, (_, i) => ({
  method: 'GET',
  path: `/users/u${i}/orders`,
  headers: { 'x-user-id': `u${i}` },
}))

interface Sample {
  rps: number
  /** 99th percentile of the response times, in ms, from every response (autocannon's own rounds to whole ms). */
  p99: number
  /** The server process's CPU time (user and system) per request, in µs; NaN where /proc cannot tell. */
  cpuUs: number
}

/** Clock ticks per second of /proc's CPU times. */
const TICKS = ((): number => {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim())
    return Number.isFinite(n) && n > 0 ? n : 100
  } catch {
    return 100
  }
})()

/** A process's CPU time so far, in s, from /proc (Linux); NaN elsewhere. */
function cpuSeconds(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // After the command name, which may hold spaces: utime and stime are the 12th and 13th fields.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / TICKS
  } catch {
    return Number.NaN
  }
}

async function load(server: Server, seconds: number): Promise<Sample> {
  const { port } = server
  const times: number[] = []
  const instance = autocannon({
    url: `http://127.0.0.1:${port}`,
    connections: CONNECTIONS,
    duration: seconds,
    requests,
  })
  instance.on('response', (_client, _status, _bytes, ms) => {
    times.push(ms)
  })
  const cpuBefore = cpuSeconds(server.child.pid)
  const result = await instance
  const cpu = cpuSeconds(server.child.pid) - cpuBefore
  if (result.errors > 0 || result.timeouts > 0 || result.non2xx > 0) {
    throw new Error(`port ${port}: ${result.errors} errors, ${result.timeouts} timeouts, ${result.non2xx} non-2xx`)
  }
  times.sort((a, b) => a - b)
  return {
    rps: result.requests.total / seconds,
    p99: times[Math.floor(times.length * 0.99)] ?? Number.NaN,
    cpuUs: (cpu / result.requests.total) * 1e6,
  }
}

/** Key paths of a line, nested objects included (`user.plan`), without pino-http's req and res. */
function keyPaths(line: Record<string, unknown>, prefix = ''): string[] {
  const out: string[] = []
  for (const [k, v] of Object.entries(line)) {
    const path = prefix + k
    if (v !== null && typeof v === 'object' && !Array.isArray(v) && path !== 'req' && path !== 'res') {
      out.push(...keyPaths(v as Record<string, unknown>, `${path}.`))
    } else {
      out.push(path)
    }
  }
  return out.sort()
}

/**
 * Before measuring: one request per variant for a user whose value is cached,
 * its lines read back from a file, and the key paths of each line compared.
 * The hand-written, snapshot and deferred lines must carry the same keys;
 * plain has none of the enriched fields. Returns the keys of the route's first line.
 */
async function checkSameKeys(framework: Framework): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-http-'))
  try {
    const keys = new Map<Variant, string[]>()
    for (const variant of VARIANTS) {
      const file = join(dir, `${variant}.log`)
      const server = await start(framework, variant, file)
      const get = async (): Promise<void> => {
        const res = await fetch(`http://127.0.0.1:${server.port}/users/u1/orders`, { headers: { 'x-user-id': 'u1' } })
        if (!res.ok) throw new Error(`${framework} ${variant}: status ${res.status}`)
        await res.arrayBuffer()
      }
      await get()
      await new Promise((resolve) => setTimeout(resolve, 100))
      await get()
      await stop(server)
      const lines = readFileSync(file, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>)
      // The second request's lines: its user is cached by then.
      const lastId = lines.at(-1)?.reqId ?? (lines.at(-1)?.req as { id?: unknown } | undefined)?.id
      const mine = lines.filter((l) => (l.reqId ?? (l.req as { id?: unknown } | undefined)?.id) === lastId)
      keys.set(
        variant,
        mine.map((l) => `${String(l.msg)}: ${keyPaths(l).join(' ')}`),
      )
    }
    const hand = keys.get('hand')?.join('\n')
    for (const variant of ['snapshot', 'deferred'] as const) {
      if (keys.get(variant)?.join('\n') !== hand) {
        throw new Error(
          `${framework}: ${variant} lines differ from hand-written ones\n${variant}:\n${keys.get(variant)?.join('\n')}\nhand:\n${hand}`,
        )
      }
    }
    return (keys.get('hand') ?? []).join('\n  ')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

async function runFramework(framework: Framework): Promise<Row[]> {
  const keys = await checkSameKeys(framework)
  console.log(`${framework}: hand-written, snapshot and deferred lines carry the same keys:\n  ${keys}`)
  const samples = new Map<Variant, Sample[]>(VARIANTS.map((v) => [v, []]))
  for (let r = 0; r < ROUNDS; r++) {
    const order = VARIANTS.map((_, i) => VARIANTS[(i + r) % VARIANTS.length] as Variant)
    // Started together, before any is measured: an idle server costs the one being measured nothing.
    const servers = new Map<Variant, Server>()
    try {
      for (const v of VARIANTS) servers.set(v, await start(framework, v, '/dev/null'))
      for (const v of order) {
        const server = servers.get(v) as Server
        await load(server, WARMUP_SECONDS)
        samples.get(v)?.push(await load(server, SECONDS))
      }
    } finally {
      for (const s of servers.values()) await stop(s)
    }
    const line = VARIANTS.map((v) => {
      const s = samples.get(v)?.[r] as Sample
      return `${v} ${Math.round(s.rps)} req/s p99 ${s.p99.toFixed(1)} ms CPU ${Math.round(s.cpuUs)} µs/req`
    })
    console.log(`${framework} round ${r + 1}/${ROUNDS}: ${line.join(', ')}`)
  }
  const of = (v: Variant): Sample[] => samples.get(v) ?? []
  const rows: Row[] = []
  const compare = (a: Variant, b: Variant, label: string, rpsMax?: number, p99Max?: number): void => {
    const as = of(a)
    const bs = of(b)
    // "x fewer req/s": b's rate over a's, as the other rows put a's time over b's.
    const fewer = median(as.map((s, i) => (bs[i] as Sample).rps / s.rps))
    const p99 = median(as.map((s, i) => s.p99 / (bs[i] as Sample).p99))
    const fmt = (n: number): string => Math.round(n).toLocaleString('en')
    rows.push({
      bench: `http ${framework}: ${label}, req/s`,
      value: `${fmt(median(as.map((s) => s.rps)))} vs ${fmt(median(bs.map((s) => s.rps)))} req/s`,
      ratio: `${fewer.toFixed(2)}x fewer req/s`,
      target: rpsMax === undefined ? '' : `<= ${rpsMax.toFixed(2)}x`,
      verdict: rpsMax === undefined ? '' : fewer <= rpsMax ? 'ok' : 'MISSED',
    })
    rows.push({
      bench: `http ${framework}: ${label}, p99 latency`,
      value: `${median(as.map((s) => s.p99)).toFixed(2)} vs ${median(bs.map((s) => s.p99)).toFixed(2)} ms`,
      ratio: `${p99.toFixed(2)}x`,
      target: p99Max === undefined ? '' : `<= ${p99Max.toFixed(2)}x`,
      verdict: p99Max === undefined ? '' : p99 <= p99Max ? 'ok' : 'MISSED',
    })
    // For reference: what a request costs the server, whatever share of the 2 cores it got.
    const cpu = median(as.map((s, i) => s.cpuUs / (bs[i] as Sample).cpuUs))
    rows.push({
      bench: `http ${framework}: ${label}, server CPU time per request${label.endsWith('(for reference)') ? '' : ' (for reference)'}`,
      value: Number.isFinite(cpu)
        ? `${median(as.map((s) => s.cpuUs)).toFixed(0)} vs ${median(bs.map((s) => s.cpuUs)).toFixed(0)} µs`
        : 'n/a (no /proc)',
      ratio: Number.isFinite(cpu) ? `${cpu.toFixed(2)}x` : 'n/a',
      target: '',
      verdict: '',
    })
  }
  const plainName = framework === 'express' ? 'plain pino-http' : 'plain Fastify logger'
  compare('snapshot', 'hand', 'pino-enrich snapshot vs hand-written', 1.02, 1.05)
  compare('deferred', 'hand', 'pino-enrich deferred vs hand-written', 1.04, 1.05)
  compare('hand', 'plain', `hand-written vs ${plainName} (for reference)`)
  return rows
}

/** Express and Fastify, 4 variants each: BENCH_HTTP_ROUNDS x 4 x (BENCH_HTTP_WARMUP_SECONDS + BENCH_HTTP_SECONDS) per framework, and the servers' starts. */
export async function runHttpBench(): Promise<Row[]> {
  const rows: Row[] = []
  for (const framework of FRAMEWORKS) rows.push(...(await runFramework(framework)))
  return rows
}
