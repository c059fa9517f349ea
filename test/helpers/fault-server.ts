import http from 'node:http'
import type net from 'node:net'

/** How a {@link FaultServer} answers a request. */
export const Fault = {
  /** 200 with the healthy JSON body, at once. */
  Ok: 'ok',
  /** 200 with the healthy JSON body after `delayMs`. */
  Delay: 'delay',
  /** 500 with a text body (`errorBody`). */
  Status500: '500',
  /** The socket is reset (RST) as soon as the request arrives. */
  Reset: 'reset',
  /** Headers never sent; the socket is held until the client gives up or the server closes. */
  NeverRespond: 'never-respond',
  /** 200 whose JSON body drips one byte every `trickleMs`. */
  Trickle: 'trickle',
  /** 200 with a valid 10 MB JSON body (one 10 MB string), with its content-length. */
  Huge: 'huge',
  /** 200 with a JSON body cut in half. */
  InvalidJson: 'invalid-json',
  /** 200 with valid JSON carrying `__proto__` and `constructor.prototype` keys. */
  ProtoJson: 'proto-json',
} as const
export type Fault = (typeof Fault)[keyof typeof Fault]

export const ALL_FAULTS: readonly Fault[] = Object.values(Fault)

export interface FaultServerOptions {
  /** Initial mode. Default `ok`. */
  mode?: Fault
  /** Chooses the mode per request (overrides `mode`), e.g. for a flapping backend. */
  pick?: (req: http.IncomingMessage, n: number) => Fault
  /** Default 50. */
  delayMs?: number
  /** Default 20. */
  trickleMs?: number
  /** The healthy body of a request. Default `{ user: { id: <last path segment> } }`. */
  body?: (req: http.IncomingMessage) => unknown
  /** Body of a 500. Default a message with a credentialed URL and a bearer token, which must never reach a line. */
  errorBody?: string
}

/** A loopback HTTP backend that fails on demand and counts what reaches it. */
export interface FaultServer {
  readonly url: string
  mode: Fault
  delayMs: number
  trickleMs: number
  /** Requests received since start or the last {@link FaultServer.resetCounts}. */
  readonly requests: number
  /** Requests received per mode answered. */
  readonly byMode: Readonly<Record<string, number>>
  /** Connections open now. */
  readonly openConnections: number
  resetCounts(): void
  close(): Promise<void>
}

/** Secrets a backend may put in its error text; the suite checks they never reach a line. */
export const SECRET_TOKEN = 'sk-live-7f3c9a1e5b2d4c6e8f0a'
export const SECRET_PASSWORD = 'hunter2-s3cret'
export const DEFAULT_ERROR_BODY = `upstream http://admin:${SECRET_PASSWORD}@127.0.0.1/users failed, Authorization: Bearer ${SECRET_TOKEN}`

const TEN_MB = 10 * 1024 * 1024
let hugeBody: Buffer | undefined
function huge(): Buffer {
  hugeBody ??= Buffer.from(`{"user":{"name":"${'x'.repeat(TEN_MB - 20)}"}}`)
  return hugeBody
}

const PROTO_BODY =
  '{"user":{"id":"p","__proto__":{"admin":true}},"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}},"toString":"x"}'

