// A real Redis Cluster on loopback for the shared-tier tests and the bench:
// Debian's redis-server in cluster mode on free ports (each with its bus port,
// port + 10000, free too), joined by `redis-cli --cluster create`, persistence
// off, every process killed and its directory removed by stop().
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { ping } from './redis-server.js'

const run = promisify(execFile)

export interface ClusterNode {
  readonly port: number
  readonly pid: number
  /** Whether the process still runs. */
  readonly alive: boolean
  /** SIGKILL: the node is gone without a word to the others. */
  kill(): Promise<void>
}

export interface RedisCluster {
  readonly nodes: readonly ClusterNode[]
  /** `[{ host: '127.0.0.1', port }]` for every node, for `new Cluster(...)`. */
  readonly startupNodes: Array<{ host: string; port: number }>
  /** Runs redis-cli against a live node and resolves with its output. */
  cli(args: string[], timeoutMs?: number): Promise<string>
  /** The port of the master serving `slot` now, as a live node sees it. */
  masterOf(slot: number): Promise<number>
  /** `redis-cli --cluster reshard`: moves `count` slots from one master to another, with their keys. */
  reshard(fromPort: number, toPort: number, count: number): Promise<string>
  /** Resolves once every live node reports `cluster_state:ok`; rejects after `timeoutMs`. */
  waitOk(timeoutMs?: number): Promise<void>
  /** Kills every node and removes the directory; idempotent. */
  stop(): Promise<void>
}

const INSTALL_HINT = 'install redis-server and redis-tools (`apt-get install -y redis-server`; .ci/run does)'

/**
 * Starts `masters` masters with `replicas` replicas each, joins them into a
 * cluster and resolves once every node reports `cluster_state:ok` and every
 * replica is in sync. A node is declared failed after `nodeTimeoutMs`.
 *
 * @throws Error naming the cause when redis-server or redis-cli is missing or the cluster does not form
 */
export async function startRedisCluster(
  options: { masters?: number; replicas?: number; nodeTimeoutMs?: number; startTimeoutMs?: number } = {},
): Promise<RedisCluster> {
  const masters = options.masters ?? 3
  const replicas = options.replicas ?? 1
  const startTimeoutMs = options.startTimeoutMs ?? 30_000
  const dir = mkdtempSync(join(tmpdir(), 'pino-enrich-cluster-'))
  const children: ChildProcess[] = []
  const nodes: ClusterNode[] = []
  let stopped = false
  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    await Promise.all(children.map((c) => killChild(c)))
    rmSync(dir, { recursive: true, force: true })
  }
  const cli = async (args: string[], timeoutMs = 30_000): Promise<string> => {
    const live = nodes.find((n) => n.alive)
    if (live === undefined) throw new Error('no live cluster node')
    try {
      const { stdout } = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(live.port), ...args], {
        timeout: timeoutMs,
        maxBuffer: 16 * 1_048_576,
      })
      return stdout
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`redis-cli not found: ${INSTALL_HINT}`)
      throw e
    }
  }
  const cluster: RedisCluster = {
    nodes,
    get startupNodes() {
      return nodes.filter((n) => n.alive).map((n) => ({ host: '127.0.0.1', port: n.port }))
    },
    cli,
    async masterOf(slot) {
      // CLUSTER NODES is the plainest to parse: `<id> <ip:port@bus> <flags> <master> ... <slot ranges>`.
      const lines = (await cli(['cluster', 'nodes'])).trim().split('\n')
      for (const line of lines) {
        const f = line.split(' ')
        if (!f[2]?.includes('master') || f[2].includes('fail')) continue
        for (const range of f.slice(8)) {
          if (range.startsWith('[')) continue
          const [lo, hi = lo] = range.split('-').map(Number)
          if (lo !== undefined && hi !== undefined && slot >= lo && slot <= hi)
            return Number(f[1]?.split('@')[0]?.split(':')[1])
        }
      }
      throw new Error(`no master serves slot ${slot}`)
    },
    async reshard(fromPort, toPort, count) {
      const [from, to] = await Promise.all([nodeId(fromPort), nodeId(toPort)])
      const { stdout } = await run(
        'redis-cli',
        [
          '--cluster',
          'reshard',
          `127.0.0.1:${fromPort}`,
          '--cluster-from',
          from,
          '--cluster-to',
          to,
          '--cluster-slots',
          String(count),
          '--cluster-yes',
        ],
        { timeout: 120_000, maxBuffer: 16 * 1_048_576 },
      )
      return stdout
    },
    async waitOk(timeoutMs = startTimeoutMs) {
      const end = performance.now() + timeoutMs
      for (;;) {
        const live = nodes.filter((n) => n.alive)
        const infos = await Promise.all(live.map((n) => info(n.port, ['cluster', 'info']).catch(() => '')))
        if (infos.every((i) => i.includes('cluster_state:ok'))) return
        if (performance.now() > end) throw new Error(`cluster not ok in ${timeoutMs} ms`)
        await new Promise((r) => setTimeout(r, 100))
      }
    },
    stop,
  }
  try {
    const count = masters * (1 + replicas)
    const ports = await freePorts(count)
    for (const port of ports) {
      const child = spawnNode(port, dir, options.nodeTimeoutMs ?? 1_000)
      children.push(child)
      nodes.push({
        port,
        get pid() {
          return child.pid as number
        },
        get alive() {
          return child.exitCode === null && child.signalCode === null
        },
        kill: () => killChild(child, 'SIGKILL'),
      })
    }
    await Promise.all(ports.map((p, i) => waitPing(p, children[i] as ChildProcess, startTimeoutMs)))
    await run(
      'redis-cli',
      [
        '--cluster',
        'create',
        ...ports.map((p) => `127.0.0.1:${p}`),
        '--cluster-replicas',
        String(replicas),
        '--cluster-yes',
      ],
      { timeout: startTimeoutMs },
    ).catch((e: NodeJS.ErrnoException & { stdout?: string }) => {
      if (e.code === 'ENOENT') throw new Error(`redis-cli not found: ${INSTALL_HINT}`)
      throw new Error(`redis-cli --cluster create failed: ${e.message} ${e.stdout ?? ''}`)
    })
    await cluster.waitOk()
    // Replicas in sync, so that a failover has somewhere to go.
    const end = performance.now() + startTimeoutMs
    for (const port of ports) {
      for (;;) {
        const r = await info(port, ['info', 'replication'])
        if (r.includes('role:master') || r.includes('master_link_status:up')) break
        if (performance.now() > end) throw new Error(`replica on ${port} not in sync`)
        await new Promise((res) => setTimeout(res, 100))
      }
    }
    return cluster
  } catch (e) {
    await stop()
    throw e
  }
}

