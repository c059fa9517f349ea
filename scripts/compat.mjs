#!/usr/bin/env node
// `npm run compat`: pino's and pino-http's own test suites, run against loggers
// built through `pinoOptions()`, compared with the same suites on plain pino.
//
// For each suite the npm tarball of the installed version (it ships `test/`) is
// unpacked into a cache folder outside the repo, with the devDependencies its
// tests need (lint, coverage, type and browser tools left out), and reused on
// the next run. A preload (see compat-preload.mjs) makes every `require()` of
// pino from the suite's own files return a wrapper that builds the logger with
// `pipeline.pinoOptions(opts)`. Variants:
//   plain           pino itself: the baseline, in this environment
//   snapshot        empty pipeline, mode 'snapshot'
//   deferred        empty pipeline, mode 'deferred'
//   snapshot+field  one global enricher adding one field, raw output
//   *+field, blind  the same, the field cut from each written line: a test that
//                   fails only raw differs by the extra field alone
// Fails when a test passing on plain pino fails in an empty-pipeline variant or
// a blind variant.
import { execFileSync, spawn } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const cache = process.env.PINO_ENRICH_COMPAT_CACHE ?? join(homedir(), '.cache', 'pino-enrich-compat')
const args = new Set(process.argv.slice(2))
const only = process.env.COMPAT_ONLY // e.g. 'pino' or 'pino-http'
const onlyVariants = process.env.COMPAT_VARIANTS?.split(',')

// devDependencies the suites' tests do not need: lint, coverage, types, docs, browsers, benchmarks.
const SKIP_DEV = [
  /^@types\//,
  /^@arethetypeswrong\//,
  /eslint/,
  /^neostandard$/,
  /^standard$/,
  /^airtap$/,
  /^docsify-cli$/,
  /^typescript$/,
  /^tstyche$/,
  /^ts-node$/,
  /^tsd$/,
  /^c8$/,
  /^coveralls$/,
  /^autocannon$/,
  /^fastify-tsconfig$/,
  /^fastbench$/,
  /^jest$/,
  /^pino-http-print$/,
]

/**
 * Test files that cannot run here for reasons unrelated to pino-enrich; they
 * are left out of every variant, the baseline included, and listed.
 */
const SKIP_FILES = {
  pino: {},
  'pino-http': {},
}

/** Single tests that cannot see what they test through the harness, and why; out of every variant. */
const SKIP_TESTS = {
  pino: {
    'test/timestamp-nano.test.js: pino.stdTimeFunctions.isoTimeNano returns RFC 3339 timestamps':
      "mocks process.hrtime before pino's lib/time.js loads, and the harness has loaded it (pino-enrich imports pino)",
  },
  'pino-http': {},
}

const TIMEOUT_MS = 8 * 60_000

function log(msg) {
  process.stderr.write(`[compat] ${msg}\n`)
}

function version(name) {
  return JSON.parse(readFileSync(join(repo, 'node_modules', name, 'package.json'), 'utf8')).version
}

/** Unpacks `name@version` and its test devDependencies into the cache, once. */
function prepare(name, ver, extra = {}) {
  const dir = join(cache, `${name}-${ver}`)
  const pkg = join(dir, 'package')
  if (existsSync(join(dir, '.ready'))) return pkg
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  log(`fetching ${name}@${ver} into ${dir}`)
  const file = execFileSync('npm', ['pack', `${name}@${ver}`, '--silent'], { cwd: dir, encoding: 'utf8' }).trim()
  execFileSync('tar', ['xzf', file], { cwd: dir })
  const manifest = JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8'))
  for (const dep of Object.keys(manifest.devDependencies ?? {})) {
    if (SKIP_DEV.some((re) => re.test(dep))) delete manifest.devDependencies[dep]
  }
  Object.assign(manifest.dependencies ?? {}, extra)
  delete manifest.scripts
  writeFileSync(join(pkg, 'package.json'), JSON.stringify(manifest, null, 2))
  log(`installing ${name}'s test dependencies (once)`)
  execFileSync('npm', ['install', '--ignore-scripts', '--no-audit', '--no-fund', '--no-package-lock', '--loglevel=error'], {
    cwd: pkg,
    stdio: ['ignore', 'inherit', 'inherit'],
  })
  writeFileSync(join(dir, '.ready'), new Date().toISOString())
  return pkg
}