/** Starts a fault server on 127.0.0.1 with a free port. */
export async function faultServer(options: FaultServerOptions = {}): Promise<FaultServer> {
  const timers = new Set<NodeJS.Timeout>()
  const sockets = new Set<net.Socket>()
  const byMode: Record<string, number> = {}
  let requests = 0
  const body =
    options.body ??
    ((req: http.IncomingMessage) => ({ user: { id: decodeURIComponent((req.url ?? '').split('/').pop() ?? '') } }))
  const errorBody = options.errorBody ?? DEFAULT_ERROR_BODY

  const later = (ms: number, fn: () => void): void => {
    const t = setTimeout(() => {
      timers.delete(t)
      fn()
    }, ms)
    timers.add(t)
  }

  const server = http.createServer((req, res) => {
    const n = requests++
    const mode = options.pick?.(req, n) ?? fs.mode
    byMode[mode] = (byMode[mode] ?? 0) + 1
    // A client that gave up makes writes fail: that is the client's business here.
    res.on('error', () => {})
    req.resume()
    switch (mode) {
      case Fault.Ok:
        json(res, body(req))
        return
      case Fault.Delay:
        later(fs.delayMs, () => json(res, body(req)))
        return
      case Fault.Status500:
        res.writeHead(500, { 'content-type': 'text/plain' }).end(errorBody)
        return
      case Fault.Reset:
        req.socket.resetAndDestroy()
        return
      case Fault.NeverRespond:
        return
      case Fault.Trickle: {
        const bytes = Buffer.from(JSON.stringify(body(req)))
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(bytes.length) })
        let i = 0
        const drip = (): void => {
          if (res.destroyed) return
          res.write(bytes.subarray(i, i + 1))
          if (++i >= bytes.length) res.end()
          else later(fs.trickleMs, drip)
        }
        drip()
        return
      }
      case Fault.Huge: {
        const b = huge()
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(b.length) }).end(b)
        return
      }
      case Fault.InvalidJson: {
        const text = JSON.stringify(body(req))
        res.writeHead(200, { 'content-type': 'application/json' }).end(text.slice(0, Math.ceil(text.length / 2)))
        return
      }
      case Fault.ProtoJson:
        res.writeHead(200, { 'content-type': 'application/json' }).end(PROTO_BODY)
        return
    }
  })
  server.on('connection', (s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  // A reset socket may report an error on the server side too.
  server.on('clientError', (_e, s) => s.destroy())
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  const { port } = server.address() as net.AddressInfo
  const fs: FaultServer = {
    url: `http://127.0.0.1:${port}`,
    mode: options.mode ?? Fault.Ok,
    delayMs: options.delayMs ?? 50,
    trickleMs: options.trickleMs ?? 20,
    get requests() {
      return requests
    },
    byMode,
    get openConnections() {
      return sockets.size
    },
    resetCounts() {
      requests = 0
      for (const k of Object.keys(byMode)) delete byMode[k]
    },
    close() {
      for (const t of timers) clearTimeout(t)
      timers.clear()
      return new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
        for (const s of sockets) s.destroy()
      })
    },
  }
  return fs
}

function json(res: http.ServerResponse, value: unknown): void {
  if (res.destroyed) return
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(value))
}

/** Thrown by {@link getJson} for a non-2xx answer: the status only, never the body. */
export class HttpStatusError extends Error {
  readonly status: number
  constructor(status: number, message: string) {
    super(message)
    this.name = 'HttpStatusError'
    this.status = status
  }
}

/**
 * A GET of JSON, the way an enricher's compute would do it: a fresh socket
 * (no agent, so nothing outlives the request), aborted by `signal`, refusing
 * bodies over `maxBytes`. A non-2xx answer throws with the body in the message,
 * as careless backend clients do, so the suite can check that text never reaches a line.
 */
export function getJson(url: string, options: { signal?: AbortSignal; maxBytes?: number } = {}): Promise<unknown> {
  const maxBytes = options.maxBytes ?? 1024 * 1024
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, ...(options.signal ? { signal: options.signal } : {}) }, (res) => {
      const chunks: Buffer[] = []
      let size = 0
      res.on('data', (c: Buffer) => {
        size += c.length
        if (size > maxBytes) {
          req.destroy(new RangeError(`body over ${maxBytes} bytes`))
          return
        }
        chunks.push(c)
      })
      res.on('error', reject)
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        const status = res.statusCode ?? 0
        if (status < 200 || status >= 300) {
          reject(new HttpStatusError(status, `GET ${url} failed with ${status}: ${text}`))
          return
        }
        try {
          resolve(JSON.parse(text))
        } catch (e) {
          reject(e)
        }
      })
    })
    req.on('error', reject)
  })
}
