import {
  type BreakerOptions,
  defineEnricher,
  type Enricher,
  type EnricherCacheOptions,
  type Fields,
} from '../src/index.js'
import { compact, text } from './shared.js'

/** The metadata services the cloud enricher knows. */
export const CloudProvider = {
  Aws: 'aws',
  Gcp: 'gcp',
  Azure: 'azure',
} as const
/** One of the {@link CloudProvider} values. */
export type CloudProvider = (typeof CloudProvider)[keyof typeof CloudProvider]

/** Base URLs (scheme, host, optional port) of the metadata services. */
export interface CloudEndpoints {
  /** AWS IMDS. Default `http://169.254.169.254`. */
  aws?: string
  /** GCP metadata server. Default `http://metadata.google.internal`. */
  gcp?: string
  /** Azure IMDS. Default `http://169.254.169.254`. */
  azure?: string
}

/** Options of {@link cloudEnricher}. */
export interface CloudEnricherOptions {
  /** Enricher name, for stats and problem records. Default `'cloud'`. */
  name?: string
  /**
   * Providers to try, all at once; the first to answer wins. Default: the
   * `PINO_ENRICH_CLOUD_PROVIDERS` variable (comma separated, `none` for none),
   * else all three; AWS is left out when `AWS_EC2_METADATA_DISABLED=true`.
   */
  providers?: readonly CloudProvider[]
  /** Base URLs, overriding the environment ({@link CLOUD_ENV}) and the defaults ({@link CLOUD_ENDPOINTS}). */
  endpoints?: CloudEndpoints
  /**
   * Deadline of each HTTP request, in ms. Default 200. The whole lookup is
   * bounded by twice this plus 100 ms (AWS needs two requests in a row).
   */
  timeoutMs?: number
  /** Largest response body read, in bytes; a longer one is cut off and counts as a failure. Default 65 536. */
  maxBodyBytes?: number
  /**
   * Cache tiers, over these defaults: `ttlMs` one day (metadata does not
   * change; it is refreshed in the background then), `retryMs` 60 000 doubling
   * up to `maxRetryMs` one hour (a failing metadata service is not asked on
   * every line).
   */
  cache?: EnricherCacheOptions
  /** Breaker options, or `false`. Default `{ failureThreshold: 3, halfOpenAfterMs: 300_000 }`. */
  breaker?: BreakerOptions | false
  /** Environment read for providers and endpoints. Default `process.env`. */
  env?: Readonly<Record<string, string | undefined>>
}

/** Default base URLs of the metadata services. */
export const CLOUD_ENDPOINTS: Readonly<Required<CloudEndpoints>> = {
  aws: 'http://169.254.169.254',
  gcp: 'http://metadata.google.internal',
  azure: 'http://169.254.169.254',
}

/**
 * Environment variables read by the cloud enricher, first set wins after the
 * options. `AWS_EC2_METADATA_SERVICE_ENDPOINT` and `GCE_METADATA_HOST`
 * (host[:port], no scheme) are the AWS SDK's and Google's own.
 */
export const CLOUD_ENV = {
  providers: 'PINO_ENRICH_CLOUD_PROVIDERS',
  awsDisabled: 'AWS_EC2_METADATA_DISABLED',
  aws: ['PINO_ENRICH_AWS_METADATA_URL', 'AWS_EC2_METADATA_SERVICE_ENDPOINT'],
  gcp: ['PINO_ENRICH_GCP_METADATA_URL'],
  gcpHost: 'GCE_METADATA_HOST',
  azure: ['PINO_ENRICH_AZURE_METADATA_URL'],
} as const

/** Codes of {@link MetadataError}. */
export const MetadataErrorCode = {
  /** The service answered 5xx, or refused a request it had accepted before in the same lookup. */
  Status: 'METADATA_STATUS',
  /** The body was not what the provider documents (not JSON, required fields missing). */
  Invalid: 'METADATA_INVALID',
  /** The body was longer than `maxBodyBytes`. */
  TooLarge: 'METADATA_TOO_LARGE',
  /** The service sent its headers, then not its body in time. */
  Timeout: 'METADATA_TIMEOUT',
} as const
/** One of the {@link MetadataErrorCode} values. */
export type MetadataErrorCode = (typeof MetadataErrorCode)[keyof typeof MetadataErrorCode]

/**
 * A metadata service that is there but does not answer properly. Its message
 * names the provider and the code, never the URL.
 */
export class MetadataError extends Error {
  /** What went wrong, one of {@link MetadataErrorCode}. */
  readonly code: MetadataErrorCode
  /** The provider whose metadata service answered. */
  readonly provider: CloudProvider
  /** The HTTP status, when the failure is one. */
  readonly status: number | undefined

