import { readFile } from 'node:fs/promises'
import { defineEnricher, type Enricher, type Fields } from '../src/index.js'
import { compact, fromEnv, ONCE, text } from './shared.js'

/** Options of {@link containerEnricher}. */
export interface ContainerEnricherOptions {
  /** Enricher name, for stats and problem records. Default `'container'`. */
  name?: string
  /** The process's cgroup file, read for the container id (cgroup v1 and v2). Default `'/proc/self/cgroup'`. */
  cgroupPath?: string
  /** The process's mountinfo file, read when the cgroup path has no id (cgroup v2 with a private namespace). Default `'/proc/self/mountinfo'`. */
  mountinfoPath?: string
  /**
   * The service account's namespace file, read for `k8s.namespace.name` when
   * no environment variable names it; `false` to skip.
   * Default `'/var/run/secrets/kubernetes.io/serviceaccount/namespace'`.
   */
  namespacePath?: string | false
  /** Environment read for the Kubernetes downward-API variables. Default `process.env`. */
  env?: Readonly<Record<string, string | undefined>>
}

/**
 * Environment variables read for each Kubernetes field, first set wins. Set
 * them with the downward API, e.g.
 * `env: [{ name: K8S_POD_NAME, valueFrom: { fieldRef: { fieldPath: metadata.name } } }]`.
 * The `OTEL_RESOURCE_ATTRIBUTES_*` names are the ones the OpenTelemetry
 * operator injects.
 */
export const K8S_ENV = {
  podName: ['K8S_POD_NAME', 'POD_NAME', 'OTEL_RESOURCE_ATTRIBUTES_POD_NAME'],
  podUid: ['K8S_POD_UID', 'POD_UID', 'OTEL_RESOURCE_ATTRIBUTES_POD_UID'],
  namespace: ['K8S_NAMESPACE_NAME', 'K8S_NAMESPACE', 'POD_NAMESPACE'],
  nodeName: ['K8S_NODE_NAME', 'NODE_NAME', 'OTEL_RESOURCE_ATTRIBUTES_NODE_NAME'],
  containerName: ['K8S_CONTAINER_NAME'],
} as const

const DEFAULTS = {
  name: 'container',
  cgroupPath: '/proc/self/cgroup',
  mountinfoPath: '/proc/self/mountinfo',
  namespacePath: '/var/run/secrets/kubernetes.io/serviceaccount/namespace',
} as const

/**
 * Where the process runs: `container.id` (64 hex digits) and
 * `container.runtime` (`docker`, `containerd`, `cri-o`, `podman`, when the
 * path tells) from `/proc/self/cgroup` (cgroup v1 and v2 paths of Docker,
 * containerd/CRI, CRI-O, Kubernetes and Podman) or else `/proc/self/mountinfo`;
 * and `k8s.pod.name`, `k8s.pod.uid`, `k8s.namespace.name`, `k8s.node.name`,
 * `k8s.container.name` from the downward-API environment ({@link K8S_ENV}).
 * The pod uid also comes from the cgroup path, the namespace from the service
 * account file, and the pod name from `HOSTNAME` inside Kubernetes
 * (`KUBERNETES_SERVICE_HOST` set), when no variable names them. Off Linux or
 * outside a container the fields are absent, not an error. Computed once.
 */
export function containerEnricher(options: ContainerEnricherOptions = {}): Enricher {
  const o = { ...DEFAULTS, ...options }
  const env = options.env ?? process.env
  return defineEnricher({
    name: o.name,
    cache: ONCE,
    breaker: false,
    compute: async (_key, _ctx, { signal }) => {
      const [cgroup, mountinfo, namespaceFile] = await Promise.all([
        readOptional(o.cgroupPath, signal),
        readOptional(o.mountinfoPath, signal),
        o.namespacePath === false ? undefined : readOptional(o.namespacePath, signal),
      ])
      const found =
        (cgroup === undefined ? undefined : containerIdFromCgroup(cgroup)) ??
        (mountinfo === undefined ? undefined : containerIdFromMountinfo(mountinfo))
      const out: Fields = {}
      if (found !== undefined) out.container = compact({ id: found.id, runtime: found.runtime })
      const inKubernetes = text(env.KUBERNETES_SERVICE_HOST) !== undefined
      const podName = fromEnv(env, K8S_ENV.podName) ?? (inKubernetes ? text(env.HOSTNAME) : undefined)
      const podUid = fromEnv(env, K8S_ENV.podUid) ?? (cgroup === undefined ? undefined : podUidFromCgroup(cgroup))
      const namespace = fromEnv(env, K8S_ENV.namespace) ?? text(namespaceFile)
      const node = fromEnv(env, K8S_ENV.nodeName)
      const containerName = fromEnv(env, K8S_ENV.containerName)
      const k8s = compact({
        pod: compact({ name: podName, uid: podUid }),
        namespace: compact({ name: namespace }),
        node: compact({ name: node }),
        container: compact({ name: containerName }),
      })
      if (k8s !== undefined) out.k8s = k8s
      return Object.keys(out).length === 0 ? undefined : out
    },
  })
}

