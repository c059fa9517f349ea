import type http from 'node:http'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { CloudProvider, cloudEnricher, MetadataErrorCode } from '../../enrichers/index.js'
import type { PipelineEvent } from '../../src/index.js'
import { manualClock } from '../helpers/deferred.js'
import { type Answer, closeModeServers, Mode, modeServer, refusedUrl } from '../helpers/mode-server.js'
import { trackPipelines } from '../helpers/pipelines.js'
import { sink } from '../helpers/sink.js'

// Real HTTP on 127.0.0.1 stands in for each metadata service, so these tests use real timers.

const { pipeline, closePipelines } = trackPipelines()

afterEach(async () => {
  await closePipelines()
  await closeModeServers()
})

const AWS_TOKEN = 'AQAEAFUq1AkJ0l7zEXAMPLETOKEN_6Zx3N0-Kd3lqfJ9w=='
const AWS_DOCUMENT = {
  accountId: '123456789012',
  architecture: 'x86_64',
  availabilityZone: 'eu-west-1b',
  billingProducts: null,
  devpayProductCodes: null,
  imageId: 'ami-0abcdef1234567890',
  instanceId: 'i-0123456789abcdef0',
  instanceType: 't3.medium',
  kernelId: null,
  marketplaceProductCodes: null,
  pendingTime: '2024-05-01T08:00:00Z',
  privateIp: '10.0.1.23',
  ramdiskId: null,
  region: 'eu-west-1',
  version: '2017-09-30',
}

/** AWS IMDSv2: a token for a PUT with a ttl, the document for a GET with the token. */
function awsRoute(req: http.IncomingMessage): Answer | undefined {
  if (req.url === '/latest/api/token') {
    if (req.method !== 'PUT' || req.headers['x-aws-ec2-metadata-token-ttl-seconds'] === undefined)
      return { status: 400 }
    return { text: AWS_TOKEN, headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '21600' } }
  }
  if (req.url === '/latest/dynamic/instance-identity/document') {
    if (req.headers['x-aws-ec2-metadata-token'] !== AWS_TOKEN) return { status: 401 }
    return { json: AWS_DOCUMENT }
  }
  return undefined
}

const GCP = {
  'instance/zone': 'projects/123456789012/zones/us-central1-a',
  'project/project-id': 'acme-prod-4821',
  'instance/id': '4520031799277581759',
  'instance/machine-type': 'projects/123456789012/machineTypes/e2-medium',
} as const

function gcpRoute(req: http.IncomingMessage): Answer | undefined {
  if (req.headers['metadata-flavor'] !== 'Google') return { status: 403 }
  const path = req.url?.replace('/computeMetadata/v1/', '') as keyof typeof GCP
  const text = GCP[path]
  return text === undefined ? undefined : { text, headers: { 'metadata-flavor': 'Google' } }
}

const AZURE = {
  compute: {
    azEnvironment: 'AzurePublicCloud',
    location: 'westeurope',
    name: 'api-vm-01',
    resourceGroupName: 'rg-api',
    subscriptionId: '8d10da13-8125-4ba9-a717-bf7490507b3d',
    vmId: '02aab8a4-74ef-476e-8182-f6d2ba4166a6',
    vmSize: 'Standard_D2s_v3',
    zone: '2',
    tagsList: [],
  },
  network: { interface: [] },
}

function azureRoute(req: http.IncomingMessage): Answer | undefined {
  if (!req.url?.startsWith('/metadata/instance?api-version=')) return undefined
  if (req.headers.metadata !== 'true') return { status: 400, json: { error: 'Bad request' } }
  return { json: AZURE }
}

const AWS_FIELDS = {
  cloud: {
    provider: 'aws',
    platform: 'aws_ec2',
    region: 'eu-west-1',
    availability_zone: 'eu-west-1b',
    account: { id: '123456789012' },
  },
  host: { id: 'i-0123456789abcdef0', type: 't3.medium' },
}

