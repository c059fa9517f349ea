import { execFile } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gunzipSync } from 'node:zlib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

// What a user installs: the tarball `npm pack` makes, installed into two
// throwaway projects (an ESM TypeScript app and a CommonJS app) that import
// every entry point of package.json `exports`.
//
// `npm pack` runs in a copy of the repository, not in it: its prepack script
// deletes dist/ and rebuilds, and other test files (and other test runs in the
// same checkout) load dist/ meanwhile. The copy holds everything but what
// .gitignore lists, so `files` is tested against the real decoys (test/,
// examples/, bench/, docs/, sources); node_modules is a link to the repo's.

const root = fileURLToPath(new URL('../..', import.meta.url))
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  name: string
  exports: Record<string, unknown>
  devDependencies: Record<string, string>
}
const NOT_COPIED = new Set(['node_modules', 'dist', 'coverage', '.git', '.tmp'])
const SHIPPED =
  /^package\/(package\.json|README\.md|LICENSE|dist\/(src|enrichers)\/[a-z0-9/-]+\.(js|d\.ts)|dist\/chunks\/chunk-[A-Z0-9]+\.js)$/
/** The code entries share, bundled once (scripts/build.mjs); named by esbuild after their content. */
const CHUNK = /^package\/dist\/chunks\//

/** Every import specifier of the package: one per `exports` key, but package.json. */
const specifiers = Object.keys(pkg.exports)
  .filter((key) => key !== './package.json')
  .map((key) => (key === '.' ? pkg.name : `${pkg.name}/${key.slice(2)}`))

// The whole file, pack and installs included, is bounded by this deadline.
const deadline = Date.now() + 420_000
const work = mkdtempSync(join(tmpdir(), 'pino-enrich-package-'))
afterAll(() => rmSync(work, { recursive: true, force: true }), 60_000)

interface Output {
  stdout: string
  stderr: string
}

/** Runs a command to completion; rejects with its output on a non-zero exit or at its timeout. */
function run(command: string, args: string[], cwd: string, timeoutMs = 120_000): Promise<Output> {
  const timeout = Math.max(1_000, Math.min(timeoutMs, deadline - Date.now()))
  return new Promise((resolve, reject) => {
    execFile(
      command,
      args,
      {
        cwd,
        timeout,
        killSignal: 'SIGKILL',
        maxBuffer: 32 * 1024 * 1024,
        // npm is npm.cmd on Windows, which only a shell runs.
        shell: process.platform === 'win32' && command === 'npm',
      },
      (error, stdout, stderr) => {
        if (error === null) return resolve({ stdout, stderr })
        const why = error.killed ? `killed after ${timeout} ms` : `exit code ${String(error.code)}`
        reject(
          new Error(`${command} ${args.join(' ')} (in ${cwd}): ${why}\n--- stdout\n${stdout}\n--- stderr\n${stderr}`),
        )
      },
    )
  })
}

/** The regular files of a .tgz, read with no tool but zlib: ustar headers, pax `path` records honoured. */
function tarFiles(file: string): string[] {
  const tar = gunzipSync(readFileSync(file))
  const files: string[] = []
  let paxPath: string | undefined
  for (let at = 0; at + 512 <= tar.length; ) {
    const header = tar.subarray(at, at + 512)
    if (header.every((byte) => byte === 0)) break
    const field = (start: number, length: number): string =>
      header.toString('utf8', start, start + length).replace(/\0[\s\S]*$/, '')
    const size = Number.parseInt(field(124, 12).trim() || '0', 8)
    const type = field(156, 1)
    const body = tar.subarray(at + 512, at + 512 + size)
    const prefix = field(345, 155)
    const name = paxPath ?? (prefix === '' ? field(0, 100) : `${prefix}/${field(0, 100)}`)
    if (type === 'x') {
      paxPath = /\d+ path=([^\n]*)\n/.exec(body.toString('utf8'))?.[1]
    } else {
      paxPath = undefined
      if (type === '0' || type === '') files.push(name)
    }
    at += 512 + Math.ceil(size / 512) * 512
  }
  return files.sort()
}

/**
 * What the build emits, chunks aside: a .d.ts per .ts file of src/ and
 * enrichers/, and a .js per entry point of package.json `exports`.
 */
