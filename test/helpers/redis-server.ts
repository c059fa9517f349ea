// A real redis-server for the shared-tier tests and the bench: its own
// instance on a free loopback port, persistence off, stopped afterwards.
import { type ChildProcess, spawn } from 'node:child_process'
import net from 'node:net'
import { tmpdir } from 'node:os'

/** One redis-server process this helper started. */
export interface RedisServer {
  readonly port: number
  /** `redis://127.0.0.1:<port>` */
  readonly url: string
  /** The current process id (a restart changes it). */
  readonly pid: number
  /** `kill -STOP`: the server keeps its sockets but answers nothing. */
  pause(): void
  /** `kill -CONT` after {@link pause}. */
  resume(): void
  /** Stops the server and starts a new one on the same port (data is lost: persistence is off). */
  restart(): Promise<void>
  /** Stops the server; idempotent. */
  stop(): Promise<void>
}

const INSTALL_HINT =
  'install it with `sudo apt-get install -y redis-server` (Debian, Ubuntu) or `brew install redis` (macOS), as README says'

/**
 * Starts `redis-server` on a free 127.0.0.1 port with persistence off and
 * resolves once it answers PING.
 *
 * @throws Error naming the cause when redis-server is missing or does not start in `startTimeoutMs`
 */
export async function startRedisServer(options: { startTimeoutMs?: number } = {}): Promise<RedisServer> {
  const startTimeoutMs = options.startTimeoutMs ?? 10_000
  let lastError: unknown
  // A port found free can be taken before redis binds it: try a few.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort()
    try {
      const child = await spawnServer(port, startTimeoutMs)
      return handle(port, child, startTimeoutMs)
    } catch (e) {
      lastError = e
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') break
    }
  }
  throw lastError
}

function handle(port: number, first: ChildProcess, startTimeoutMs: number): RedisServer {
  let child = first
  let paused = false
  const stopChild = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return
    if (paused) {
      child.kill('SIGCONT')
      paused = false
    }
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 3_000)
    await exited
    clearTimeout(timer)
  }
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    get pid() {
      return child.pid as number
    },
    pause() {
      child.kill('SIGSTOP')
      paused = true
    },
    resume() {
      child.kill('SIGCONT')
      paused = false
    },
    async restart() {
      await stopChild()
      child = await spawnServer(port, startTimeoutMs)
    },
    stop: stopChild,
  }
}

const live = new Set<ChildProcess>()
let exitHook = false

async function spawnServer(port: number, startTimeoutMs: number): Promise<ChildProcess> {
  const child = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      tmpdir(),
      '--logfile',
      '',
      '--loglevel',
      'warning',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let output = ''
  const collect = (c: Buffer): void => {
    if (output.length < 4_096) output += c.toString('utf8')
  }
  child.stdout?.on('data', collect)
  child.stderr?.on('data', collect)
  live.add(child)
  child.once('exit', () => live.delete(child))
  if (!exitHook) {
    exitHook = true
    // A crashed test must not leave servers behind.
    process.once('exit', () => {
      for (const c of live) c.kill('SIGKILL')
    })
  }
  const failed = new Promise<never>((_, reject) => {
    child.once('error', (e: NodeJS.ErrnoException) => {
      const err = new Error(
        e.code === 'ENOENT' ? `redis-server not found: ${INSTALL_HINT}` : `redis-server failed: ${e.message}`,
      ) as NodeJS.ErrnoException
      if (e.code !== undefined) err.code = e.code
      reject(err)
    })
    child.once('exit', (code, signal) =>
      reject(new Error(`redis-server exited (${code ?? signal}) before answering: ${output.trim()}`)),
    )
  })
  failed.catch(() => {})
  const deadline = performance.now() + startTimeoutMs
  try {
    for (;;) {
      const ok = await Promise.race([ping(port), failed])
      if (ok) return child
      if (performance.now() > deadline)
        throw new Error(`redis-server on port ${port} did not answer in ${startTimeoutMs} ms`)
      await new Promise((r) => setTimeout(r, 20))
    }
  } catch (e) {
    child.kill('SIGKILL')
    throw e
  }
}

/** One PING over a raw socket: true when the server answers PONG. */
export function ping(port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    let reply = ''
    const finish = (ok: boolean): void => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs, () => finish(false))
    socket.on('connect', () => socket.write('PING\r\n'))
    socket.on('data', (c) => {
      reply += c.toString('latin1')
      if (reply.includes('\r\n')) finish(reply.startsWith('+PONG'))
    })
    socket.on('error', () => finish(false))
  })
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
}