/** A pipeline with only the cloud enricher, ready; resolves with its snapshot and the events seen. */
async function lookup(options: Parameters<typeof cloudEnricher>[0]) {
  const p = pipeline({ enrichers: [cloudEnricher({ env: {}, ...options })] })
  const events: PipelineEvent[] = []
  p.onEvent((e) => events.push(e))
  const ready = await p.ready({ timeoutMs: 5_000 })
  return { p, ready, snapshot: p.snapshot(), events }
}

// A healthy service answers in a few ms; the 200 ms default is short on a loaded
// machine, so these tests of the protocol allow more. The timeout has tests of its own.
const HEALTHY = { timeoutMs: 2_000 }

describe('cloudEnricher: healthy metadata services', () => {
  it('reads AWS with IMDSv2: PUT a token, then GET the identity document with it', async () => {
    const aws = await modeServer(awsRoute)
    const { p, snapshot } = await lookup({ ...HEALTHY, providers: ['aws'], endpoints: { aws: aws.url } })
    expect(snapshot).toEqual(AWS_FIELDS)
    expect(aws.requests.map((r) => `${r.method} ${r.url}`)).toEqual([
      'PUT /latest/api/token',
      'GET /latest/dynamic/instance-identity/document',
    ])
    expect(aws.requests[0]?.headers['x-aws-ec2-metadata-token-ttl-seconds']).toBe('21600')
    // Its own breaker, on by default.
    expect(p.stats().enrichers[0]?.breaker).toBe('closed')
    expect(aws.requests[1]?.headers['x-aws-ec2-metadata-token']).toBe(AWS_TOKEN)
  })

  it('reads GCP with Metadata-Flavor: Google and derives the region from the zone', async () => {
    const gcp = await modeServer(gcpRoute)
    const { snapshot } = await lookup({ ...HEALTHY, providers: ['gcp'], endpoints: { gcp: gcp.url } })
    expect(snapshot).toEqual({
      cloud: {
        provider: 'gcp',
        platform: 'gcp_compute_engine',
        region: 'us-central1',
        availability_zone: 'us-central1-a',
        account: { id: 'acme-prod-4821' },
      },
      host: { id: '4520031799277581759', type: 'e2-medium' },
    })
    expect(gcp.requests).toHaveLength(4)
    for (const r of gcp.requests) expect(r.headers['metadata-flavor']).toBe('Google')
  })

  it('reads Azure with Metadata: true and the api-version', async () => {
    const azure = await modeServer(azureRoute)
    const { snapshot } = await lookup({ ...HEALTHY, providers: ['azure'], endpoints: { azure: azure.url } })
    expect(snapshot).toEqual({
      cloud: {
        provider: 'azure',
        platform: 'azure_vm',
        region: 'westeurope',
        availability_zone: '2',
        account: { id: '8d10da13-8125-4ba9-a717-bf7490507b3d' },
      },
      host: { id: '02aab8a4-74ef-476e-8182-f6d2ba4166a6', type: 'Standard_D2s_v3' },
    })
    expect(azure.requests).toEqual([
      expect.objectContaining({ method: 'GET', url: '/metadata/instance?api-version=2021-02-01' }),
    ])
    expect(azure.requests[0]?.headers.metadata).toBe('true')
  })

  it('tries every provider at once and takes the first answer without waiting for a hanging one', async () => {
    const aws = await modeServer(awsRoute, Mode.Hang)
    const gcp = await modeServer(gcpRoute, Mode.Hang)
    const azure = await modeServer(azureRoute)
    const started = performance.now()
    const { snapshot } = await lookup({
      timeoutMs: 5_000,
      endpoints: { aws: aws.url, gcp: gcp.url, azure: azure.url },
    })
    expect((snapshot.cloud as { provider: string }).provider).toBe('azure')
    // The hanging providers' 5 s timeouts were not waited for.
    expect(performance.now() - started).toBeLessThan(2_000)
  })

  it('takes a slow answer that comes within the per-request timeout', async () => {
    const aws = await modeServer(awsRoute, Mode.Slow)
    aws.slowMs = 30
    const { snapshot } = await lookup({ providers: ['aws'], endpoints: { aws: aws.url }, timeoutMs: 1_000 })
    expect(snapshot).toEqual(AWS_FIELDS)
  })

  it('another service answering at the GCP address without Metadata-Flavor is not GCP', async () => {
    const impostor = await modeServer(() => ({ text: 'projects/1/zones/us-east1-b' }))
    const { snapshot, events } = await lookup({ ...HEALTHY, providers: ['gcp'], endpoints: { gcp: impostor.url } })
    expect(snapshot).toEqual({})
    expect(events).toEqual([])
  })

  it('copies only known fields, so a __proto__ key in the document pollutes nothing', async () => {
    const aws = await modeServer((req) => {
      if (req.url === '/latest/api/token') return { text: AWS_TOKEN }
      return {
        text: `{"__proto__":{"polluted":true,"region":"evil"},"constructor":{"prototype":{"polluted":true}},"region":"eu-west-1","instanceId":{"nested":"object"}}`,
      }
    })
    const { snapshot } = await lookup({ ...HEALTHY, providers: ['aws'], endpoints: { aws: aws.url } })
    expect(snapshot).toEqual({ cloud: { provider: 'aws', platform: 'aws_ec2', region: 'eu-west-1' } })
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect(Object.prototype).not.toHaveProperty('polluted')
  })
})