async function info(port: number, args: string[]): Promise<string> {
  const { stdout } = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 5_000 })
  return stdout
}

async function nodeId(port: number): Promise<string> {
  return (await info(port, ['cluster', 'myid'])).trim()
}

const live = new Set<ChildProcess>()
const spawnErrors = new WeakMap<ChildProcess, string>()
let exitHook = false

function spawnNode(port: number, dir: string, nodeTimeoutMs: number): ChildProcess {
  const child = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--cluster-enabled',
      'yes',
      '--cluster-config-file',
      join(dir, `nodes-${port}.conf`),
      '--cluster-node-timeout',
      String(nodeTimeoutMs),
      '--save',
      '',
      '--appendonly',
      'no',
      '--daemonize',
      'no',
      '--dir',
      dir,
      '--logfile',
      '',
      '--loglevel',
      'warning',
    ],
    { stdio: 'ignore' },
  )
  child.on('error', (e: NodeJS.ErrnoException) => {
    spawnErrors.set(child, e.code === 'ENOENT' ? `redis-server not found: ${INSTALL_HINT}` : e.message)
  })
  live.add(child)
  child.once('exit', () => live.delete(child))
  if (!exitHook) {
    exitHook = true
    // A crashed test must not leave nodes behind.
    process.once('exit', () => {
      for (const c of live) c.kill('SIGKILL')
    })
  }
  return child
}

async function waitPing(port: number, child: ChildProcess, timeoutMs: number): Promise<void> {
  const end = performance.now() + timeoutMs
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis-server on ${port} exited (${child.exitCode})`)
    const failed = spawnErrors.get(child)
    if (failed !== undefined) throw new Error(failed)
    if (await ping(port, 300)) return
    if (performance.now() > end) throw new Error(`redis-server on port ${port} did not answer in ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

function killChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return Promise.resolve()
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 3_000)
    child.once('exit', () => {
      clearTimeout(timer)
      resolve()
    })
    child.kill(signal)
  })
}

/** `count` loopback ports free together with their cluster bus ports (port + 10000). */
async function freePorts(count: number): Promise<number[]> {
  const out: number[] = []
  for (let tries = 0; out.length < count && tries < 200; tries++) {
    const port = await listenFree(0)
    if (port > 55_535 || out.includes(port)) continue
    if ((await listenFree(port + 10_000).catch(() => 0)) === 0) continue
    out.push(port)
  }
  if (out.length < count) throw new Error(`found only ${out.length} of ${count} free port pairs`)
  return out
}

function listenFree(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => {
      const { port: p } = server.address() as net.AddressInfo
      server.close(() => resolve(p))
    })
  })
}

/** The cluster slot of `key` (CRC16/XMODEM of its hash tag, or of the whole key), as Redis computes it. */
export function keySlot(key: string): number {
  const open = key.indexOf('{')
  let k = key
  if (open >= 0) {
    const close = key.indexOf('}', open + 1)
    if (close > open + 1) k = key.slice(open + 1, close)
  }
  let crc = 0
  for (const byte of Buffer.from(k, 'utf8')) {
    crc ^= byte << 8
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
  }
  return crc % 16_384
}
