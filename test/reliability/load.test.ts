import http from 'node:http'
import express from 'express'
import pino from 'pino'
import { describe, expect, it } from 'vitest'
import { expressContext } from '../../src/context/express.js'
import { enrichmentOf } from '../../src/core/enrichment.js'
import { createPipeline, defineEnricher } from '../../src/index.js'
import { runChild } from '../helpers/child.js'
import { figures, resultOf } from '../helpers/figures.js'
import { closeServer, httpClient, listen } from '../helpers/http.js'
import { sink } from '../helpers/sink.js'

// Both load runs go through a deferred logger in a child process of their own
// (test/fixtures/reliability/load-bounds.ts), so memory is the library's and not
// the test runner's. No time passes in them but the computes' own turns; their
// deadline is set out of a loaded machine's reach, so that a stall cannot time
// out computes and open the breaker (no timeout is asserted, to say so if one does).
// Growth is judged by the heap after a full GC (run with --expose-gc): RSS is
// the allocator's business too, and on Node 22 and 24 it stays 100 MB and more
// above its baseline after GC while the heap has grown by 3-4 MB. RSS is
// reported, not judged.
// The children's own runs are bounded (runChild kills at 290 s); vitest's default 30 s
// per test is less than a loaded machine needs for a million lines (over 120 s at load 30).
describe('load and bounds (child processes)', { timeout: 300_000 }, () => {
  it('1,000,000 distinct user ids through an enricher with max 10,000: entries and in-flight computes within bounds at every sample, heap after GC within baseline + 20 MB (RSS reported)', async (ctx) => {
    const r = await runChild('reliability/load-bounds.ts', ['ids', '1000000'], {
      timeoutMs: 290_000,
      nodeArgs: ['--expose-gc'],
    })
    expect(r.stderr).toBe('')
    const res = resultOf(r.stdout)
    figures(ctx, {
      lines: res.written as number,
      computes: res.computes as number,
      timeouts: res.timeouts as number,
      samples: res.samples as number,
      maxEntries: res.maxEntries as number,
      maxInflight: res.maxInflight as number,
      evictions: res.evictions as number,
      peakRssMB: res.peakRssMB as number,
      rssGrowthAfterGcMB: res.rssGrowthMB as number,
      heapGrowthAfterGcMB: res.heapGrowthMB as number,
      seconds: (res.elapsedMs as number) / 1000,
    })
    expect(r.code).toBe(0)
    expect(res.written).toBe(1_000_000)
    expect(res.timeouts).toBe(0)
    expect(res.breaker).toBe('closed')
    // Nearly every id was computed (the bound is on entries, not on work).
    expect(res.computes as number).toBeGreaterThan(900_000)
    expect(res.samples as number).toBeGreaterThanOrEqual(200)
    expect(res.maxEntries).toBeLessThanOrEqual(10_000)
    expect(res.maxInflight).toBeLessThanOrEqual(100)
    expect(res.maxPending as number).toBeLessThanOrEqual(10_000)
    // 10,000 small entries: a few MB of heap; keeping every id would be ~100 MB.
    expect(res.heapGrowthMB as number).toBeLessThan(20)
  })

  it('100,000 distinct 8 KB keys from a header: hashed above maxKeyLength, entries bounded, heap after GC within baseline + 20 MB (RSS reported)', async (ctx) => {
    const r = await runChild('reliability/load-bounds.ts', ['keys', '100000'], {
      timeoutMs: 290_000,
      nodeArgs: ['--expose-gc'],
    })
    expect(r.stderr).toBe('')
    const res = resultOf(r.stdout)
    figures(ctx, {
      lines: res.written as number,
      computes: res.computes as number,
      timeouts: res.timeouts as number,
      maxEntries: res.maxEntries as number,
      hashedKeys: res.hashedKeys as number,
      peakRssMB: res.peakRssMB as number,
      rssGrowthAfterGcMB: res.rssGrowthMB as number,
      heapGrowthAfterGcMB: res.heapGrowthMB as number,
      seconds: (res.elapsedMs as number) / 1000,
    })
    expect(r.code).toBe(0)
    expect(res.written).toBe(100_000)
    expect(res.timeouts).toBe(0)
    expect(res.breaker).toBe('closed')
    expect(res.computes as number).toBeGreaterThan(90_000)
    expect(res.maxEntries).toBeLessThanOrEqual(10_000)
    expect(res.maxInflight).toBeLessThanOrEqual(100)
    // Every stored key is a digest, none the 8 KB value.
    expect(res.hashedKeys).toBe(res.entriesAtEnd)
    // 10,000 unhashed 8 KB keys alone would hold 80 MB of heap.
    expect(res.heapGrowthMB as number).toBeLessThan(20)
  })

  it('8 KB header values through Express and expressContext (real HTTP): each request logged with its lookup, the cache holds digests only', async (ctx) => {
    const enrich = createPipeline({ deadlineMs: 100 })
    enrich.register(
      defineEnricher({
        name: 'tenant',
        key: (c) => c.context?.userId as string | undefined,
        compute: (key: string) => ({ tenant: { keyLength: key.length } }),
      }),
    )
    const out = sink()
    const log = pino(enrich.pinoOptions({ mode: 'deferred' }), out)
    const app = express()
    app.use(expressContext(enrich, { user: (req) => req.headers['x-tenant'] as string | undefined }))
    app.get('/', (_req, res) => {
      log.info('handled')
      res.end('ok')
    })
    const server = http.createServer(app)
    const base = await listen(server)
    const client = httpClient(16)
    try {
      const filler = 't'.repeat(8 * 1024 - 16)
      const statuses = await Promise.all(
        Array.from({ length: 300 }, (_, i) =>
          client.request(`${base}/`, { headers: { 'x-tenant': `${String(i).padStart(8, '0')}:${filler}` } }),
        ),
      )
      await enrich.flush()
      const lines = out.lines()
      const slot = enrichmentOf(enrich).registry.slots[0]
      const entries = enrich.stats().enrichers[0]?.cache?.totalEntries ?? 0
      const hashed = slot?.cache?.invalidatePattern('sha256:*') ?? 0
      figures(ctx, { requests: statuses.length, lines: lines.length, entries, hashed })
      expect(statuses.every((s) => s.status === 200)).toBe(true)
      expect(lines).toHaveLength(300)
      expect(lines.every((l) => (l.tenant as { keyLength?: number } | undefined)?.keyLength === 8 * 1024 - 7)).toBe(
        true,
      )
      expect(entries).toBe(300)
      expect(hashed).toBe(300)
      expect(out.chunks.join('')).not.toContain(filler.slice(0, 100))
    } finally {
      client.close()
      await closeServer(server)
      await enrich.close()
    }
  })
})
