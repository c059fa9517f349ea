// A long-running app instance in a real child process (node --import tsx),
// driven by JSON-line commands on stdin that it answers on stdout. For tests
// that need several processes at once (a fleet sharing a Redis).
import { type ChildProcess, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export interface Instance {
  readonly pid: number
  /** Sends a command and resolves with the instance's answer to it; rejects on an `error` answer or an exit. */
  request<T = Record<string, unknown>>(command: Record<string, unknown>, timeoutMs?: number): Promise<T>
  /** Everything the instance wrote to stderr so far. */
  stderr(): string
  /** Asks the instance to exit and waits; kills it after `timeoutMs`. Resolves with its exit code. */
  stop(timeoutMs?: number): Promise<number | null>
}

interface Pending {
  resolve: (v: never) => void
  reject: (e: Error) => void
  timer: NodeJS.Timeout
}

const running = new Set<ChildProcess>()
process.once('exit', () => {
  for (const c of running) c.kill('SIGKILL')
})

/**
 * Starts `test/fixtures/<script>` and resolves once it prints `{"ready":true}`.
 * The fixture reads one JSON command per stdin line, each with an `id`, and
 * answers `{"id":..., ...}` (or `{"id":..., "error": "..."}`) on stdout.
 */
export function startInstance(
  script: string,
  options: { env?: NodeJS.ProcessEnv; execArgv?: string[]; readyTimeoutMs?: number } = {},
): Promise<Instance> {
  const path = fileURLToPath(new URL(`../fixtures/${script}`, import.meta.url))
  const child = spawn(process.execPath, ['--import', 'tsx', ...(options.execArgv ?? []), path], {
    env: { ...process.env, ...options.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  running.add(child)
  const pending = new Map<number, Pending>()
  let nextId = 0
  let stderr = ''
  let buffer = ''
  let exited = false
  let onReady: (() => void) | undefined
  child.stderr.setEncoding('utf8').on('data', (c: string) => {
    if (stderr.length < 100_000) stderr += c
  })
  child.stdout.setEncoding('utf8').on('data', (c: string) => {
    buffer += c
    let nl = buffer.indexOf('\n')
    while (nl >= 0) {
      const line = buffer.slice(0, nl)
      buffer = buffer.slice(nl + 1)
      nl = buffer.indexOf('\n')
      let m: { id?: number; ready?: boolean; error?: string }
      try {
        m = JSON.parse(line)
      } catch {
        continue
      }
      if (m.ready === true) onReady?.()
      if (typeof m.id !== 'number') continue
      const p = pending.get(m.id)
      if (p === undefined) continue
      pending.delete(m.id)
      clearTimeout(p.timer)
      if (typeof m.error === 'string') p.reject(new Error(`instance ${child.pid}: ${m.error}`))
      else p.resolve(m as never)
    }
  })
  const exitPromise = new Promise<number | null>((resolve) => {
    child.once('close', (code) => {
      exited = true
      running.delete(child)
      for (const p of pending.values()) {
        clearTimeout(p.timer)
        p.reject(new Error(`instance ${child.pid} exited (${code}): ${stderr.slice(-2_000)}`))
      }
      pending.clear()
      resolve(code)
    })
  })
  const instance: Instance = {
    pid: child.pid as number,
    request<T>(command: Record<string, unknown>, timeoutMs = 20_000): Promise<T> {
      if (exited) return Promise.reject(new Error(`instance ${child.pid} has exited`))
      const id = ++nextId
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id)
          reject(new Error(`instance ${child.pid}: no answer to ${String(command.cmd)} in ${timeoutMs} ms`))
        }, timeoutMs)
        pending.set(id, { resolve: resolve as (v: never) => void, reject, timer })
        child.stdin.write(`${JSON.stringify({ ...command, id })}\n`)
      })
    },
    stderr: () => stderr,
    async stop(timeoutMs = 5_000) {
      if (!exited) {
        child.stdin.end()
        const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
        const code = await exitPromise
        clearTimeout(timer)
        return code
      }
      return exitPromise
    },
  }
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`instance ${script} not ready in time: ${stderr.slice(-2_000)}`))
    }, options.readyTimeoutMs ?? 15_000)
    onReady = () => {
      clearTimeout(timer)
      resolve(instance)
    }
    exitPromise.then((code) => {
      clearTimeout(timer)
      reject(new Error(`instance ${script} exited (${code}) before ready: ${stderr.slice(-2_000)}`))
    })
  })
}