  constructor(provider: CloudProvider, code: MetadataErrorCode, status?: number) {
    super(`${provider} metadata: ${code}${status === undefined ? '' : ` (HTTP ${status})`}`)
    this.name = 'MetadataError'
    this.code = code
    this.provider = provider
    this.status = status
  }
}

const ALL: readonly CloudProvider[] = [CloudProvider.Aws, CloudProvider.Gcp, CloudProvider.Azure]
const DEFAULTS = { name: 'cloud', timeoutMs: 200, maxBodyBytes: 65_536 } as const
const CACHE_DEFAULTS = { ttlMs: 86_400_000, retryMs: 60_000, maxRetryMs: 3_600_000 } as const
const BREAKER_DEFAULTS = { failureThreshold: 3, halfOpenAfterMs: 300_000 } as const
const AWS_TOKEN_TTL_S = '21600'
const AZURE_API_VERSION = '2021-02-01'

/**
 * Where the process runs in the cloud, from the instance metadata service:
 * `cloud.provider` (`aws`, `gcp`, `azure`), `cloud.platform` (`aws_ec2`,
 * `gcp_compute_engine`, `azure_vm`), `cloud.region`,
 * `cloud.availability_zone`, `cloud.account.id` (AWS account, GCP project,
 * Azure subscription), `host.id` (instance id) and `host.type` (machine type).
 *
 * AWS: IMDSv2 (PUT a session token, then GET the identity document). GCP:
 * `Metadata-Flavor: Google`. Azure: `Metadata: true`. All providers are tried
 * at once with short per-request timeouts; the first answer wins and the
 * other requests are aborted. Off a cloud (connection refused, no DNS,
 * 4xx, a hang) the result is "no fields", cached for `ttlMs`: one short
 * timeout at start, in the background, and nothing on any line. A service
 * that is there but fails (5xx, bad JSON, oversized body) is an error: cached
 * in the long error tier and counted by the enricher's own breaker.
 *
 * @throws TypeError for an unknown provider or an endpoint that is not an http(s) URL
 * @throws RangeError for a bad `timeoutMs` or `maxBodyBytes`
 */
export function cloudEnricher(options: CloudEnricherOptions = {}): Enricher {
  const o = { ...DEFAULTS, ...options }
  const env = options.env ?? process.env
  for (const k of ['timeoutMs', 'maxBodyBytes'] as const) {
    const v = o[k]
    if (!Number.isInteger(v) || v < 1)
      throw new RangeError(`cloudEnricher: ${k} must be a positive integer, received ${String(v)}`)
  }
  const providers = resolveProviders(options.providers, env)
  const endpoints = resolveEndpoints(options.endpoints ?? {}, env)
  const http: Http = { timeoutMs: o.timeoutMs, maxBodyBytes: o.maxBodyBytes }
  return defineEnricher({
    name: o.name,
    timeoutMs: 2 * o.timeoutMs + 100,
    cache: { ...CACHE_DEFAULTS, ...options.cache },
    breaker: options.breaker ?? BREAKER_DEFAULTS,
    compute: (_key, _ctx, { signal }) => detect(providers, endpoints, http, signal),
  })
}

function resolveProviders(given: readonly CloudProvider[] | undefined, env: Env): CloudProvider[] {
  let list: readonly string[]
  if (given !== undefined) {
    list = given
  } else {
    const raw = env[CLOUD_ENV.providers]?.trim()
    list =
      raw === undefined || raw === ''
        ? ALL
        : raw === 'none'
          ? []
          : raw
              .split(',')
              .map((s) => s.trim().toLowerCase())
              .filter((s) => s.length > 0)
    if (env[CLOUD_ENV.awsDisabled]?.trim().toLowerCase() === 'true') list = list.filter((p) => p !== CloudProvider.Aws)
  }
  for (const p of list) {
    if (!(ALL as readonly string[]).includes(p)) {
      throw new TypeError(`cloudEnricher: providers must be among ${ALL.join(', ')}, received ${JSON.stringify(p)}`)
    }
  }
  return [...new Set(list)] as CloudProvider[]
}

function resolveEndpoints(given: CloudEndpoints, env: Env): Required<CloudEndpoints> {
  const pick = (p: CloudProvider, names: readonly string[], extra?: string): string => {
    let v = given[p]
    for (const name of names) v ??= nonEmpty(env[name])
    v ??= extra ?? CLOUD_ENDPOINTS[p]
    return baseUrl(p, v)
  }
  const gceHost = nonEmpty(env[CLOUD_ENV.gcpHost])
  return {
    aws: pick(CloudProvider.Aws, CLOUD_ENV.aws),
    gcp: pick(CloudProvider.Gcp, CLOUD_ENV.gcp, gceHost === undefined ? undefined : `http://${gceHost}`),
    azure: pick(CloudProvider.Azure, CLOUD_ENV.azure),
  }
}

