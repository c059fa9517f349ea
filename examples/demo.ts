// npm start: the whole library on one machine. An Express app logs through
// pino with the built-in enrichers and a user lookup against a local user
// service that is healthy, slow, failing and hanging in turns, under a load
// of a few thousand requests. Every line is written on time whatever the
// service does; the closing table shows what the caches and breakers did.
//
// In an application the imports are 'pino-enrich', 'pino-enrich/enrichers'
// and 'pino-enrich/express'.
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import express from 'express'
import pino from 'pino'
import {
  cloudEnricher,
  containerEnricher,
  deploymentEnricher,
  hostEnricher,
  processEnricher,
  requestEnricher,
  resourceEnricher,
  runtimeEnricher,
} from '../enrichers/index.js'
import { expressContext } from '../src/context/express.js'
import { createPipeline, defineEnricher } from '../src/index.js'

const REQUESTS = Number(process.env.DEMO_REQUESTS ?? 3_000)
const SECONDS = Number(process.env.DEMO_SECONDS ?? 10)
// Each user comes back about ten times in the run: 300 users for the default 3 000 requests.
const USERS = Math.max(10, Math.round(REQUESTS / 10))
// Failing before slow: the slow quarter lets the breaker close again, so that
// the hanging quarter starts from a closed breaker and shows its timeouts.
const PHASES = ['healthy', 'failing', 'slow', 'hanging'] as const
type Phase = (typeof PHASES)[number]

// The user service, on loopback. Its behaviour changes every quarter of the run.
// One request in ten comes from a user not seen before: a known user has a
// stale value to fall back on when the service fails, a new one has not.
let phase: Phase = 'healthy'
let serviceRequests = 0
const userService = http.createServer(async (req, res) => {
  serviceRequests++
  const id = req.url?.split('/').pop() ?? ''
  if (phase === 'hanging') return // never answers: the lookup's timeout and the breaker deal with it
  if (phase === 'failing') {
    res.writeHead(503).end()
    return
  }
  await sleep(phase === 'slow' ? 25 : 2)
  res.writeHead(200, { 'content-type': 'application/json' })
  res.end(JSON.stringify({ id, name: `user ${id}`, plan: Number(id.slice(1)) % 5 === 0 ? 'pro' : 'free' }))
})
userService.listen(0, '127.0.0.1')
await once(userService, 'listening')
const serviceUrl = `http://127.0.0.1:${(userService.address() as AddressInfo).port}`
// Node loads fetch's HTTP client on its first call (100 ms or more on a busy
// machine), which a service that has been running paid long ago: pay it here.
await (await fetch(`${serviceUrl}/health`)).arrayBuffer()
serviceRequests = 0

