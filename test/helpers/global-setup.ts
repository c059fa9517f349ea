import { execFileSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

// The transport runs in a worker thread that loads the package as published
// (`pino-enrich/transport` resolves to dist/), so the suite builds it first.
export default function setup(): void {
  const root = fileURLToPath(new URL('../..', import.meta.url))
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
  execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' })
}
