import { execFile } from 'node:child_process'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { describe, expect, it } from 'vitest'

// The build as an application loads it: fresh Node processes importing the
// package's entry points by name (they resolve to dist/, which the suite's
// global setup builds), no TypeScript loader in between.

const root = fileURLToPath(new URL('../..', import.meta.url))
const dist = pathToFileURL(`${root}dist/`).href
const fixture = fileURLToPath(new URL('../fixtures/package/loaded-files.mjs', import.meta.url))

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

  it('load no package with the core entry: lru-cache is loaded by the first cache built, not by the import', async () => {
    const others = (await loaded('pino-enrich')).filter((url) => !url.startsWith(dist))
    expect(others).toEqual([])
  })

  it('load no Node built-in with the core entry that pino or any ES module file does not load already', async () => {
    const [core, empty] = await Promise.all([builtins('pino-enrich'), builtins('./empty.mjs')])
    const expected = new Set(empty)
    expect(core.filter((m) => !expected.has(m))).toEqual([])
  })

  it('load lru-cache, and the built-in it loads, on first use: with the first enricher registered or the first SmartCache built', async () => {
    // require.cache lists the CommonJS files loaded; the hooks of loaded-files.mjs would not see them.
    const run = (firstUse: string) =>
      node([
        '--input-type=module',
        '-e',
        `
          import { createRequire } from 'node:module'
          const cache = createRequire(import.meta.url).cache
          const loaded = () => [
            Object.keys(cache).some((f) => f.includes('/node_modules/lru-cache/')),
            process.moduleLoadList.includes('NativeModule perf_hooks'),
          ]
          const { SmartCache, createPipeline, defineEnricher } = await import('pino-enrich')
          const seen = [loaded()]
          const enrich = createPipeline()
          seen.push(loaded())
          ${firstUse}
          seen.push(loaded())
          console.log(JSON.stringify(seen))
        `,
      ]).then((out) => JSON.parse(out) as boolean[][])
    const [registered, built] = await Promise.all([
      run(`enrich.register(defineEnricher({ name: 'a', key: () => 'k', compute: () => ({ a: 1 }) }))`),
      run(`await new SmartCache({ max: 2 }).getOrCompute('k', () => 1)`),
    ])
    const before = [false, false]
    expect(registered).toEqual([before, before, [true, true]])
    expect(built).toEqual([before, before, [true, true]])
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