function expectedFiles(dir: string): string[] {
  const emitted: string[] = []
  for (const top of ['src', 'enrichers']) {
    for (const entry of readdirSync(join(dir, top), { recursive: true, withFileTypes: true })) {
      if (!entry.isFile() || !entry.name.endsWith('.ts') || entry.name.endsWith('.d.ts')) continue
      const path = relative(dir, join(entry.parentPath, entry.name)).split('\\').join('/').slice(0, -'.ts'.length)
      emitted.push(`package/dist/${path}.d.ts`)
    }
  }
  for (const target of Object.values(pkg.exports)) {
    const file = typeof target === 'string' ? target : (target as { default: string }).default
    if (file.endsWith('.js')) emitted.push(`package/${file.slice(2)}`)
  }
  return [...emitted, 'package/LICENSE', 'package/README.md', 'package/package.json'].sort()
}

function write(dir: string, files: Record<string, string>): void {
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true })
    writeFileSync(join(dir, name), text)
  }
}

// --- the ESM TypeScript app -------------------------------------------------

const esmEntries = `${specifiers.map((s, i) => `import * as entry${i} from '${s}'`).join('\n')}

/** Every entry point of pino-enrich, generated from its package.json \`exports\`. */
export const entries: Record<string, object> = {
${specifiers.map((s, i) => `  '${s}': entry${i},`).join('\n')}
}
`

const esmTransportEnrichers = `import { defineEnricher, type RequestContext } from 'pino-enrich'

export default [
  defineEnricher({ name: 'service', compute: () => ({ service: { name: 'esm-app' } }) }),
  defineEnricher<string, RequestContext>({
    name: 'user',
    key: (ctx) => ctx.context?.userId,
    compute: async (id) => ({ user: { id } }),
  }),
]
`

const esmMain = `import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import express from 'express'
import Fastify from 'fastify'
import pino from 'pino'
import { createPipeline, defineEnricher, isEnrichError, type RequestContext, TimeoutError } from 'pino-enrich'
import { hostEnricher, requestEnricher } from 'pino-enrich/enrichers'
import { expressContext } from 'pino-enrich/express'
import { fastifyContext } from 'pino-enrich/fastify'
import enrichTransport, { type TransportOptions } from 'pino-enrich/transport'
import { entries } from './entries.js'

type Line = Record<string, any>

for (const [specifier, namespace] of Object.entries(entries)) {
  assert.ok(Object.keys(namespace).length > 0, \`\${specifier} exports nothing\`)
}
assert.equal(typeof enrichTransport, 'function')
assert.equal(isEnrichError(new TimeoutError('late', 5)), true)

async function until(done: () => boolean): Promise<void> {
  const giveUp = Date.now() + 5_000
  while (!done()) {
    if (Date.now() > giveUp) throw new Error('timed out waiting for a log line')
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

// A pipeline, one line through pino into memory.
const lines: Line[] = []
const memory = new Writable({
  write(chunk, _encoding, callback) {
    for (const text of String(chunk).split('\\n')) if (text !== '') lines.push(JSON.parse(text) as Line)
    callback()
  },
})
const enrich = createPipeline({ deadlineMs: 2_000, enrichers: [hostEnricher(), requestEnricher()] })
enrich.register(
  defineEnricher<string, RequestContext>({
    name: 'user',
    key: (ctx) => ctx.context?.userId,
    compute: async (id) => ({ user: { id, plan: 'pro' } }),
    cache: { ttlMs: 60_000 },
  }),
)
await enrich.ready()
const logger = pino(enrich.pinoOptions({ mode: 'deferred' }), memory)
enrich.context.run({ requestId: 'req-1', userId: 'u-7' }, () => logger.info({ path: '/cart' }, 'hello'))
await until(() => lines.length === 1)
const line = lines[0] as Line
assert.equal(line.msg, 'hello')
assert.equal(line.path, '/cart')
assert.equal(line.reqId, 'req-1')
assert.equal(line.userId, 'u-7')
assert.deepEqual(line.user, { id: 'u-7', plan: 'pro' })
assert.equal(typeof line.host?.arch, 'string')

// Express: the middleware puts each request in a context.
const app = express()
app.use(expressContext(enrich))
app.get('/users/:id', (_req, res) => {
  logger.info('in express')
  res.json({ ok: true })
})
const server = app.listen(0, '127.0.0.1')
await once(server, 'listening')
const response = await fetch(\`http://127.0.0.1:\${(server.address() as AddressInfo).port}/users/1\`)
assert.equal(response.status, 200)
await until(() => lines.some((l) => l.msg === 'in express'))
const expressLine = lines.find((l) => l.msg === 'in express') as Line
assert.equal(expressLine.reqMethod, 'GET')
assert.equal(expressLine.reqRoute, '/users/:id')
assert.equal(typeof expressLine.reqId, 'string')
server.close()

// Fastify: the plugin registers, request.log lines are enriched.
const fastify = Fastify({ loggerInstance: logger })
await fastify.register(fastifyContext, { enrich })
fastify.get('/ping', async (request) => {
  request.log.info('in fastify')
  return { ok: true }
})
const injected = await fastify.inject({ method: 'GET', url: '/ping' })
assert.equal(injected.statusCode, 200)
await until(() => lines.some((l) => l.msg === 'in fastify'))
assert.equal((lines.find((l) => l.msg === 'in fastify') as Line).reqMethod, 'GET')
await fastify.close()

// The transport: pino resolves 'pino-enrich/transport' from this app and runs it in a worker.
const dir = mkdtempSync(join(tmpdir(), 'esm-app-'))
const destination = join(dir, 'out.ndjson')
const options: TransportOptions = {
  enrichers: new URL('./transport-enrichers.js', import.meta.url).href,
  destination,
  deadlineMs: 2_000,
}
const transport = pino.transport<TransportOptions>({ target: 'pino-enrich/transport', options })
const viaWorker = pino(enrich.pinoOptions({ mode: 'transport' }), transport)
enrich.context.run({ requestId: 'req-2', userId: 'u-8' }, () => viaWorker.info('via transport'))
// pino unrefs the worker, so a pending 'close' alone would not hold the event
// loop open (node would exit with 13, top-level await unsettled): a watchdog does.
const watchdog = setTimeout(() => {
  console.error('the transport did not close within 10 s')
  process.exit(1)
}, 10_000)
const closed = once(transport, 'close')
transport.end()
await closed
clearTimeout(watchdog)
const written = readFileSync(destination, 'utf8').trim().split('\\n').map((text) => JSON.parse(text) as Line)
rmSync(dir, { recursive: true, force: true })
assert.equal(written.length, 1)
assert.equal(written[0]?.msg, 'via transport')
assert.deepEqual(written[0]?.service, { name: 'esm-app' })
assert.deepEqual(written[0]?.user, { id: 'u-8' })

await enrich.close()
console.log(JSON.stringify({ ok: true, entries: Object.keys(entries), line }))
`