/**
 * A copy of pino-enrich's package (package.json and dist) whose `import 'pino'`
 * resolves to the suite's own pino, so both share one set of symbols and
 * stdTimeFunctions; its other dependencies are the repo's.
 */
function enrichCopy(suiteDir, pinoDir) {
  const root = join(suiteDir, '..', 'enrich')
  rmSync(root, { recursive: true, force: true })
  const mod = join(root, 'node_modules')
  const copy = join(mod, 'pino-enrich')
  mkdirSync(copy, { recursive: true })
  cpSync(join(repo, 'package.json'), join(copy, 'package.json'))
  cpSync(join(repo, 'dist'), join(copy, 'dist'), { recursive: true })
  symlinkSync(pinoDir, join(mod, 'pino'))
  const deps = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')).dependencies
  for (const dep of Object.keys(deps)) {
    const target = join(mod, dep)
    mkdirSync(dirname(target), { recursive: true })
    symlinkSync(join(repo, 'node_modules', dep), target)
  }
  return join(copy, 'dist', 'src', 'index.js')
}

function globToRegExp(glob) {
  return new RegExp(`^${glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}$`)
}

function listTests(pkg, patterns, skips) {
  const out = execFileSync('bash', ['-O', 'globstar', '-O', 'nullglob', '-c', `printf '%s\\n' ${patterns.join(' ')}`], {
    cwd: pkg,
    encoding: 'utf8',
  })
  const files = out.split('\n').filter(Boolean)
  const skipRes = Object.entries(skips).map(([g, why]) => [globToRegExp(g), why])
  const run = []
  const skipped = []
  for (const f of files) {
    const hit = skipRes.find(([re]) => re.test(f))
    if (hit) skipped.push([f, hit[1]])
    else run.push(f)
  }
  return { run, skipped }
}

/**
 * Runs the files with `node --test` (what borp runs, without coverage) and
 * returns each leaf test's outcome keyed by file and name path.
 */
function runSuite(pkg, files, env, concurrency) {
  return new Promise((resolvePromise) => {
    const child = spawn(
      process.execPath,
      [
        '--test',
        `--test-reporter=${join(repo, 'scripts', 'compat-reporter.mjs')}`,
        `--test-concurrency=${concurrency}`,
        '--test-timeout=60000',
        ...files,
      ],
      { cwd: pkg, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
    )
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => {
      out += d
    })
    child.stderr.on('data', (d) => {
      err += d
    })
    const timer = setTimeout(() => child.kill('SIGKILL'), TIMEOUT_MS)
    child.on('close', (code) => {
      clearTimeout(timer)
      const results = new Map()
      for (const line of out.split('\n')) {
        const [outcome, file, name] = line.split('\t')
        if (name === undefined) continue
        const key = `${file.startsWith(pkg) ? file.slice(pkg.length + 1) : file}: ${name}`
        // A name used twice in one file: the second is told apart, not merged.
        let k = key
        for (let i = 2; results.has(k); i++) k = `${key} #${i}`
        results.set(k, outcome)
      }
      resolvePromise({ results, code, out, err })
    })
  })
}

function compare(baseline, variant) {
  let passed = 0
  let failed = 0
  const regressions = []
  for (const [name, outcome] of variant.results) {
    if (outcome === 'pass') passed++
    else if (outcome === 'fail') {
      failed++
      if (baseline.results.get(name) === 'pass') regressions.push(name)
    }
  }
  for (const [name, outcome] of baseline.results) {
    if (outcome === 'pass' && !variant.results.has(name)) {
      failed++
      regressions.push(`${name} (did not run)`)
    }
  }
  return { passed, failed, regressions }
}

const FIELD = 'enrichedByCompat'
const SUITES = [
  {
    name: 'pino',
    version: () => version('pino'),
    prepare: (v) => prepare('pino', v),
    pinoDir: (pkg) => pkg,
    // borp's default pattern, as pino's "borp" script runs it; jest's test/jest is run by jest, not here.
    patterns: ['test/**/*.test.{js,mjs,cjs}'],
    // Most of the suite's time is its transport tests waiting on child processes and workers.
    concurrency: 4,
    // The files whose `require()` of pino gets the wrapper: the tests, not pino itself.
    wrapFrom: (pkg) => [join(pkg, 'test')],
  },
  {
    name: 'pino-http',
    version: () => version('pino-http'),
    prepare: (v) => prepare('pino-http', v, { pino: version('pino') }),
    pinoDir: (pkg) => join(pkg, 'node_modules', 'pino'),
    // pino-http's "test" script runs `node --test`: its default pattern finds test/test.js.
    patterns: ['test/test.js'],
    concurrency: 1,
    wrapFrom: (pkg) => [join(pkg, 'logger.js'), join(pkg, 'test')],
  },
]

