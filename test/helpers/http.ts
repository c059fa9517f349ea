import http from 'node:http'
import net from 'node:net'

/** A response read to the end. */
export interface HttpResult {
  status: number
  headers: http.IncomingHttpHeaders
  body: string
}

export interface HttpClient {
  request(
    url: string,
    init?: { method?: string; headers?: Record<string, string>; json?: unknown },
  ): Promise<HttpResult>
  /** Destroys the agent's sockets. */
  close(): void
}

/**
 * A node:http client on a keep-alive agent: at most `maxSockets` requests are
 * in flight at once (the rest queue in the agent), and several requests share
 * a socket, which is what a context must not bleed across.
 */
export function httpClient(maxSockets = 64): HttpClient {
  const agent = new http.Agent({ keepAlive: true, maxSockets })
  return {
    request(url, init = {}) {
      const body = init.json === undefined ? undefined : JSON.stringify(init.json)
      const headers: Record<string, string> = { ...init.headers }
      if (body !== undefined) {
        headers['content-type'] = 'application/json'
        headers['content-length'] = String(Buffer.byteLength(body))
      }
      return new Promise((resolve, reject) => {
        const req = http.request(url, { method: init.method ?? 'GET', headers, agent }, (res) => {
          let text = ''
          res.setEncoding('utf8')
          res.on('data', (c: string) => {
            text += c
          })
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }))
          res.on('error', reject)
        })
        req.on('error', reject)
        req.end(body)
      })
    },
    close() {
      agent.destroy()
    },
  }
}

/** Listens on 127.0.0.1 on a free port; resolves with the base URL. */
export function listen(server: http.Server): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject)
      const address = server.address() as net.AddressInfo
      resolve(`http://127.0.0.1:${address.port}`)
    })
  })
}

/** Closes a server and every connection it still holds. */
export function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) {
      resolve()
      return
    }
    server.close(() => resolve())
    server.closeAllConnections()
  })
}

/**
 * Sends bytes as they are (no client-side header validation) and resolves with
 * the raw response, for header values a well-behaved client refuses to send.
 */
export function rawRequest(baseUrl: string, request: string): Promise<string> {
  const { port } = new URL(baseUrl)
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), '127.0.0.1')
    let text = ''
    socket.setEncoding('latin1')
    socket.on('data', (c: string) => {
      text += c
    })
    socket.on('end', () => resolve(text))
    socket.on('error', reject)
    socket.end(request, 'latin1')
  })
}

/** The header block of a raw response, lower-cased names. */
export function rawHeaders(response: string): Record<string, string> {
  const head = response.split('\r\n\r\n')[0] ?? ''
  const out: Record<string, string> = {}
  for (const line of head.split('\r\n').slice(1)) {
    const i = line.indexOf(':')
    if (i > 0) out[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim()
  }
  return out
}
