import { userInfo } from 'node:os'
import { basename } from 'node:path'
import { defineEnricher, type Enricher, type Fields } from '../src/index.js'
import { ONCE, text } from './shared.js'

/** Options of {@link processEnricher}. */
export interface ProcessEnricherOptions {
  /** Enricher name, for stats and problem records. Default `'process'`. */
  name?: string
  /** Also write `process.pid`. Default `false`: pino already writes `pid` on every line. */
  includePid?: boolean
  /**
   * Also write `process.command_args` (`[execPath, ...execArgv, ...argv.slice(1)]`).
   * Default `false`: command lines may carry secrets.
   */
  includeArgs?: boolean
  /** Write `process.owner` (the user name the process runs as). Default `true`. */
  includeOwner?: boolean
}

/**
 * Process facts that never change while it lives, under OpenTelemetry's
 * `process.*` names: `process.executable.{name,path}`, `process.command` (the
 * main script), `process.owner`, `process.runtime.{name,version,description}`
 * (`nodejs`, `20.x.y`, `Node.js`). Computed once, then written from the
 * pre-serialized fragment.
 */
export function processEnricher(options: ProcessEnricherOptions = {}): Enricher {
  const { name = 'process', includePid = false, includeArgs = false, includeOwner = true } = options
  return defineEnricher({
    name,
    compute: () => processFields(includePid, includeArgs, includeOwner),
    cache: ONCE,
    breaker: false,
  })
}

function processFields(includePid: boolean, includeArgs: boolean, includeOwner: boolean): Fields {
  const p: Record<string, unknown> = {}
  if (includePid) p.pid = process.pid
  // basename of execPath, not process.title: the title may be changed later by the application.
  p.executable = { name: basename(process.execPath), path: process.execPath }
  const command = process.argv[1]
  if (command !== undefined) p.command = command
  if (includeArgs) p.command_args = [process.execPath, ...process.execArgv, ...process.argv.slice(1)]
  if (includeOwner) {
    const owner = ownerName()
    if (owner !== undefined) p.owner = owner
  }
  p.runtime = { name: 'nodejs', version: process.versions.node, description: 'Node.js' }
  return { process: p }
}

function ownerName(): string | undefined {
  try {
    return text(userInfo().username)
  } catch {
    // A uid without a passwd entry (common in containers) has no name.
    return undefined
  }
}