describe('cloudEnricher: off a cloud', () => {
  it('connection refused everywhere: no fields, no problem on the line, no error', async () => {
    const url = await refusedUrl()
    const { snapshot, ready, events } = await lookup({ endpoints: { aws: url, gcp: url, azure: url } })
    expect(ready).toEqual({ ready: ['cloud'], failed: [], pending: [] })
    expect(snapshot).toEqual({})
    expect(events).toEqual([])
  })

  it('a hanging service costs one per-request timeout at start and no request on any later line', async () => {
    const aws = await modeServer(awsRoute, Mode.Hang)
    const azure = await modeServer(azureRoute, Mode.Hang)
    const started = performance.now()
    const { p, snapshot } = await lookup({
      providers: ['aws', 'azure'],
      endpoints: { aws: aws.url, azure: azure.url },
      timeoutMs: 100,
    })
    const elapsed = performance.now() - started
    expect(elapsed).toBeGreaterThanOrEqual(90)
    expect(elapsed).toBeLessThan(100 + 500)
    expect(snapshot).toEqual({})
    const out = sink()
    const log = pino(p.pinoOptions(), out)
    for (let i = 0; i < 100; i++) log.info('line')
    await p.ready()
    expect(out.lines().every((l) => l.cloud === undefined && l.enrich === undefined)).toBe(true)
    expect(aws.requests).toHaveLength(1)
    expect(azure.requests).toHaveLength(1)
  })

  it('never delays ready() past its own timeout', async () => {
    const aws = await modeServer(awsRoute, Mode.Hang)
    const p = pipeline({
      enrichers: [cloudEnricher({ env: {}, providers: ['aws'], endpoints: { aws: aws.url }, timeoutMs: 5_000 })],
    })
    const started = performance.now()
    const ready = await p.ready({ timeoutMs: 50 })
    expect(performance.now() - started).toBeLessThan(50 + 50)
    expect(ready.pending).toEqual(['cloud'])
  })

  it('never delays a line past the deadline while the service hangs', async () => {
    const aws = await modeServer(awsRoute, Mode.Hang)
    const p = pipeline({
      deadlineMs: 20,
      enrichers: [cloudEnricher({ env: {}, providers: ['aws'], endpoints: { aws: aws.url }, timeoutMs: 5_000 })],
    })
    const out = sink()
    const log = pino(p.pinoOptions({ mode: 'deferred' }), out)
    const started = performance.now()
    log.info('deferred')
    await p.flush()
    const fields = await p.enrich()
    expect(performance.now() - started).toBeLessThan(20 + 50)
    expect(out.lines()).toEqual([expect.objectContaining({ msg: 'deferred', enrich: { pending: ['cloud'] } })])
    expect(fields).toEqual({ enrich: { pending: ['cloud'] } })
  })

  it('PINO_ENRICH_CLOUD_PROVIDERS=none sends no request at all', async () => {
    const aws = await modeServer(awsRoute)
    const { snapshot } = await lookup({
      env: { PINO_ENRICH_CLOUD_PROVIDERS: 'none', PINO_ENRICH_AWS_METADATA_URL: aws.url },
    })
    expect(snapshot).toEqual({})
    expect(aws.requests).toHaveLength(0)
  })
})

