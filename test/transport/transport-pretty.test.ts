import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { runChild } from '../helpers/child.js'

// pino-pretty after the enrichment transport, in a real child process that
// calls process.exit() right after logging: README's two recipes keep every
// line. (pino-pretty's default asynchronous destination, as a pipeline's last
// step, can still be writing when the worker is ended at exit.)

const root = fileURLToPath(new URL('../..', import.meta.url))
const readme = readFileSync(`${root}README.md`, 'utf8')

/** The `i` of every record pino-pretty printed, from its `    i: <n>` lines. */
function printed(text: string): number[] {
  return [...text.matchAll(/^ {4}i: (\d+)$/gm)].map((m) => Number(m[1]))
}

const everyLine = (count: number): number[] => Array.from({ length: count }, (_, i) => i)

describe('pino-pretty after pino-enrich/transport, at process.exit()', () => {
  it.each([5, 5_000])(
    'pino-pretty with sync: true as the last step prints all of %i lines, enriched',
    async (count) => {
      expect(readme).toContain("{ target: 'pino-pretty', options: { sync: true } }")
      const r = await runChild('transport-pretty-exit.ts', ['sync', String(count)], { timeoutMs: 60_000 })
      expect(r.stderr).toBe('')
      expect(r.code).toBe(0)
      expect(printed(r.stdout)).toEqual(everyLine(count))
      expect(r.stdout).toContain('"name": "worker-box"')
      expect(r.stdout).toContain('requestId: "r"')
    },
    90_000,
  )

  it('the pino-pretty CLI reading the lines from destination: 1 prints all of 5 000', async () => {
    expect(readme).toContain("{ target: 'pino/file', options: { destination: 1 } }")
    expect(readme).toMatch(/node app\.js \| npx pino-pretty/)
    const cli = spawn(process.execPath, [`${root}node_modules/pino-pretty/bin.js`], { stdio: ['pipe', 'pipe', 'pipe'] })
    let out = ''
    cli.stdout.setEncoding('utf8').on('data', (c: string) => {
      out += c
    })
    const closed = new Promise<number | null>((resolve) => cli.on('close', (code) => resolve(code)))
    const r = await runChild('transport-pretty-exit.ts', ['cli', '5000'], {
      timeoutMs: 60_000,
      onStdout: (chunk) => cli.stdin.write(chunk),
    })
    cli.stdin.end()
    expect(r.code).toBe(0)
    expect(await closed).toBe(0)
    expect(printed(out)).toEqual(everyLine(5_000))
  }, 90_000)
})
