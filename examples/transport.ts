// Enrichment off the main thread: pino-enrich/transport as the first step of a
// pino transport pipeline, pino/file as the last. The worker loads the package
// as published, from dist/: run `npm run build && npx tsx examples/transport.ts`.
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { createPipeline } from 'pino-enrich'

const dir = mkdtempSync(join(tmpdir(), 'pino-enrich-example-'))
const destination = join(dir, 'app.ndjson')

// The main thread only captures the request context into each line.
const enrich = createPipeline()
const transport = pino.transport({
  pipeline: [
    {
      target: 'pino-enrich/transport',
      // A line waits at most deadlineMs for its lookups: generous here, so that a
      // busy machine still shows the user (a service sets its latency budget).
      options: { enrichers: new URL('./transport-enrichers.mjs', import.meta.url).href, deadlineMs: 500 },
    },
    { target: 'pino/file', options: { destination } },
  ],
})
transport.on('error', (err: Error) => console.error('transport failed:', err.message))
// The worker has loaded its enrichers and warmed the global ones.
await once(transport, 'ready')
const logger = pino(enrich.pinoOptions({ mode: 'transport' }), transport)

logger.info('service started')
for (const { requestId, userId } of [
  { requestId: 'req-1', userId: 'user-17' },
  { requestId: 'req-2', userId: 'user-42' },
]) {
  enrich.context.run({ requestId, userId }, () => logger.info({ path: '/cart' }, 'request handled'))
}

// At exit pino ends the transport and waits for the worker to write every
// line through the pipeline; this handler, registered after pino's, runs then.
process.on('exit', () => {
  process.stdout.write(readFileSync(destination, 'utf8'))
  rmSync(dir, { recursive: true, force: true })
})