function nonEmpty(v: string | undefined): string | undefined {
  const t = v?.trim()
  return t === undefined || t === '' ? undefined : t
}

function baseUrl(provider: CloudProvider, value: string): string {
  let url: URL | undefined
  try {
    url = new URL(value)
  } catch {
    url = undefined
  }
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new TypeError(
      `cloudEnricher: the ${provider} endpoint must be an http(s) URL, received ${JSON.stringify(value)}`,
    )
  }
  return url.href.replace(/\/+$/, '')
}

type Env = Readonly<Record<string, string | undefined>>

interface Http {
  timeoutMs: number
  maxBodyBytes: number
}

/** Not this provider: nothing listens, or something else answered. */
const ABSENT = Symbol('absent')
type Answer = { body: string; headers: Headers } | typeof ABSENT

/**
 * Tries every provider at once. Resolves with the first provider's fields,
 * with undefined when every provider is absent, and rejects with the first
 * failure when none answered but one failed.
 */
async function detect(
  providers: readonly CloudProvider[],
  endpoints: Required<CloudEndpoints>,
  http: Http,
  signal: AbortSignal,
): Promise<Fields | undefined> {
  if (providers.length === 0) return undefined
  const stop = new AbortController()
  const scope = anySignal([signal, stop.signal])
  try {
    return await new Promise<Fields | undefined>((resolve, reject) => {
      let pending = providers.length
      let failure: { error: unknown } | undefined
      const settle = (): void => {
        if (--pending > 0) return
        if (failure === undefined) resolve(undefined)
        else reject(failure.error)
      }
      for (const p of providers) {
        PROVIDERS[p](endpoints[p], http, scope).then(
          (fields) => {
            if (fields !== undefined) resolve(fields)
            settle()
          },
          (e: unknown) => {
            failure ??= { error: e }
            settle()
          },
        )
      }
    })
  } finally {
    // The losers' requests are not needed any more.
    stop.abort()
  }
}

const PROVIDERS: Record<CloudProvider, (base: string, http: Http, signal: AbortSignal) => Promise<Fields | undefined>> =
  {
    async aws(base, http, signal) {
      const p = CloudProvider.Aws
      const tokenAnswer = await request(
        p,
        `${base}/latest/api/token`,
        'PUT',
        { 'x-aws-ec2-metadata-token-ttl-seconds': AWS_TOKEN_TTL_S },
        http,
        signal,
      )
      if (tokenAnswer === ABSENT) return undefined
      const token = text(tokenAnswer.body)
      if (token === undefined) throw new MetadataError(p, MetadataErrorCode.Invalid)
      const doc = await request(
        p,
        `${base}/latest/dynamic/instance-identity/document`,
        'GET',
        { 'x-aws-ec2-metadata-token': token },
        http,
        signal,
      )
      // The token was granted: this is AWS, and a missing document is a failure.
      if (doc === ABSENT) throw new MetadataError(p, MetadataErrorCode.Status)
      const d = parseObject(p, doc.body)
      const region = text(d.region)
      if (region === undefined) throw new MetadataError(p, MetadataErrorCode.Invalid)
      return cloudFields(p, 'aws_ec2', region, d.availabilityZone, d.accountId, d.instanceId, d.instanceType)
    },

    async gcp(base, http, signal) {
      const p = CloudProvider.Gcp
      const headers = { 'metadata-flavor': 'Google' }
      const get = (path: string) => request(p, `${base}/computeMetadata/v1/${path}`, 'GET', headers, http, signal)
      const [zone, project, id, machine] = await Promise.all([
        get('instance/zone'),
        get('project/project-id'),
        get('instance/id'),
        get('instance/machine-type'),
      ])
      // Google's server says who it is; anything else answering there is not GCP.
      if (zone === ABSENT || zone.headers.get('metadata-flavor') !== 'Google') return undefined
      const zoneName = lastSegment(zone.body)
      const dash = zoneName?.lastIndexOf('-') ?? -1
      if (zoneName === undefined || dash <= 0) throw new MetadataError(p, MetadataErrorCode.Invalid)
      const body = (a: Answer): string | undefined => (a === ABSENT ? undefined : a.body)
      return cloudFields(
        p,
        'gcp_compute_engine',
        zoneName.slice(0, dash),
        zoneName,
        body(project),
        body(id),
        lastSegment(body(machine)),
      )
    },

    async azure(base, http, signal) {
      const p = CloudProvider.Azure
      const answer = await request(
        p,
        `${base}/metadata/instance?api-version=${AZURE_API_VERSION}`,
        'GET',
        { metadata: 'true' },
        http,
        signal,
      )
      if (answer === ABSENT) return undefined
      const compute = parseObject(p, answer.body).compute
      if (typeof compute !== 'object' || compute === null || Array.isArray(compute)) {
        throw new MetadataError(p, MetadataErrorCode.Invalid)
      }
      const c = compute as Record<string, unknown>
      const region = text(c.location)
      if (region === undefined) throw new MetadataError(p, MetadataErrorCode.Invalid)
      return cloudFields(p, 'azure_vm', region, c.zone, c.subscriptionId, c.vmId, c.vmSize)
    },
  }

