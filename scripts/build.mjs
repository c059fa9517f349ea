#!/usr/bin/env node
// `npm run build`: the package's entry points (package.json `exports`), bundled
// by esbuild into a few ES modules, and a .d.ts per source file from tsc.
//
// Why bundled: Node's ES module loader spends about a millisecond per module
// file on resolving, reading, compiling and linking it, and the core entry
// was about 40 files, so loading them cost more than what they run. The
// entries are built together with code splitting, so the code two entries
// share is in one chunk under dist/chunks/: one copy of each class (errors,
// SmartCache, the pipeline), `instanceof` holds across entries. Packages
// (pino, lru-cache, the optional peers) stay imports, resolved from the
// application as before.
//
// The code the core entry shares with the others is one chunk, not one per set
// of entries using it (the errors and breaker for the Redis entry, the context
// for Express and Fastify, the metrics for prom-client ...); what only Express
// and Fastify share (the request-id helpers) is a second: each file costs the loader about
// a millisecond, and the core entry loaded five chunks. esbuild makes a chunk
// per set of entries that reach a module, so each other entry is built as if
// it also imported the core entry (`besideCore`): each is used beside it (an
// Express or Fastify context, a store or a metrics registry is given a
// pipeline or an enricher's cache; the transport and the built-ins import it
// already), so none loads code its user does not run anyway. `ignoreAnnotations`
// keeps that import: package.json's `sideEffects: false` would drop it. The
// sources carry no pure annotations, and packages are external, so nothing
// else in the output changes.
//
// Each entry keeps the path tsc gave it (dist/src/index.js ...), beside its
// .d.ts; the types are tsc's alone (tsconfig.build.json: emitDeclarationOnly).
// No source maps: tsc's build emitted none either.
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const dist = join(root, 'dist')
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))

/** `./dist/src/index.js` to `{ 'src/index': 'src/index.ts' }`: each `exports` target, from its source. */
const entryPoints = {}
for (const target of Object.values(pkg.exports)) {
  const file = typeof target === 'string' ? target : target.default
  if (!file.startsWith('./dist/') || !file.endsWith('.js')) continue
  const name = file.slice('./dist/'.length, -'.js'.length)
  entryPoints[name] = `${name}.ts`
}

const core = join(root, entryPoints['src/index'])
const others = new Set(Object.values(entryPoints).map((file) => join(root, file)))
others.delete(core)

/** Appends `import '<core entry>'` to each entry but the core one, as built: the sources are left alone. */
const besideCore = {
  name: 'beside-core',
  setup(b) {
    b.onLoad({ filter: /\.ts$/ }, (args) => {
      if (!others.has(args.path)) return undefined
      const text = readFileSync(args.path, 'utf8')
      return { contents: `${text}\nimport ${JSON.stringify(core)}\n`, loader: 'ts' }
    })
  },
}

const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' })

const result = await build({
  absWorkingDir: root,
  entryPoints,
  outdir: dist,
  chunkNames: 'chunks/[name]-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  packages: 'external',
  tsconfig: 'tsconfig.build.json',
  metafile: true,
  ignoreAnnotations: true,
  plugins: [besideCore],
  logLevel: 'warning',
})

// A .js no longer written (a chunk whose hash changed, a file of the one-file-per-module
// build) is removed: it is overwritten in place rather than dist/ emptied first, since
// tests of this checkout may be loading dist/ meanwhile.
const written = new Set(Object.keys(result.metafile.outputs).map((out) => resolve(root, out)))
for (const entry of readdirSync(dist, { recursive: true, withFileTypes: true })) {
  const file = join(entry.parentPath, entry.name)
  if (entry.isFile() && entry.name.endsWith('.js') && !written.has(file)) rmSync(file)
}
console.log(`built ${written.size} modules in ${relative(root, dist)}/`)
