import { execFile } from 'node:child_process'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { describe, expect, it } from 'vitest'

// The build as an application loads it: fresh Node processes importing the
// package's entry points by name (they resolve to dist/, which the suite's
// global setup builds), no TypeScript loader in between.

const root = fileURLToPath(new URL('../..', import.meta.url))
const dist = pathToFileURL(`${root}dist/`).href
const fixture = fileURLToPath(new URL('../fixtures/package/loaded-files.mjs', import.meta.url))
const callsFixture = fileURLToPath(new URL('../fixtures/package/calls-at-import.mjs', import.meta.url))

function node(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, args, { cwd: root, timeout: 20_000, killSignal: 'SIGKILL' }, (error, stdout, stderr) =>
      error === null ? resolve(stdout) : reject(new Error(`${error.message}\n${stderr}`)),
    )
  })
}

async function loaded(spec: string): Promise<string[]> {
  return (JSON.parse(await node([fixture, spec])) as { files: string[] }).files
}

async function builtins(spec: string): Promise<string[]> {
  return (JSON.parse(await node([fixture, spec, '--builtins'])) as { builtins: string[] }).builtins
}

describe('the built entry points', () => {
  it('load the core entry from its own file and one chunk, which every other entry shares', async () => {
    const ours = (await loaded('pino-enrich'))
      .filter((url) => url.startsWith(dist))
      .map((url) => url.slice(dist.length))
    // Each module file costs Node's loader about a millisecond; one per source file was 42, then six.
    expect(ours).toHaveLength(2)
    expect(ours[0]).toBe('src/index.js')
    expect(ours[1]).toMatch(/^chunks\/chunk-[A-Z0-9]+\.js$/)
    const entries = ['pino-enrich/express', 'pino-enrich/fastify', 'pino-enrich/redis', 'pino-enrich/prom-client']
    for (const files of await Promise.all(entries.map(loaded))) expect(files).toContain(`${dist}${ours[1]}`)
  })

  it('load no package with the core entry but lru-cache, the storage of every cache', async () => {
    const others = (await loaded('pino-enrich')).filter((url) => !url.startsWith(dist))
    expect(others.map((url) => url.match(/node_modules\/([^/]+)\//)?.[1])).toEqual(['lru-cache'])
  })

  it('load no Node built-in with the core entry that pino, lru-cache or any ES module file does not load already', async () => {
    const [core, lru, empty] = await Promise.all([
      builtins('pino-enrich'),
      builtins('lru-cache'),
      builtins('./empty.mjs'),
    ])
    const expected = new Set([...lru, ...empty])
    expect(core.filter((m) => !expected.has(m))).toEqual([])
  })

  it('make the default pipeline at import but not its working part, which its first use makes', async () => {
    type Counts = Record<string, number>
    const names = ['Pipeline', 'Enrichment', 'Registry', 'Globals', 'Collector']
    const { atImport, afterUse } = JSON.parse(await node([callsFixture, ...names])) as {
      atImport: Counts
      afterUse: Counts
    }
    // Importing the core entry runs what every application pays for; the rest waits for a pipeline's first use.
    expect(atImport).toEqual({ Pipeline: 1, Enrichment: 0, Registry: 0, Globals: 0, Collector: 0 })
    expect(afterUse).toEqual({ Pipeline: 0, Enrichment: 1, Registry: 1, Globals: 1, Collector: 1 })
  })

  it('share one copy of the code two entries use: the Express entry refuses a context the core entry made', async () => {
    const code = `
      import { createPipeline } from 'pino-enrich'
      import { expressContext } from 'pino-enrich/express'
      const enrich = createPipeline({ context: () => ({}) })
      try {
        expressContext(enrich)
        console.log('accepted')
      } catch (e) {
        console.log(e instanceof TypeError ? 'refused' : String(e))
      }
    `
    expect((await node(['--input-type=module', '-e', code])).trim()).toBe('refused')
  })
})
