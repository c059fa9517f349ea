import { defineEnricher, type Enricher, type Fields } from '../src/index.js'
import { compact, fromEnv, ONCE, text } from './shared.js'

/** Options of {@link deploymentEnricher}. Each value given here wins over the environment. */
export interface DeploymentEnricherOptions {
  /** Enricher name, for stats and problem records. Default `'deployment'`. */
  name?: string
  /** `service.name`. Default: from the environment ({@link DEPLOYMENT_ENV}). */
  serviceName?: string
  /** `service.version`. Default: from the environment. */
  version?: string
  /** `deployment.environment.name` (`production`, `staging`, ...). Default: from the environment. */
  environment?: string
  /** `vcs.ref.head.revision`, the commit deployed. Default: from the environment. */
  commit?: string
  /** Environment to read. Default `process.env`. */
  env?: Readonly<Record<string, string | undefined>>
}

/**
 * Where each field is looked for when no option gives it, first found wins.
 * `OTEL_RESOURCE_ATTRIBUTES` (`service.version=1.2.3,deployment.environment.name=prod`)
 * is read between `OTEL_SERVICE_NAME` and the others.
 */
export const DEPLOYMENT_ENV = {
  serviceName: ['OTEL_SERVICE_NAME', 'otel:service.name', 'SERVICE_NAME', 'npm_package_name'],
  version: ['otel:service.version', 'SERVICE_VERSION', 'APP_VERSION', 'npm_package_version'],
  environment: [
    'otel:deployment.environment.name',
    'otel:deployment.environment',
    'DEPLOYMENT_ENVIRONMENT',
    'APP_ENV',
    'NODE_ENV',
  ],
  commit: [
    'otel:vcs.ref.head.revision',
    'GIT_COMMIT',
    'GIT_SHA',
    'SOURCE_VERSION',
    'GITHUB_SHA',
    'CI_COMMIT_SHA',
    'VERCEL_GIT_COMMIT_SHA',
    'RENDER_GIT_COMMIT',
    'COMMIT_SHA',
  ],
} as const

/**
 * What is deployed, under OpenTelemetry's names: `service.name`,
 * `service.version`, `deployment.environment.name` and
 * `vcs.ref.head.revision` (the commit), from the options, then the
 * environment ({@link DEPLOYMENT_ENV}). Read once, at creation.
 */
export function deploymentEnricher(options: DeploymentEnricherOptions = {}): Enricher {
  const env = options.env ?? process.env
  const otel = parseResourceAttributes(env.OTEL_RESOURCE_ATTRIBUTES)
  const lookup = (names: readonly string[]): string | undefined => {
    for (const name of names) {
      const v = name.startsWith('otel:') ? otel.get(name.slice(5)) : fromEnv(env, [name])
      if (v !== undefined) return v
    }
    return undefined
  }
  const service = compact({
    name: text(options.serviceName) ?? lookup(DEPLOYMENT_ENV.serviceName),
    version: text(options.version) ?? lookup(DEPLOYMENT_ENV.version),
  })
  const environment = text(options.environment) ?? lookup(DEPLOYMENT_ENV.environment)
  const commit = text(options.commit) ?? lookup(DEPLOYMENT_ENV.commit)
  const fields: Fields = {}
  if (service !== undefined) fields.service = service
  if (environment !== undefined) fields.deployment = { environment: { name: environment } }
  if (commit !== undefined) fields.vcs = { ref: { head: { revision: commit } } }
  const value = Object.keys(fields).length === 0 ? undefined : fields
  return defineEnricher({ name: options.name ?? 'deployment', compute: () => value, cache: ONCE, breaker: false })
}

/**
 * `OTEL_RESOURCE_ATTRIBUTES` as the OpenTelemetry spec defines it: comma
 * separated `key=value` pairs, values percent-encoded. Malformed pairs are skipped.
 */
export function parseResourceAttributes(raw: string | undefined): Map<string, string> {
  const out = new Map<string, string>()
  if (raw === undefined) return out
  for (const pair of raw.split(',')) {
    const eq = pair.indexOf('=')
    if (eq <= 0) continue
    let value: string
    try {
      value = decodeURIComponent(pair.slice(eq + 1))
    } catch {
      continue
    }
    const v = text(value)
    if (v !== undefined) out.set(pair.slice(0, eq).trim(), v)
  }
  return out
}