describe('cloudEnricher: a metadata service that fails', () => {
  const failures: Array<[Mode, string]> = [
    [Mode.Status500, MetadataErrorCode.Status],
    [Mode.InvalidJson, MetadataErrorCode.Invalid],
    [Mode.Huge, MetadataErrorCode.TooLarge],
    [Mode.HugeChunked, MetadataErrorCode.TooLarge],
  ]
  it.each(failures)('%s: recorded as an error with code %s, no fields', async (mode, code) => {
    const aws = await modeServer(awsRoute, mode)
    const { p, snapshot, ready, events } = await lookup({ providers: ['aws'], endpoints: { aws: aws.url } })
    expect(ready.failed).toEqual(['cloud'])
    expect(snapshot).toEqual({ enrich: { error: ['cloud'] } })
    expect(events).toContainEqual(expect.objectContaining({ type: 'error', enricher: 'cloud', code }))
    // The error tier holds it: later lines send nothing.
    const before = aws.requests.length
    for (let i = 0; i < 10; i++) p.snapshot()
    await p.ready()
    expect(aws.requests).toHaveLength(before)
  })

  it('refuses a body longer than maxBodyBytes', async () => {
    const padded = `${JSON.stringify(AWS_DOCUMENT)}${' '.repeat(2_048)}`
    const aws = await modeServer((req) => (req.url === '/latest/api/token' ? { text: AWS_TOKEN } : { text: padded }))
    const small = await lookup({ providers: ['aws'], endpoints: { aws: aws.url }, maxBodyBytes: 1_024 })
    expect(small.snapshot).toEqual({ enrich: { error: ['cloud'] } })
    expect(small.events).toContainEqual(expect.objectContaining({ code: MetadataErrorCode.TooLarge }))
    const big = await lookup({ name: 'cloud2', providers: ['aws'], endpoints: { aws: aws.url }, maxBodyBytes: 4_096 })
    expect(big.snapshot).toEqual(AWS_FIELDS)
  })

  it('a failing provider does not hide one that answers', async () => {
    const aws = await modeServer(awsRoute, Mode.Status500)
    const azure = await modeServer(azureRoute)
    const { snapshot } = await lookup({ providers: ['aws', 'azure'], endpoints: { aws: aws.url, azure: azure.url } })
    expect((snapshot.cloud as { provider: string }).provider).toBe('azure')
    expect(snapshot.enrich).toBeUndefined()
  })

  it('after the breaker opens the service sees no request until the half-open probe', async () => {
    const clock = manualClock()
    const aws = await modeServer(awsRoute, Mode.Status500)
    const p = pipeline({
      clock,
      enrichers: [
        cloudEnricher({
          env: {},
          providers: [CloudProvider.Aws],
          endpoints: { aws: aws.url },
          cache: { retryMs: 1_000, maxRetryMs: 1_000 },
          breaker: { failureThreshold: 2, halfOpenAfterMs: 10_000 },
        }),
      ],
    })
    await p.ready()
    expect(aws.requests).toHaveLength(1)
    clock.advance(1_000)
    await p.ready()
    expect(aws.requests).toHaveLength(2)
    expect(p.stats().enrichers[0]?.breaker).toBe('open')

    aws.mode = Mode.Healthy
    for (let i = 0; i < 9; i++) {
      clock.advance(1_000)
      p.snapshot()
      await p.ready()
    }
    expect(aws.requests).toHaveLength(2)

    clock.advance(1_000)
    await p.ready()
    expect(aws.requests).toHaveLength(4)
    expect(p.stats().enrichers[0]?.breaker).toBe('closed')
    expect(p.snapshot()).toEqual(AWS_FIELDS)
  })
})

