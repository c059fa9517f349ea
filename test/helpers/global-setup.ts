import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

// The transport runs in a worker thread that loads the package as published
// (`pino-enrich/transport` resolves to dist/), so the suite builds it first,
// as `npm run build` does.
export default function setup(): void {
  const root = fileURLToPath(new URL('../..', import.meta.url))
  execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: root, stdio: 'inherit' })
}
