// One burst through the enrichment transport, in a fresh process: LINES lines
// of USERS users logged as fast as pino takes them, yielding every 1,000, to a
// file in the worker; then every line is read back. Prints one JSON object.
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import pino from 'pino'
import { createPipeline } from '../src/index.js'

const LINES = Number(process.env.BENCH_BURST_LINES ?? 80_000)
const USERS = 300
const dir = mkdtempSync(join(tmpdir(), 'pino-enrich-burst-'))
const out = join(dir, 'out.log')
const enrichers = fileURLToPath(new URL('./burst-enrichers.mjs', import.meta.url))
const transport = pino.transport({
  pipeline: [
    { target: 'pino-enrich/transport', options: { enrichers, deadlineMs: 10 } },
    { target: 'pino/file', options: { destination: out } },
  ],
})
await once(transport, 'ready')
const log = pino(createPipeline().pinoOptions({ mode: 'transport' }), transport)
const started = performance.now()
for (let i = 0; i < LINES; i++) {
  log.info({ uid: `u${i % USERS}` }, 'req')
  if (i % 1_000 === 999) await new Promise((resolve) => setImmediate(resolve))
}
// The worker is unref'd: hold the loop until it has closed.
const hold = setInterval(() => {}, 1_000)
const closed = once(transport, 'close')
transport.end()
await closed
clearInterval(hold)
const ms = performance.now() - started
const seen = new Set<string>()
let lines = 0
let withoutAfterFirst = 0
let timedOut = 0
for (const text of readFileSync(out, 'utf8').split('\n')) {
  if (text.length === 0) continue
  const line = JSON.parse(text) as { uid: string; user?: unknown; enrich?: { timeout?: string[] } }
  lines++
  if (line.enrich?.timeout !== undefined) timedOut++
  if (line.user === undefined && seen.has(line.uid)) withoutAfterFirst++
  seen.add(line.uid)
}
rmSync(dir, { recursive: true, force: true })
process.stdout.write(`${JSON.stringify({ ms, lines, withoutAfterFirst, timedOut })}\n`)