const esmTsconfig = {
  compilerOptions: {
    target: 'ES2022',
    lib: ['ES2023'],
    module: 'nodenext',
    moduleResolution: 'nodenext',
    strict: true,
    // The package's declarations, and what they import, are checked too.
    skipLibCheck: false,
    types: ['node'],
    rootDir: '.',
    outDir: 'out',
  },
  // One program for the app and README's snippets: the package's types are checked once.
  include: ['src', 'readme'],
}

// --- the CommonJS app ------------------------------------------------------

const cjsMain = `'use strict'
const assert = require('node:assert/strict')
const { Writable } = require('node:stream')

// require(esm): on by default from Node 20.19 and 22.12.
assert.equal(process.features.require_module, true, 'this Node cannot require() ES modules')

const specifiers = ${JSON.stringify(specifiers)}
for (const specifier of specifiers) {
  assert.ok(Object.keys(require(specifier)).length > 0, specifier + ' exports nothing')
}

const pino = require('pino')
const { createPipeline, defineEnricher } = require('pino-enrich')
const { hostEnricher, requestEnricher } = require('pino-enrich/enrichers')
const { expressContext } = require('pino-enrich/express')
const { fastifyContext } = require('pino-enrich/fastify')
const transport = require('pino-enrich/transport')
assert.equal(typeof expressContext, 'function')
assert.equal(typeof fastifyContext, 'function')
assert.equal(typeof transport.default, 'function')

async function main() {
  // One module instance whichever way it is loaded: no dual-package hazard.
  assert.equal((await import('pino-enrich')).createPipeline, createPipeline)

  const lines = []
  const memory = new Writable({
    write(chunk, _encoding, callback) {
      for (const text of String(chunk).split('\\n')) if (text !== '') lines.push(JSON.parse(text))
      callback()
    },
  })
  const enrich = createPipeline({ enrichers: [hostEnricher(), requestEnricher()] })
  enrich.register(
    defineEnricher({ name: 'service', compute: () => ({ service: { name: 'cjs-app' } }) }),
  )
  await enrich.ready()
  const logger = pino(enrich.pinoOptions(), memory)
  enrich.context.run({ requestId: 'req-1' }, () => logger.info('hello'))
  assert.equal(lines.length, 1)
  assert.equal(lines[0].msg, 'hello')
  assert.equal(lines[0].reqId, 'req-1')
  assert.deepEqual(lines[0].service, { name: 'cjs-app' })
  assert.equal(typeof lines[0].host.arch, 'string')
  await enrich.close()
  console.log(JSON.stringify({ ok: true, specifiers, line: lines[0] }))
}

main().catch((error) => {
  console.error(error)
  process.exitCode = 1
})
`

