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
