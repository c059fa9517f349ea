import { describe, expect, it } from 'vitest'
import { runChild } from '../helpers/child.js'
import { refusedUrl } from '../helpers/mode-server.js'

describe('built-in enrichers in a real process', () => {
  it('none of them keeps the process alive, even with the pipeline never closed', async () => {
    const url = await refusedUrl()
    const result = await runChild('enrichers-exit.ts', [], {
      timeoutMs: 15_000,
      env: {
        PINO_ENRICH_AWS_METADATA_URL: url,
        PINO_ENRICH_GCP_METADATA_URL: url,
        PINO_ENRICH_AZURE_METADATA_URL: url,
      },
    })
    expect(result.signal).toBeNull()
    expect(result.code).toBe(0)
    expect(result.stderr).toMatch(/^exit /m)
    const [line] = result.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(line).toMatchObject({
      msg: 'enriched',
      reqId: 'r-1',
      host: { arch: expect.any(String) },
      process: { runtime: { name: 'nodejs' } },
      system: { memory: { limit: expect.any(Number) } },
      v8js: { memory: { heap: { used: expect.any(Number) } } },
      nodejs: { eventloop: { utilization: expect.any(Number) } },
      service: { name: 'exit-test' },
      ready: { failed: [], pending: [] },
    })
    expect(line).not.toHaveProperty('cloud')
    expect(line).not.toHaveProperty('enrich')
  })
})