describe('cloudEnricher: configuration', () => {
  it('takes endpoints from PINO_ENRICH_*_METADATA_URL, AWS_EC2_METADATA_SERVICE_ENDPOINT and GCE_METADATA_HOST', async () => {
    const aws = await modeServer(awsRoute)
    const gcp = await modeServer(gcpRoute)
    const azure = await modeServer(azureRoute)
    const url = await refusedUrl()
    const env = (extra: Record<string, string>) => ({
      PINO_ENRICH_AWS_METADATA_URL: url,
      PINO_ENRICH_GCP_METADATA_URL: url,
      PINO_ENRICH_AZURE_METADATA_URL: url,
      ...extra,
    })
    const provider = async (e: Record<string, string>) =>
      ((await lookup({ env: e })).snapshot.cloud as { provider?: string } | undefined)?.provider
    expect(await provider(env({ PINO_ENRICH_AWS_METADATA_URL: aws.url }))).toBe('aws')
    expect(await provider(env({ PINO_ENRICH_AZURE_METADATA_URL: `${azure.url}/` }))).toBe('azure')
    const { PINO_ENRICH_GCP_METADATA_URL: _, ...noGcp } = env({})
    expect(await provider({ ...noGcp, GCE_METADATA_HOST: new URL(gcp.url).host })).toBe('gcp')
    const { PINO_ENRICH_AWS_METADATA_URL: __, ...noAws } = env({})
    expect(await provider({ ...noAws, AWS_EC2_METADATA_SERVICE_ENDPOINT: aws.url })).toBe('aws')
  })

  it('the endpoints option wins over the environment', async () => {
    const aws = await modeServer(awsRoute)
    const url = await refusedUrl()
    const { snapshot } = await lookup({
      providers: ['aws'],
      endpoints: { aws: aws.url },
      env: { PINO_ENRICH_AWS_METADATA_URL: url },
    })
    expect(snapshot).toEqual(AWS_FIELDS)
  })

  it('AWS_EC2_METADATA_DISABLED=true leaves AWS out', async () => {
    const aws = await modeServer(awsRoute)
    const { snapshot } = await lookup({
      env: {
        AWS_EC2_METADATA_DISABLED: 'true',
        PINO_ENRICH_CLOUD_PROVIDERS: 'aws',
        PINO_ENRICH_AWS_METADATA_URL: aws.url,
      },
    })
    expect(snapshot).toEqual({})
    expect(aws.requests).toHaveLength(0)
  })

  it('rejects bad configuration at creation, quoting the value', () => {
    expect(() => cloudEnricher({ providers: ['ibm' as 'aws'] })).toThrow(/received "ibm"/)
    expect(() => cloudEnricher({ env: { PINO_ENRICH_CLOUD_PROVIDERS: 'aws,oracle' } })).toThrow(TypeError)
    expect(() => cloudEnricher({ endpoints: { aws: 'ftp://169.254.169.254' } })).toThrow(/received "ftp:/)
    expect(() => cloudEnricher({ endpoints: { gcp: 'not a url' } })).toThrow(TypeError)
    expect(() => cloudEnricher({ timeoutMs: 0 })).toThrow(RangeError)
    expect(() => cloudEnricher({ maxBodyBytes: 1.5 })).toThrow(/received 1.5/)
  })
})