// --- README's TypeScript snippets, in the ESM app ---------------------------

/** Every ```ts block of README.md, in order. */
const snippets = [...readFileSync(join(root, 'README.md'), 'utf8').matchAll(/^```ts\n([\s\S]*?)^```/gm)].map(
  (m) => m[1] as string,
)

// What README says the snippets leave to the reader: the `enrich` of the
// first one, and stand-ins for the reader's own code.
const readmeReader = `interface Tenant { id: string; name: string }
declare const id: string
declare const users: { get(id: string, options: { signal: AbortSignal }): Promise<{ id: string; email: string }> }
declare const db: { tenant(id: string, options: { signal: AbortSignal }): Promise<Tenant> }
declare function pay(): Promise<void>
declare const enrich: import('pino-enrich').Pipeline
`

// --- the CommonJS TypeScript app -------------------------------------------

const cjsTsMain = `import pino from 'pino'
import { createPipeline } from 'pino-enrich'

const enrich = createPipeline()
const logger = pino(enrich.pinoOptions())
enrich.context.run({ requestId: 'req-1' }, () => logger.info('from a CommonJS TypeScript app'))
`
const cjsTsconfig = (module: string) => ({
  compilerOptions: {
    target: 'ES2022',
    module,
    moduleResolution: module,
    strict: true,
    skipLibCheck: true,
    types: [],
    rootDir: 'ts',
    outDir: 'out',
  },
  include: ['ts'],
})

// --------------------------------------------------------------------------

let tarball = ''
let packed: string[] = []
let expected: string[] = []
const esmApp = join(work, 'esm-app')
const cjsApp = join(work, 'cjs-app')

