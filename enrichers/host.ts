import { arch, hostname, platform, release } from 'node:os'
import { defineEnricher, type Enricher, type Fields } from '../src/index.js'
import { ONCE } from './shared.js'

/** Options of {@link hostEnricher}. */
export interface HostEnricherOptions {
  /** Enricher name, for stats and problem records. Default `'host'`. */
  name?: string
  /**
   * Also write `host.name` (`os.hostname()`). Default `false`: pino already
   * writes the host name as `hostname` on every line.
   */
  includeName?: boolean
  /** Write `os.type` and `os.version`. Default `true`. */
  includeOs?: boolean
}

// OpenTelemetry's host.arch values for Node's os.arch() names; the others are the same in both.
const ARCH: Readonly<Record<string, string>> = { x64: 'amd64', ia32: 'x86', arm: 'arm32', ppc: 'ppc32' }
// OpenTelemetry's os.type values for Node's process.platform names.
const OS_TYPE: Readonly<Record<string, string>> = { win32: 'windows', sunos: 'solaris' }

/**
 * Host facts that never change while the process lives: `host.arch`
 * (OpenTelemetry values: `amd64`, `arm64`, ...), `os.type` (`linux`,
 * `darwin`, `windows`, ...) and `os.version` (the kernel release), plus
 * `host.name` when asked for. Computed once, then written from the
 * pre-serialized fragment: a line pays for it what it pays for a pino binding.
 */
export function hostEnricher(options: HostEnricherOptions = {}): Enricher {
  const { name = 'host', includeName = false, includeOs = true } = options
  return defineEnricher({
    name,
    compute: () => hostFields(includeName, includeOs),
    cache: ONCE,
    breaker: false,
  })
}

function hostFields(includeName: boolean, includeOs: boolean): Fields {
  const a = arch()
  const host: Record<string, string> = { arch: ARCH[a] ?? a }
  if (includeName) host.name = hostname()
  const out: Fields = { host }
  if (includeOs) {
    const p = platform()
    out.os = { type: OS_TYPE[p] ?? p, version: release() }
  }
  return out
}
