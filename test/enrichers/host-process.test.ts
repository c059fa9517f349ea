import os from 'node:os'
import pino from 'pino'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { hostEnricher, processEnricher } from '../../enrichers/index.js'
import { trackPipelines } from '../helpers/pipelines.js'
import { sink } from '../helpers/sink.js'

// A switch for os.userInfo, which throws for a uid without a passwd entry (common in containers).
const osState = vi.hoisted(() => ({ userInfoThrows: false }))
vi.mock('node:os', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:os')>()
  const userInfo = ((options?: { encoding: 'buffer' }) => {
    if (osState.userInfoThrows) throw Object.assign(new Error('uv_os_get_passwd returned ENOENT'), { code: 'ENOENT' })
    return real.userInfo(options as { encoding: 'buffer' })
  }) as typeof real.userInfo
  return { ...real, default: { ...real, userInfo }, userInfo }
})

const { pipeline, closePipelines } = trackPipelines()

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] })
})

afterEach(async () => {
  await closePipelines()
  vi.useRealTimers()
  osState.userInfoThrows = false
})

const OTEL_ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', ia32: 'x86', arm: 'arm32' }

describe('hostEnricher', () => {
  it('writes host.arch in OpenTelemetry terms and os.type/os.version, not the host name pino writes', async () => {
    const p = pipeline({ enrichers: [hostEnricher()] })
    await p.ready()
    expect(p.snapshot()).toEqual({
      host: { arch: OTEL_ARCH[os.arch()] ?? os.arch() },
      os: { type: process.platform === 'win32' ? 'windows' : process.platform, version: os.release() },
    })
  })

  it('writes host.name when asked, and leaves os out when asked', async () => {
    const p = pipeline({ enrichers: [hostEnricher({ includeName: true, includeOs: false })] })
    await p.ready()
    expect(p.snapshot()).toEqual({ host: { arch: expect.any(String), name: os.hostname() } })
  })

  it('is computed once and never goes stale', async () => {
    const p = pipeline({ enrichers: [hostEnricher()] })
    await p.ready()
    const out = sink()
    const log = pino(p.pinoOptions(), out)
    for (let i = 0; i < 100; i++) log.info('line')
    await vi.advanceTimersByTimeAsync(7 * 86_400_000)
    log.info('a week later')
    expect(p.stats().enrichers[0]?.cache?.computes).toBe(1)
    expect(out.lines().at(-1)).toMatchObject({ host: { arch: expect.any(String) }, msg: 'a week later' })
    expect(out.lines().at(-1)?.enrich).toBeUndefined()
  })

  it('is written once per line beside pino’s own hostname, never as a duplicate key', async () => {
    const p = pipeline({ enrichers: [hostEnricher(), processEnricher()] })
    await p.ready()
    const out = sink()
    pino(p.pinoOptions(), out).info('one')
    const raw = out.chunks.join('')
    for (const key of ['"host"', '"os"', '"process"', '"hostname"', '"pid"']) {
      expect(raw.split(key).length - 1, key).toBe(1)
    }
    expect(out.lines()[0]).toMatchObject({ hostname: os.hostname(), pid: process.pid })
  })
})

describe('processEnricher', () => {
  it('writes the runtime, executable, command and owner, not the pid pino writes', async () => {
    const p = pipeline({ enrichers: [processEnricher()] })
    await p.ready()
    const { process: proc } = p.snapshot() as { process: Record<string, unknown> }
    expect(proc).toEqual({
      executable: { name: expect.stringMatching(/^node/), path: process.execPath },
      command: process.argv[1],
      owner: os.userInfo().username,
      runtime: { name: 'nodejs', version: process.versions.node, description: 'Node.js' },
    })
  })

  it('adds pid and command_args when asked, and leaves the owner out when asked', async () => {
    const p = pipeline({ enrichers: [processEnricher({ includePid: true, includeArgs: true, includeOwner: false })] })
    await p.ready()
    const { process: proc } = p.snapshot() as { process: Record<string, unknown> }
    expect(proc.pid).toBe(process.pid)
    expect(proc.command_args).toEqual([process.execPath, ...process.execArgv, ...process.argv.slice(1)])
    expect(proc).not.toHaveProperty('owner')
  })

  it('leaves the owner out when the uid has no user name, without failing', async () => {
    osState.userInfoThrows = true
    const p = pipeline({ enrichers: [processEnricher()] })
    expect(await p.ready()).toMatchObject({ ready: ['process'] })
    expect(p.snapshot().process).not.toHaveProperty('owner')
  })
})
