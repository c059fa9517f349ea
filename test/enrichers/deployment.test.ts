import { afterEach, describe, expect, it } from 'vitest'
import { parseResourceAttributes } from '../../enrichers/deployment.js'
import { deploymentEnricher } from '../../enrichers/index.js'
import { createPipeline, type Fields, type Pipeline } from '../../src/index.js'

let pipelines: Pipeline[] = []
afterEach(async () => {
  await Promise.all(pipelines.map((p) => p.close()))
  pipelines = []
})

async function fields(options: Parameters<typeof deploymentEnricher>[0]): Promise<Fields> {
  const p = createPipeline({ enrichers: [deploymentEnricher({ env: {}, ...options })] })
  pipelines.push(p)
  await p.ready()
  return p.snapshot()
}

const SHA = '3f1c2e9d8b7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d'

describe('deploymentEnricher', () => {
  it('writes service.name, service.version, deployment.environment.name and vcs.ref.head.revision from options', async () => {
    expect(await fields({ serviceName: 'checkout', version: '2.4.1', environment: 'production', commit: SHA })).toEqual(
      {
        service: { name: 'checkout', version: '2.4.1' },
        deployment: { environment: { name: 'production' } },
        vcs: { ref: { head: { revision: SHA } } },
      },
    )
  })

  it('options win over the environment', async () => {
    const env = { OTEL_SERVICE_NAME: 'from-env', SERVICE_VERSION: '9.9.9', NODE_ENV: 'development', GIT_COMMIT: 'abc' }
    expect(
      await fields({ env, serviceName: 'checkout', version: '1.0.0', environment: 'staging', commit: SHA }),
    ).toEqual({
      service: { name: 'checkout', version: '1.0.0' },
      deployment: { environment: { name: 'staging' } },
      vcs: { ref: { head: { revision: SHA } } },
    })
  })

  it('reads the usual variables, in order: OTEL_SERVICE_NAME before SERVICE_NAME before npm_package_name', async () => {
    const env = {
      OTEL_SERVICE_NAME: 'otel-name',
      SERVICE_NAME: 'service-name',
      npm_package_name: 'pkg-name',
      SERVICE_VERSION: '3.1.0',
      npm_package_version: '0.0.1',
      DEPLOYMENT_ENVIRONMENT: 'prod',
      NODE_ENV: 'production',
      SOURCE_VERSION: 'heroku-sha',
      GITHUB_SHA: 'github-sha',
    }
    expect(await fields({ env })).toEqual({
      service: { name: 'otel-name', version: '3.1.0' },
      deployment: { environment: { name: 'prod' } },
      vcs: { ref: { head: { revision: 'heroku-sha' } } },
    })
    expect(
      await fields({ name: 'd2', env: { npm_package_name: 'pkg', npm_package_version: '0.0.1', GITHUB_SHA: 'gh' } }),
    ).toEqual({
      service: { name: 'pkg', version: '0.0.1' },
      vcs: { ref: { head: { revision: 'gh' } } },
    })
  })

  it('reads OTEL_RESOURCE_ATTRIBUTES after OTEL_SERVICE_NAME and before the others, percent-decoded', async () => {
    const env = {
      OTEL_RESOURCE_ATTRIBUTES:
        'service.name=attr-name,service.version=4.0.0%2Bbuild.7,deployment.environment.name=eu%20prod,team=core',
      SERVICE_NAME: 'service-name',
      SERVICE_VERSION: '1.0.0',
      NODE_ENV: 'production',
    }
    expect(await fields({ env })).toEqual({
      service: { name: 'attr-name', version: '4.0.0+build.7' },
      deployment: { environment: { name: 'eu prod' } },
    })
    expect((await fields({ name: 'd2', env: { ...env, OTEL_SERVICE_NAME: 'otel' } })).service).toMatchObject({
      name: 'otel',
    })
  })

  it('skips malformed OTEL_RESOURCE_ATTRIBUTES pairs', () => {
    expect([...parseResourceAttributes('a=1,=2,b,c=%E0%A4%A,d= ,e=5')]).toEqual([
      ['a', '1'],
      ['e', '5'],
    ])
    expect(parseResourceAttributes(undefined).size).toBe(0)
  })

  it('ignores blank and overlong values', async () => {
    const env = { OTEL_SERVICE_NAME: '   ', SERVICE_NAME: 'x'.repeat(300), npm_package_name: 'fallback' }
    expect(await fields({ env })).toEqual({ service: { name: 'fallback' } })
  })

  it('writes nothing when nothing is known', async () => {
    expect(await fields({})).toEqual({})
  })

  it('reads process.env by default', async () => {
    const before = process.env.OTEL_SERVICE_NAME
    process.env.OTEL_SERVICE_NAME = 'from-process-env'
    try {
      const p = createPipeline({ enrichers: [deploymentEnricher()] })
      pipelines.push(p)
      await p.ready()
      expect(p.snapshot().service).toMatchObject({ name: 'from-process-env' })
    } finally {
      if (before === undefined) delete process.env.OTEL_SERVICE_NAME
      else process.env.OTEL_SERVICE_NAME = before
    }
  })
})