function cloudFields(
  provider: CloudProvider,
  platform: string,
  region: string,
  zone: unknown,
  account: unknown,
  instance: unknown,
  machine: unknown,
): Fields {
  const cloud = compact({
    provider,
    platform,
    region,
    availability_zone: text(zone),
    account: compact({ id: text(account) }),
  })
  // OpenTelemetry puts the instance on the host; the pipeline merges it with hostEnricher's host.
  const host = compact({ id: text(instance), type: text(machine) })
  return host === undefined ? { cloud } : { cloud, host }
}

function lastSegment(v: string | undefined): string | undefined {
  const t = text(v)
  return t === undefined ? undefined : text(t.slice(t.lastIndexOf('/') + 1))
}

/**
 * Parses a JSON object. Only known fields are ever copied out of it, so a
 * `__proto__` key (an own property after JSON.parse) reaches nothing.
 */
function parseObject(provider: CloudProvider, body: string): Record<string, unknown> {
  let v: unknown
  try {
    v = JSON.parse(body)
  } catch {
    throw new MetadataError(provider, MetadataErrorCode.Invalid)
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new MetadataError(provider, MetadataErrorCode.Invalid)
  return v as Record<string, unknown>
}

/**
 * One request with its own timeout and the lookup's signal. Network errors,
 * timeouts before the headers, redirects and 4xx mean "not this provider";
 * 5xx, a body past its limit or a body that stalls are failures. Redirects
 * are not followed.
 */
async function request(
  provider: CloudProvider,
  url: string,
  method: 'GET' | 'PUT',
  headers: Record<string, string>,
  http: Http,
  outer: AbortSignal,
): Promise<Answer> {
  const signal = anySignal([outer, AbortSignal.timeout(http.timeoutMs)])
  let res: Response
  try {
    res = await fetch(url, { method, headers, signal, redirect: 'manual' })
  } catch {
    if (outer.aborted) throw outer.reason
    // Refused, unreachable, no DNS, or no answer in time: not on this provider.
    return ABSENT
  }
  if (res.status >= 500) {
    discard(res)
    throw new MetadataError(provider, MetadataErrorCode.Status, res.status)
  }
  if (res.status !== 200) {
    discard(res)
    return ABSENT
  }
  try {
    return { body: await readLimited(provider, res, http.maxBodyBytes), headers: res.headers }
  } catch (e) {
    if (outer.aborted) throw outer.reason
    if (e instanceof MetadataError) throw e
    throw new MetadataError(provider, MetadataErrorCode.Timeout)
  }
}

/** Reads a body as UTF-8, refusing it past `max` bytes without reading the rest. */
async function readLimited(provider: CloudProvider, res: Response, max: number): Promise<string> {
  const declared = Number(res.headers.get('content-length') ?? Number.NaN)
  if (declared > max) {
    discard(res)
    throw new MetadataError(provider, MetadataErrorCode.TooLarge)
  }
  if (res.body === null) return ''
  const reader = res.body.getReader()
  const decoder = new TextDecoder()
  let size = 0
  let out = ''
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    size += value.byteLength
    if (size > max) {
      reader.cancel().catch(noop)
      throw new MetadataError(provider, MetadataErrorCode.TooLarge)
    }
    out += decoder.decode(value, { stream: true })
  }
  return out + decoder.decode()
}

function discard(res: Response): void {
  res.body?.cancel().catch(noop)
}

const noop = (): void => {}

/** `AbortSignal.any`, with a fallback for Node 20.0 to 20.2, which lack it. */
function anySignal(signals: AbortSignal[]): AbortSignal {
  if (typeof AbortSignal.any === 'function') return AbortSignal.any(signals)
  const controller = new AbortController()
  for (const s of signals) {
    if (s.aborted) {
      controller.abort(s.reason)
      break
    }
    s.addEventListener('abort', () => controller.abort(s.reason), { once: true, signal: controller.signal })
  }
  return controller.signal
}