const VARIANTS = [
  { name: 'plain', env: { COMPAT_MODE: 'plain' } },
  { name: 'snapshot', env: { COMPAT_MODE: 'snapshot' }, gate: true },
  { name: 'deferred', env: { COMPAT_MODE: 'deferred' }, gate: true },
  // Informative and slow (one more run of each suite): with --raw.
  ...(args.has('--raw') ? [{ name: 'snapshot+field', env: { COMPAT_MODE: 'snapshot', COMPAT_FIELD: FIELD } }] : []),
  { name: 'snapshot+field, blind', env: { COMPAT_MODE: 'snapshot', COMPAT_FIELD: FIELD, COMPAT_BLIND: '1' }, gate: true },
  { name: 'deferred+field, blind', env: { COMPAT_MODE: 'deferred', COMPAT_FIELD: FIELD, COMPAT_BLIND: '1' }, gate: true },
]

const JEST_VERSION = '30'

/**
 * pino-enrich is ESM only. A Jest project loads it with Jest's ESM support
 * (README, "Jest"): this runs one such project, outside the repo, and one
 * that requires it from CommonJS, which Jest's own runtime cannot do.
 */
function runJest() {
  const dir = join(cache, `jest-${JEST_VERSION}`)
  if (!existsSync(join(dir, '.ready'))) {
    rmSync(dir, { recursive: true, force: true })
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'jest-esm', private: true, type: 'module' }))
    log(`installing jest@${JEST_VERSION} into ${dir} (once)`)
    execFileSync(
      'npm',
      ['install', `jest@${JEST_VERSION}`, '--no-save', '--no-audit', '--no-fund', '--no-package-lock', '--loglevel=error'],
      { cwd: dir, stdio: ['ignore', 'inherit', 'inherit'] },
    )
    writeFileSync(join(dir, '.ready'), new Date().toISOString())
  }
  // pino-enrich as an installed package: package.json and dist; pino and the rest from the repo.
  const mod = join(dir, 'node_modules')
  const copy = join(mod, 'pino-enrich')
  rmSync(copy, { recursive: true, force: true })
  mkdirSync(copy, { recursive: true })
  cpSync(join(repo, 'package.json'), join(copy, 'package.json'))
  cpSync(join(repo, 'dist'), join(copy, 'dist'), { recursive: true })
  const deps = Object.keys(JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')).dependencies).concat('pino')
  for (const dep of deps) {
    const target = join(copy, 'node_modules', dep)
    mkdirSync(dirname(target), { recursive: true })
    symlinkSync(join(repo, 'node_modules', dep), target)
  }
  rmSync(join(mod, 'pino'), { force: true })
  symlinkSync(join(repo, 'node_modules', 'pino'), join(mod, 'pino'))
  const test = join(dir, 'test')
  rmSync(test, { recursive: true, force: true })
  mkdirSync(test)
  writeFileSync(join(dir, 'jest.config.json'), JSON.stringify({ transform: {}, testMatch: ['**/test/*.test.mjs'] }))
  writeFileSync(
    join(test, 'esm.test.mjs'),
    `import pino from 'pino'
import { createPipeline, defineEnricher } from 'pino-enrich'

test('pino-enrich loads under Jest with its ESM setup and enriches a line', async () => {
  const p = createPipeline({ enrichers: [defineEnricher({ name: 'app', compute: () => ({ app: 'shop' }) })] })
  await p.ready()
  const lines = []
  pino(p.pinoOptions(), { write: (s) => lines.push(JSON.parse(s)) }).info('x')
  expect(lines[0]).toMatchObject({ app: 'shop', msg: 'x' })
  await p.close()
})
`,
  )
  writeFileSync(
    join(test, 'cjs.test.cjs'),
    `test('require() of pino-enrich in Jest CommonJS runtime', () => {
  expect(() => require('pino-enrich')).toThrow(/Must use import to load ES Module/)
})
`,
  )
  const jest = join(mod, 'jest', 'bin', 'jest.js')
  const run = (extra, env) => {
    try {
      execFileSync(process.execPath, [jest, '--ci', '--silent', ...extra], {
        cwd: dir,
        env: { ...process.env, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      return true
    } catch (e) {
      log(String(e.stderr ?? e).slice(-3000))
      return false
    }
  }
  const esm = run([], { NODE_OPTIONS: '--experimental-vm-modules --no-warnings=ExperimentalWarning' })
  const cjs = run(['--testMatch', '**/test/*.test.cjs'], {})
  return { esm, cjs }
}

async function main() {
  if (!args.has('--no-build')) {
    log('building dist')
    execFileSync('npm', ['run', 'build', '--silent'], { cwd: repo, stdio: 'inherit' })
  }
  mkdirSync(cache, { recursive: true })
  const rows = []
  let failures = 0
  const started = Date.now()
  for (const suite of SUITES) {
    if (only !== undefined && only !== suite.name) continue
    const ver = suite.version()
    const pkg = suite.prepare(ver)
    const pinoDir = suite.pinoDir(pkg)
    const enrichEntry = enrichCopy(pkg, pinoDir)
    const { run, skipped } = listTests(pkg, suite.patterns, SKIP_FILES[suite.name])
    for (const [f, why] of skipped) log(`${suite.name}: skipped ${f}: ${why}`)
    for (const [t, why] of Object.entries(SKIP_TESTS[suite.name])) log(`${suite.name}: skipped ${t}: ${why}`)
    const env = {
      NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${join(repo, 'scripts', 'compat-preload.mjs')}`.trim(),
      COMPAT_PINO: join(pinoDir, 'pino.js'),
      COMPAT_ENRICH: enrichEntry,
      COMPAT_WRAP_FROM: suite.wrapFrom(pkg).join('\n'),
    }
    let baseline
    for (const variant of VARIANTS) {
      if (onlyVariants !== undefined && variant.name !== 'plain' && !onlyVariants.includes(variant.name)) continue
      const t0 = Date.now()
      const res = await runSuite(pkg, run, { ...env, ...variant.env }, suite.concurrency)
      for (const name of Object.keys(SKIP_TESTS[suite.name])) res.results.delete(name)
      const secs = ((Date.now() - t0) / 1000).toFixed(0)
      if (variant.name === 'plain') {
        baseline = res
        let passed = 0
        let failed = 0
        for (const v of res.results.values()) {
          if (v === 'pass') passed++
          else if (v === 'fail') failed++
        }
        rows.push([suite.name, variant.name, passed, failed, `${passed}/${passed + failed} (${skipped.length} files skipped)`, secs])
        if (res.results.size === 0) {
          log(`${suite.name}: no test results from plain pino\n${res.err.slice(-4000)}`)
          failures++
        }
        continue
      }
      const { passed, failed, regressions } = compare(baseline, res)
      rows.push([suite.name, variant.name, passed, failed, regressions.length === 0 ? 'all pass' : `${regressions.length} regressions`, secs])
      if (regressions.length > 0) {
        if (variant.gate) failures += regressions.length
        log(`${suite.name} ${variant.name}: fails where plain pino passes${variant.gate ? '' : ' (informative)'}:`)
        for (const r of regressions.slice(0, 200)) log(`  - ${r}`)
        if (args.has('--verbose')) log(res.out)
      }
    }
  }
  if (only === undefined || only === 'jest') {
    const t0 = Date.now()
    const { esm, cjs } = runJest()
    const secs = ((Date.now() - t0) / 1000).toFixed(0)
    rows.push([`jest@${JEST_VERSION}`, 'ESM setup: loads, enriches', esm ? 1 : 0, esm ? 0 : 1, 'README "Jest"', secs])
    rows.push([`jest@${JEST_VERSION}`, 'CommonJS require(): refused', cjs ? 1 : 0, cjs ? 0 : 1, 'as documented', ''])
    if (!esm) failures++
    if (!cjs) failures++
  }
  const head = ['suite', 'variant', 'passed', 'failed', 'baseline', 's']
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)))
  const fmt = (r) => `| ${r.map((c, i) => String(c).padEnd(widths[i])).join(' | ')} |`
  console.log(fmt(head))
  console.log(`| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`)
  for (const r of rows) console.log(fmt(r))
  console.log(`\n${((Date.now() - started) / 1000).toFixed(0)} s; ${failures === 0 ? 'no' : failures} regression${failures === 1 ? '' : 's'} against plain pino`)
  process.exitCode = failures === 0 ? 0 : 1
}

await main()
