// Entry of `npm run bench`. Each section returns rows for one table; pass
// section names to run only those: `npm run bench -- cache`.
import { printTable, type Row } from './table.js'

interface Section {
  name: string
  title: string
  run: () => Promise<Row[]>
}

// Loaded lazily, so running one section does not load the others.
const sections: Section[] = [
  {
    name: 'cache',
    title: 'SmartCache vs lru-cache (medians over rounds)',
    run: async () => (await import('./cache.js')).runCacheBench(),
  },
  {
    name: 'logging',
    title: 'Logging (medians over rounds, one process per run)',
    run: async () => (await import('./logging.js')).runLoggingBench(),
  },
  {
    name: 'burst',
    title: 'Transport under a burst (one process per run)',
    run: async () => (await import('./burst.js')).runBurstBench(),
  },
  {
    name: 'redis',
    title: 'Shared tier on a local redis-server (medians over rounds)',
    run: async () => (await import('./redis.js')).runRedisBench(),
  },
  {
    name: 'import',
    title: 'Import time (medians over fresh processes)',
    run: async () => (await import('./import.js')).runImportBench(),
  },
  {
    name: 'http',
    title: 'HTTP: Express and Fastify under autocannon (medians of per-round ratios)',
    run: async () => (await import('./http.js')).runHttpBench(),
  },
]

const wanted = process.argv.slice(2)
const unknown = wanted.filter((w) => !sections.some((s) => s.name === w))
if (unknown.length > 0) {
  console.error(`unknown section ${unknown.join(', ')}; sections: ${sections.map((s) => s.name).join(', ')}`)
  process.exit(2)
}

console.log(`node ${process.version}, ${process.platform} ${process.arch}`)
for (const section of sections) {
  if (wanted.length > 0 && !wanted.includes(section.name)) continue
  const started = performance.now()
  const rows = await section.run()
  console.log(`\n${section.title}: ${((performance.now() - started) / 1_000).toFixed(1)} s`)
  printTable(rows)
}
