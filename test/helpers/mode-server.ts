import http from 'node:http'
import { closeServer, listen } from './http.js'

/** How a {@link ModeServer} answers. */
export const Mode = {
  /** The route's answer. */
  Healthy: 'healthy',
  /** The route's answer after `slowMs`. */
  Slow: 'slow',
  /** Headers never sent. */
  Hang: 'hang',
  /** 500 on every request. */
  Status500: '500',
  /** The route's answer, with its JSON bodies cut in half. */
  InvalidJson: 'invalid-json',
  /** 200 with a 10 MB body and its content-length. */
  Huge: 'huge',
  /** 200 with a 10 MB body, chunked, no content-length. */
  HugeChunked: 'huge-chunked',
} as const
export type Mode = (typeof Mode)[keyof typeof Mode]

/** A route's answer in the healthy mode; undefined is a 404. */
export interface Answer {
  status?: number
  headers?: Record<string, string>
  json?: unknown
  text?: string
}

export interface RecordedRequest {
  method: string
  url: string
  headers: http.IncomingHttpHeaders
}

/** A real HTTP server on 127.0.0.1 whose behaviour a test switches by `mode`. */
export interface ModeServer {
  readonly url: string
  mode: Mode
  slowMs: number
  /** Every request received, in order. */
  readonly requests: RecordedRequest[]
  close(): Promise<void>
}

const TEN_MB = 10 * 1024 * 1024
const open = new Set<ModeServer>()

/** Starts a server; `route` gives the healthy answer of a request. */
export async function modeServer(
  route: (req: http.IncomingMessage) => Answer | undefined,
  mode: Mode = Mode.Healthy,
): Promise<ModeServer> {
  const timers = new Set<NodeJS.Timeout>()
  const server = http.createServer((req, res) => {
    ms.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers })
    // A client that gave up makes writes fail; that is the client's business here.
    res.on('error', () => {})
    req.resume()
    switch (ms.mode) {
      case Mode.Hang:
        return
      case Mode.Status500:
        res.writeHead(500, { 'content-type': 'text/plain' }).end('internal error')
        return
      case Mode.Huge:
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(TEN_MB) })
        res.end(Buffer.alloc(TEN_MB, 0x20))
        return
      case Mode.HugeChunked:
        res.writeHead(200, { 'content-type': 'application/json' })
        writeChunks(res, TEN_MB)
        return
      case Mode.Slow: {
        const t = setTimeout(() => {
          timers.delete(t)
          answer(req, res, false)
        }, ms.slowMs)
        timers.add(t)
        return
      }
      default:
        answer(req, res, ms.mode === Mode.InvalidJson)
    }
  })
  const answer = (req: http.IncomingMessage, res: http.ServerResponse, breakJson: boolean): void => {
    if (res.destroyed) return
    const a = route(req)
    if (a === undefined) {
      res.writeHead(404).end('not found')
      return
    }
    let body = a.text ?? ''
    const headers: Record<string, string> = { ...a.headers }
    if (a.json !== undefined) {
      body = JSON.stringify(a.json)
      if (breakJson) body = body.slice(0, Math.ceil(body.length / 2))
      headers['content-type'] = 'application/json'
    }
    res.writeHead(a.status ?? 200, headers).end(body)
  }
  const url = await listen(server)
  const ms: ModeServer = {
    url,
    mode,
    slowMs: 50,
    requests: [],
    close: async () => {
      open.delete(ms)
      for (const t of timers) clearTimeout(t)
      await closeServer(server)
    },
  }
  open.add(ms)
  return ms
}

function writeChunks(res: http.ServerResponse, total: number): void {
  const chunk = Buffer.alloc(64 * 1024, 0x20)
  let sent = 0
  const pump = (): void => {
    while (sent < total && !res.destroyed) {
      sent += chunk.length
      if (!res.write(chunk)) {
        res.once('drain', pump)
        return
      }
    }
    if (!res.destroyed) res.end()
  }
  pump()
}

/** Closes every server still open; call in afterEach. */
export async function closeModeServers(): Promise<void> {
  await Promise.all([...open].map((s) => s.close()))
}

/** A base URL on which nothing listens: a port that was just released. */
export async function refusedUrl(): Promise<string> {
  const server = http.createServer()
  const url = await listen(server)
  await closeServer(server)
  return url
}