/** A container id and, when the path tells, the runtime that made it. */
export interface FoundContainer {
  id: string
  runtime?: string
}

const HEX64 = /^[0-9a-f]{64}$/
// A cgroup path segment holding a container id: docker-<id>.scope, cri-containerd-<id>.scope, crio-<id>.scope, libpod-<id>.scope, or a bare <id>.
const CGROUP_SEGMENT = /^(?:(docker|cri-containerd|crio|libpod)-)?([0-9a-f]{64})(?:\.scope)?$/
const RUNTIME_BY_PREFIX: Readonly<Record<string, string>> = {
  docker: 'docker',
  'cri-containerd': 'containerd',
  crio: 'cri-o',
  libpod: 'podman',
}
// kubepods/burstable/pod<uid> (cgroupfs) or kubepods-burstable-pod<uid with underscores>.slice (systemd).
const POD_UID = /pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})/

/**
 * The container id in a `/proc/self/cgroup` text: v1 lines
 * (`12:memory:/docker/<id>`, `/kubepods/burstable/pod<uid>/<id>`) and v2
 * (`0::/system.slice/docker-<id>.scope`). The last id-shaped segment of a path
 * wins, so a nested `init.scope` or `container` is passed over.
 */
export function containerIdFromCgroup(cgroup: string): FoundContainer | undefined {
  for (const line of cgroup.split('\n')) {
    // hierarchy-ID:controller-list:cgroup-path; the path may itself hold colons.
    const first = line.indexOf(':')
    const second = first === -1 ? -1 : line.indexOf(':', first + 1)
    if (second === -1) continue
    const segments = line
      .slice(second + 1)
      .trim()
      .split('/')
    for (let i = segments.length - 1; i > 0; i--) {
      const m = CGROUP_SEGMENT.exec(segments[i] as string)
      if (m === null) continue
      const prefix = m[1]
      const runtime =
        prefix !== undefined ? RUNTIME_BY_PREFIX[prefix] : segments[i - 1] === 'docker' ? 'docker' : undefined
      return runtime === undefined ? { id: m[2] as string } : { id: m[2] as string, runtime }
    }
  }
  return undefined
}

/**
 * The container id in a `/proc/self/mountinfo` text, from the files the
 * runtime bind-mounts into the container (`/etc/hostname`, `/etc/hosts`,
 * `/etc/resolv.conf`): Docker's `.../containers/<id>/hostname`, Podman's
 * `.../overlay-containers/<id>/userdata/hostname`, nerdctl's
 * `.../containers/<namespace>/<id>/hostname`. containerd's CRI
 * `sandboxes/<id>` is the pod sandbox, not this container, and is passed over.
 */
export function containerIdFromMountinfo(mountinfo: string): FoundContainer | undefined {
  let fallback: FoundContainer | undefined
  for (const line of mountinfo.split('\n')) {
    // id parent major:minor root mount-point options ...
    const fields = line.split(' ')
    const root = fields[3]
    const mountPoint = fields[4]
    if (root === undefined || mountPoint === undefined) continue
    const segments = root.split('/')
    if (segments.includes('sandboxes')) continue
    for (let m = 1; m < segments.length; m++) {
      const marker = segments[m]
      if (marker !== 'containers' && marker !== 'overlay-containers') continue
      // The id follows the marker, or a namespace after it (nerdctl: containers/<namespace>/<id>).
      const id = HEX64.test(segments[m + 1] ?? '') ? segments[m + 1] : segments[m + 2]
      if (id === undefined || !HEX64.test(id)) continue
      const found: FoundContainer = { id }
      const runtime = marker === 'overlay-containers' ? 'podman' : runtimeOfPath(segments)
      if (runtime !== undefined) found.runtime = runtime
      if (mountPoint.startsWith('/etc/')) return found
      fallback ??= found
    }
  }
  return fallback
}

function runtimeOfPath(segments: readonly string[]): string | undefined {
  if (segments.includes('docker')) return 'docker'
  if (segments.includes('nerdctl') || segments.some((s) => s.startsWith('io.containerd'))) return 'containerd'
  return undefined
}

/** The Kubernetes pod uid in a cgroup path, when the kubelet put it there. */
export function podUidFromCgroup(cgroup: string): string | undefined {
  const m = POD_UID.exec(cgroup)
  return m === null ? undefined : (m[1] as string).replaceAll('_', '-')
}

async function readOptional(path: string, signal: AbortSignal): Promise<string | undefined> {
  try {
    return await readFile(path, { encoding: 'utf8', signal })
  } catch (e) {
    if (signal.aborted) throw e
    // Missing (not Linux, no service account) or unreadable: nothing to tell, not a failure.
    return undefined
  }
}