describe('the published package', () => {
  beforeAll(async () => {
    const copy = join(work, 'repo')
    cpSync(root, copy, { recursive: true, filter: (path) => !NOT_COPIED.has(relative(root, path)) })
    symlinkSync(join(root, 'node_modules'), join(copy, 'node_modules'), 'junction')
    // --ignore-scripts=false: prepack and prepare run even if the user's npm config says otherwise.
    const { stdout } = await run(
      'npm',
      ['pack', '--json', '--ignore-scripts=false', '--pack-destination', work],
      copy,
      240_000,
    )
    const report = JSON.parse(stdout.slice(stdout.indexOf('['))) as Array<{ filename: string }>
    tarball = join(work, basename(report[0]?.filename ?? 'missing.tgz'))
    packed = tarFiles(tarball)
    expected = expectedFiles(copy)

    write(esmApp, {
      'package.json': JSON.stringify({ name: 'esm-app', private: true, type: 'module' }),
      'tsconfig.json': JSON.stringify(esmTsconfig, null, 2),
      'src/entries.ts': esmEntries,
      'src/transport-enrichers.ts': esmTransportEnrichers,
      'src/main.ts': esmMain,
    })
    write(esmApp, {
      'readme/reader.d.ts': readmeReader,
      ...Object.fromEntries(snippets.map((text, i) => [`readme/snippet-${i + 1}.ts`, text])),
    })
    write(cjsApp, {
      'package.json': JSON.stringify({ name: 'cjs-app', private: true, type: 'commonjs' }),
      'index.js': cjsMain,
      'tsconfig.json': JSON.stringify(cjsTsconfig('nodenext'), null, 2),
      'tsconfig.node16.json': JSON.stringify(cjsTsconfig('node16'), null, 2),
      'ts/main.ts': cjsTsMain,
    })
    // The peers at the versions the repo is developed against; the npm cache is warm from `npm ci`.
    const peers = ['pino', 'express', 'fastify', 'ioredis', 'prom-client'].map(
      (name) => `${name}@${pkg.devDependencies[name]}`,
    )
    // README's snippet for a context the application already keeps uses this plugin.
    const snippetDeps = ['@fastify/request-context'].map((name) => `${name}@${pkg.devDependencies[name]}`)
    const types = ['@types/node', '@types/express'].map((name) => `${name}@${pkg.devDependencies[name]}`)
    const install = ['install', tarball, '--no-audit', '--no-fund', '--prefer-offline']
    await Promise.all([
      run('npm', [...install, ...peers, ...types, ...snippetDeps], esmApp),
      run('npm', [...install, ...peers], cjsApp),
    ])
  }, 360_000)

  it('packs the build of src/ and enrichers/, README.md, LICENSE and package.json, nothing else', () => {
    for (const file of packed) expect(file).toMatch(SHIPPED)
    expect(packed.filter((file) => !CHUNK.test(file))).toEqual(expected)
    expect(packed.filter((file) => CHUNK.test(file)).length).toBeGreaterThan(0)
    const manifest = JSON.parse(readFileSync(join(cjsApp, 'node_modules/pino-enrich/package.json'), 'utf8')) as {
      exports: Record<string, string | Record<string, string>>
    }
    const targets = Object.values(manifest.exports).flatMap((t) => (typeof t === 'string' ? [t] : Object.values(t)))
    for (const target of targets) expect(packed).toContain(`package/${target.slice(2)}`)
  })

  it('ships no @internal name in its .d.ts files: what README does not list is private, on #fields or symbols', () => {
    const installed = join(cjsApp, 'node_modules/pino-enrich')
    const declarations = packed.filter((f) => f.endsWith('.d.ts')).map((f) => f.slice('package/'.length))
    expect(declarations.length).toBeGreaterThan(10)
    const tagged = declarations.filter((f) => readFileSync(join(installed, f), 'utf8').includes('@internal'))
    expect(tagged).toEqual([])
  })

  it('publishes repository, homepage and bugs, and no script that runs at install', () => {
    const manifest = JSON.parse(readFileSync(join(cjsApp, 'node_modules/pino-enrich/package.json'), 'utf8')) as {
      repository?: { url?: string }
      homepage?: string
      bugs?: { url?: string }
      scripts?: Record<string, string>
    }
    expect(manifest.repository?.url).toBe('git+https://github.com/pino-enrich/pino-enrich.git')
    expect(manifest.homepage).toBe('https://github.com/pino-enrich/pino-enrich#readme')
    expect(manifest.bugs?.url).toBe('https://github.com/pino-enrich/pino-enrich/issues')
    // What npm runs in an installed copy (prepare too, for a git dependency); prepack runs only when packing.
    const installTime = ['preinstall', 'install', 'postinstall', 'prepublish', 'preprepare', 'prepare', 'postprepare']
    expect(Object.keys(manifest.scripts ?? {}).filter((name) => installTime.includes(name))).toEqual([])
  })

  it("ships a README whose links work on the registry's page: anchors or absolute https", () => {
    const shipped = readFileSync(join(cjsApp, 'node_modules/pino-enrich/README.md'), 'utf8').replace(
      /^```[\s\S]*?^```/gm,
      '',
    )
    const links = [...shipped.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1] as string)
    expect(links.length).toBeGreaterThan(10)
    for (const link of links) expect(link).toMatch(/^(#|https:\/\/)/)
  })

  it('builds a CommonJS TypeScript app with module nodenext and runs it; node16 refuses it (TS1479), as README says', async () => {
    const tsc = join(root, 'node_modules/typescript/bin/tsc')
    await run(process.execPath, [tsc, '-p', '.'], cjsApp)
    const { stdout } = await run(process.execPath, ['out/main.js'], cjsApp, 30_000)
    expect(JSON.parse(stdout.trim())).toMatchObject({ msg: 'from a CommonJS TypeScript app' })
    const refused = await run(process.execPath, [tsc, '-p', 'tsconfig.node16.json', '--noEmit'], cjsApp).then(
      () => '',
      (e: Error) => e.message,
    )
    expect(refused).toContain('TS1479')
    const readme = readFileSync(join(root, 'README.md'), 'utf8')
    expect(readme).toContain('`"module": "nodenext"`')
    expect(readme).toContain('TS1479')
  }, 120_000)

  it('type-checks an ESM TypeScript app importing every entry point, and every TypeScript snippet of README as written (strict, nodenext, lib check on)', async () => {
    expect(snippets.length).toBeGreaterThanOrEqual(9)
    expect(specifiers).toEqual(
      expect.arrayContaining(['pino-enrich', 'pino-enrich/enrichers', 'pino-enrich/transport']),
    )
    await run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', '.'], esmApp)
  }, 120_000)

  it('runs that app: a pipeline logs through pino into memory, Express, Fastify and the transport worker', async () => {
    const { stdout } = await run(process.execPath, ['out/src/main.js'], esmApp, 30_000)
    const result = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as { ok: boolean; entries: string[] }
    expect(result).toMatchObject({ ok: true, entries: specifiers })
  }, 120_000)

  it('runs a CommonJS app that require()s every entry point', async () => {
    const { stdout } = await run(process.execPath, ['index.js'], cjsApp, 30_000)
    const result = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as { ok: boolean; specifiers: string[] }
    expect(result).toMatchObject({ ok: true, specifiers })
  }, 30_000)
})
