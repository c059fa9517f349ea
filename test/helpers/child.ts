import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export interface ChildResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  /** ms from spawn to exit. */
  elapsedMs: number
}

/**
 * Runs a TypeScript fixture in a real child process (node --import tsx) and
 * waits for it to exit, killing it after `timeoutMs` so a hang fails the test
 * instead of stalling the run. `onSpawn` may signal it.
 */
export function runChild(
  script: string,
  args: string[] = [],
  options: {
    timeoutMs?: number
    env?: NodeJS.ProcessEnv
    onStdout?: (chunk: string, pid: number) => void
    /** Node options before the script, e.g. `['--expose-gc']`. */
    nodeArgs?: string[]
  } = {},
): Promise<ChildResult> {
  const path = fileURLToPath(new URL(`../fixtures/${script}`, import.meta.url))
  const started = performance.now()
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), '--import', 'tsx', path, ...args], {
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => {
    stdout += c
    options.onStdout?.(c, child.pid as number)
  })
  child.stderr.setEncoding('utf8').on('data', (c: string) => {
    stderr += c
  })
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 20_000)
    // 'close' comes after 'exit' and after stdio is drained.
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr, elapsedMs: performance.now() - started })
    })
  })
}