// A port nothing listens on: the cloud enricher finds no metadata service, as off a cloud.
const closed = http.createServer().listen(0, '127.0.0.1')
await once(closed, 'listening')
const refused = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`
closed.close()

const enrich = createPipeline({ deadlineMs: 20 })
enrich.register(hostEnricher())
enrich.register(processEnricher())
enrich.register(resourceEnricher({ refreshMs: 2_000 }))
enrich.register(runtimeEnricher({ refreshMs: 2_000 }))
enrich.register(containerEnricher())
enrich.register(deploymentEnricher({ serviceName: 'demo-shop', version: '1.0.0', environment: 'demo' }))
enrich.register(cloudEnricher({ endpoints: { aws: refused, gcp: refused, azure: refused }, timeoutMs: 100 }))
enrich.register(requestEnricher())
enrich.register(
  defineEnricher<string>({
    name: 'user',
    key: (ctx) => ctx.context?.userId as string | undefined,
    compute: async (id, _ctx, { signal }) => {
      const res = await fetch(`${serviceUrl}/users/${encodeURIComponent(id)}`, { signal })
      if (!res.ok) throw new Error(`user service answered ${res.status}`)
      const user = (await res.json()) as { name: string; plan: string }
      return { user: { id, name: user.name, plan: user.plan } }
    },
    // Room for a busy machine (a loopback call takes a few ms on a quiet one);
    // a line waits at most the 20 ms deadline whatever this is.
    timeoutMs: 1_000,
    // Short ttl so the demo's ten seconds see refreshes, failures and recovery.
    cache: { ttlMs: 1_500, staleMs: 3_000, retryMs: 500, maxRetryMs: 2_000, max: 1_000 },
    breaker: { failureThreshold: 5, halfOpenAfterMs: 1_000 },
  }),
)
const transitions = new Map<string, number>()
enrich.onBreakerChange((e) => transitions.set(e.enricher, (transitions.get(e.enricher) ?? 0) + 1))

const dir = mkdtempSync(join(tmpdir(), 'pino-enrich-demo-'))
const file = join(dir, 'demo.ndjson')
const dest = pino.destination({ dest: file, sync: false })
await once(dest, 'ready')
const ready = await enrich.ready({ timeoutMs: 2_000 })
// Deferred: a line waits up to 20 ms for a user not cached yet, never longer.
const logger = pino(enrich.pinoOptions({ mode: 'deferred' }), dest)
let logged = 0
const log = (fields: Record<string, unknown>, msg: string): void => {
  logged++
  logger.info(fields, msg)
}
log({ ready }, 'demo starting')
console.log(
  `${REQUESTS} requests over ${SECONDS} s to an Express app that logs through pino-enrich; its user service is ` +
    `${PHASES.join(', then ')}, a quarter of the time each. Every line is kept and written on time.`,
)

const app = express()
app.use(expressContext(enrich, { user: (req) => req.get('x-user') }))
app.get('/cart/:id', async (req, res) => {
  // The phase on the line, so that the samples below can be told apart.
  log({ cart: req.params.id, userService: phase }, 'cart requested')
  await sleep(1)
  log({ items: 3 }, 'cart served')
  res.json({ ok: true })
})
const server = app.listen(0, '127.0.0.1')
await once(server, 'listening')
const appUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`

// The load: REQUESTS requests spread evenly over SECONDS, 16 at a time at most.
// The event loop's own stalls are measured too: no timer, ours included, fires during one.
const loopDelay = monitorEventLoopDelay({ resolution: 5 })
loopDelay.enable()
const started = performance.now()
let sent = 0
let answered = 0
// A bar redrawn in place on a terminal; elsewhere (a CI log, a pipe) one plain line per phase.
const tty = process.stderr.isTTY === true
let reported: Phase | undefined
const report = (): void => {
  if (tty) {
    const done = Math.round((answered / REQUESTS) * 30)
    process.stderr.write(
      `\r[${'#'.repeat(done)}${'.'.repeat(30 - done)}] ${answered}/${REQUESTS} requests, user service ${phase}   `,
    )
  } else if (phase !== reported) {
    reported = phase
    process.stderr.write(`${answered}/${REQUESTS} requests, user service ${phase}\n`)
  }
}
const progress = setInterval(report, 250)
async function client(): Promise<void> {
  while (sent < REQUESTS) {
    const n = sent++
    const due = (n / REQUESTS) * SECONDS * 1000 - (performance.now() - started)
    if (due > 0) await sleep(due)
    // By request count, not by the clock: on a machine too busy to keep the
    // schedule, each phase still gets its quarter of the requests.
    phase = PHASES[Math.min(PHASES.length - 1, Math.floor((n / REQUESTS) * PHASES.length))] as Phase
    // The first request of each phase is a new user too: the failing phase shows its
    // error before the failures of known users' refreshes open the breaker.
    const startsPhase = n > 0 && Math.floor(((n - 1) / REQUESTS) * PHASES.length) !== PHASES.indexOf(phase)
    const user = n % 10 === 9 || startsPhase ? `new${n}` : `u${n % USERS}`
    const res = await fetch(`${appUrl}/cart/${n}`, { headers: { 'x-user': user } })
    await res.arrayBuffer()
    answered++
  }
}
await Promise.all(Array.from({ length: 16 }, client))
loopDelay.disable()
clearInterval(progress)
// The last frame: the bar ends at the total.
if (tty) report()
process.stderr.write(tty ? '\n' : `${answered}/${REQUESTS} requests, done\n`)
log({ answered }, 'demo finished')

