import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import { containerIdFromCgroup, containerIdFromMountinfo } from '../../enrichers/container.js'
import { containerEnricher } from '../../enrichers/index.js'
import { createPipeline, type Fields, type Pipeline } from '../../src/index.js'

// Fixture files hold /proc/self/cgroup and /proc/self/mountinfo as Docker,
// containerd, CRI-O, Kubernetes and Podman hosts write them.

let pipelines: Pipeline[] = []
afterEach(async () => {
  await Promise.all(pipelines.map((p) => p.close()))
  pipelines = []
})

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/container/${name}`, import.meta.url))
const MISSING = fixture('does-not-exist')

async function detect(options: Parameters<typeof containerEnricher>[0]): Promise<Fields> {
  const p = createPipeline({ enrichers: [containerEnricher({ namespacePath: false, env: {}, ...options })] })
  pipelines.push(p)
  const ready = await p.ready()
  expect(ready.ready).toEqual(['container'])
  return p.snapshot()
}

const files = (dir: string) => ({ cgroupPath: fixture(`${dir}/cgroup`), mountinfoPath: fixture(`${dir}/mountinfo`) })

describe('containerEnricher: container id', () => {
  it('Docker on cgroup v1: /docker/<id>', async () => {
    expect(await detect(files('docker-cgroup-v1'))).toEqual({
      container: { id: '2a759f8fac4d817ff2bc28c224d51c5030f915c0c14997110517984ca9aa8d0f', runtime: 'docker' },
    })
  })

  it('Kubernetes with containerd on cgroup v1 (cgroupfs): kubepods/<qos>/pod<uid>/<id>, with the pod uid', async () => {
    expect(await detect(files('k8s-containerd-cgroup-v1'))).toEqual({
      container: { id: '966511cf5a3e7b4276064cba4bde5f73bfdc5c2ebeeed9b48a2845ecfed20e9a' },
      k8s: { pod: { uid: '3f2b1c9e-6d1a-4c8e-9f0b-2a7e5d4c3b21' } },
    })
  })

  it('Kubernetes with containerd on cgroup v2 (systemd): cri-containerd-<id>.scope, pod uid with underscores', async () => {
    expect(await detect(files('k8s-containerd-cgroup-v2'))).toEqual({
      container: { id: '503427a6331522a04aca7f35aa1123ec201636ddfd4ef383114334a313c9b4d1', runtime: 'containerd' },
      k8s: { pod: { uid: '8a9c0d1e-2f3a-4b5c-8d7e-6f5a4b3c2d1e' } },
    })
  })

  it('CRI-O on cgroup v1 (systemd): crio-<id>.scope', async () => {
    expect(await detect({ cgroupPath: fixture('crio-cgroup-v1-systemd/cgroup'), mountinfoPath: MISSING })).toEqual({
      container: { id: 'c64064614423cb790e88b3e5492ff5ccf673b25ae823089f7a60c65cda24d809', runtime: 'cri-o' },
      k8s: { pod: { uid: 'c0ffee00-1234-4abc-8def-0123456789ab' } },
    })
  })

  it('Docker on cgroup v2 with a private cgroup namespace: only mountinfo has the id, not the overlay layer ids', async () => {
    expect(await detect(files('docker-cgroup-v2-mountinfo-only'))).toEqual({
      container: { id: '523c835670a5065bb35e0b537f4ab7fffdb6fa0d55b6d72d7b6bb4af0cf13045', runtime: 'docker' },
    })
  })

  it('Podman on cgroup v2: overlay-containers/<id>/userdata in mountinfo', async () => {
    expect(await detect(files('podman-cgroup-v2'))).toEqual({
      container: { id: '2f259bab93aaaaa2542ba43ef33eb990d0999ee1b9924b557b7be53c0b7a1bb9', runtime: 'podman' },
    })
  })

  it('the containerd pod sandbox id in mountinfo is not taken for the container id', () => {
    expect(
      containerIdFromMountinfo(
        '2420 2411 259:1 /var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/b7ad567477c83756aab9a542b2be04f77dbae25115d85f22070d74d8cc4779dc/hostname /etc/hostname rw,relatime - ext4 /dev/nvme0n1p1 rw',
      ),
    ).toBeUndefined()
  })

  it('nerdctl: containers/<namespace>/<id> in mountinfo', () => {
    const id = 'e'.repeat(64)
    expect(
      containerIdFromMountinfo(
        `730 712 259:2 /var/lib/nerdctl/1935db59/containers/default/${id}/hostname /etc/hostname rw,relatime - ext4 /dev/nvme0n1p2 rw`,
      ),
    ).toEqual({ id, runtime: 'containerd' })
  })

  it('more cgroup shapes: Podman libpod-<id>.scope/container, Docker under systemd, ECS, and lines without ids', () => {
    const id = 'f'.repeat(64)
    expect(containerIdFromCgroup(`0::/machine.slice/libpod-${id}.scope/container\n`)).toEqual({ id, runtime: 'podman' })
    expect(containerIdFromCgroup(`0::/system.slice/docker-${id}.scope\n`)).toEqual({ id, runtime: 'docker' })
    expect(containerIdFromCgroup(`9:cpuset:/ecs/0123456789abcdef0123456789abcdef/${id}\n`)).toEqual({ id })
    expect(containerIdFromCgroup(`0::/machine.slice/libpod-conmon-${id}.scope\n`)).toBeUndefined()
    expect(containerIdFromCgroup(`0::/\n`)).toBeUndefined()
    expect(containerIdFromCgroup(`0::/docker/${id.slice(1)}\n`)).toBeUndefined()
    expect(containerIdFromCgroup('garbage without colons')).toBeUndefined()
  })

  it('a plain host has no container fields and no error', async () => {
    expect(await detect(files('host-cgroup-v2'))).toEqual({})
  })

  it('missing files (not Linux) are no container, not a failure', async () => {
    expect(await detect({ cgroupPath: MISSING, mountinfoPath: MISSING })).toEqual({})
  })
})

describe('containerEnricher: Kubernetes', () => {
  const none = { cgroupPath: MISSING, mountinfoPath: MISSING }

  it('reads pod, namespace, node and container names from the downward-API environment', async () => {
    const env = {
      K8S_POD_NAME: 'api-7d4b9c8f6-x2x9q',
      K8S_POD_UID: '3f2b1c9e-6d1a-4c8e-9f0b-2a7e5d4c3b21',
      K8S_NAMESPACE_NAME: 'payments',
      K8S_NODE_NAME: 'ip-10-0-1-23.eu-west-1.compute.internal',
      K8S_CONTAINER_NAME: 'api',
    }
    expect(await detect({ ...none, env })).toEqual({
      k8s: {
        pod: { name: 'api-7d4b9c8f6-x2x9q', uid: '3f2b1c9e-6d1a-4c8e-9f0b-2a7e5d4c3b21' },
        namespace: { name: 'payments' },
        node: { name: 'ip-10-0-1-23.eu-west-1.compute.internal' },
        container: { name: 'api' },
      },
    })
  })

  it('takes the other usual names: POD_NAME, POD_NAMESPACE, NODE_NAME', async () => {
    const env = { POD_NAME: 'web-0', POD_NAMESPACE: 'shop', NODE_NAME: 'node-3' }
    expect(await detect({ ...none, env })).toEqual({
      k8s: { pod: { name: 'web-0' }, namespace: { name: 'shop' }, node: { name: 'node-3' } },
    })
  })

  it('the K8S_ names win over the others, and blank values are skipped', async () => {
    const env = { K8S_POD_NAME: '  ', POD_NAME: 'web-1', K8S_NODE_NAME: 'node-a', NODE_NAME: 'node-b' }
    expect(await detect({ ...none, env })).toEqual({ k8s: { pod: { name: 'web-1' }, node: { name: 'node-a' } } })
  })

  it('falls back to the service account namespace file and, inside Kubernetes, to HOSTNAME for the pod name', async () => {
    const env = { KUBERNETES_SERVICE_HOST: '10.96.0.1', HOSTNAME: 'api-7d4b9c8f6-x2x9q' }
    const fields = await detect({
      ...files('k8s-containerd-cgroup-v1'),
      namespacePath: fixture('k8s-containerd-cgroup-v1/namespace'),
      env,
    })
    expect(fields.k8s).toEqual({
      pod: { name: 'api-7d4b9c8f6-x2x9q', uid: '3f2b1c9e-6d1a-4c8e-9f0b-2a7e5d4c3b21' },
      namespace: { name: 'payments' },
    })
  })

  it('does not take HOSTNAME for a pod name outside Kubernetes', async () => {
    expect(await detect({ ...none, env: { HOSTNAME: 'laptop' } })).toEqual({})
  })
})