server.closeAllConnections()
server.close()
userService.closeAllConnections()
userService.close()
const stats = enrich.stats()
await enrich.close()
// Everything logged is in the file once the destination is flushed.
dest.flushSync()
const lines = readFileSync(file, 'utf8')
  .split('\n')
  .filter((l) => l.length > 0)
  .map((l) => JSON.parse(l) as Record<string, unknown>)
rmSync(dir, { recursive: true, force: true })

// A handful of lines, one per kind of moment.
const pick = (test: (l: Record<string, unknown>) => boolean): Record<string, unknown> | undefined => lines.find(test)
const problems = (l: Record<string, unknown>) => (l.enrich ?? {}) as Record<string, string[] | undefined>
const inPhase = (l: Record<string, unknown>, p: Phase): boolean => l.userService === p
const samples: Array<[string, Record<string, unknown> | undefined]> = [
  [
    'a request line with its user, served from the cache',
    pick((l) => inPhase(l, 'healthy') && l.user !== undefined && !Object.values(problems(l)).flat().includes('user')),
  ],
  [
    'the user service failing, a new user: the error is recorded, the line written',
    pick((l) => inPhase(l, 'failing') && problems(l).error?.includes('user') === true),
  ],
  [
    'the user service failing, a known user: its stale value served',
    pick((l) => inPhase(l, 'failing') && problems(l).stale?.includes('user') === true),
  ],
  [
    'the user service hanging: written at the deadline',
    pick((l) => inPhase(l, 'hanging') && problems(l).timeout?.includes('user') === true),
  ],
  [
    'the breaker open: no call made, the line written at once',
    pick((l) => problems(l).open?.includes('user') === true),
  ],
]
const GLOBAL_KEYS = new Set([
  'level',
  'pid',
  'hostname',
  'host',
  'os',
  'process',
  'system',
  'v8js',
  'nodejs',
  'service',
  'deployment',
  'container',
  'k8s',
  'cloud',
])
const show = (l: Record<string, unknown>): string => {
  const rest = Object.fromEntries(Object.entries(l).filter(([k]) => !GLOBAL_KEYS.has(k) && k !== 'time' && k !== 'msg'))
  return `    ${new Date(l.time as number).toISOString()} ${String(l.msg)} ${JSON.stringify(rest)}`
}
console.log(`\nA few of the ${lines.length} lines (every line also carries host, process, runtime and service fields):`)
const whole = samples[0]?.[1]
if (whole !== undefined) console.log(`\n  one line whole:\n    ${JSON.stringify(whole)}`)
for (const [what, line] of samples)
  console.log(`\n  ${what}:\n${line === undefined ? '    (none in this run)' : show(line)}`)

// The closing table.
const rows = stats.enrichers
  .filter((e) => e.kind !== 'function')
  .map((e) => ({
    enricher: e.name,
    'hit rate': e.cache === undefined || e.kind === 'global' ? '-' : `${(e.cache.hitRate * 100).toFixed(1)}%`,
    'stale serves': e.cache?.staleHits ?? 0,
    'cached errors': e.cache?.errorHits ?? 0,
    computes: e.cache?.computes ?? 0,
    'breaker transitions': transitions.get(e.name) ?? 0,
    timeouts: e.timeouts + e.lineTimeouts,
    'p99 compute ms': e.latencyMs.p99.toFixed(1),
  }))
console.log('\nPer enricher (globals are computed in the background, so their hit rate is not a line figure):')
console.table(rows)
console.log("  timeouts: computes that ran past the enricher's timeoutMs, plus lines written before it answered")
console.log(`requests answered          ${answered}`)
console.log(`user service requests      ${serviceRequests} (for ${answered} requests over ${USERS} users)`)
console.log(`lines logged               ${logged}`)
console.log(`lines written              ${lines.length}`)
const stall = Math.round(loopDelay.max / 1e6)
console.log(
  `largest delay added        ${stats.records.maxAddedDelayMs} ms (deadline 20 ms; longest event-loop stall ${stall} ms)`,
)
console.log(
  `lines written at deadline  ${stats.records.timedOut} (written when the 20 ms deadline passed, an enricher not answered yet; recorded "timeout" on the line)`,
)
if (lines.length !== logged) {
  console.error('lines were lost')
  process.exitCode = 1
}
