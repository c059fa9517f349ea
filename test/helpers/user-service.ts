import http from 'node:http'
import { closeServer, listen } from './http.js'

/** A user service on loopback that counts its requests per user and path. */
export interface UserService {
  readonly url: string
  /** Requests so far per `<via>:<id>` (`via` is the query parameter the caller sends). */
  readonly hits: Map<string, number>
  /** Requests so far whose key starts with `prefix`. */
  count(prefix?: string): number
  /** Delay of every answer, in ms. */
  delayMs: number
  close(): Promise<void>
}

/** Starts a user service on 127.0.0.1:0 answering `GET /users/:id` with `{ id, name }`. */
export async function startUserService(): Promise<UserService> {
  const hits = new Map<string, number>()
  const service = {
    url: '',
    hits,
    delayMs: 0,
    count(prefix = ''): number {
      let n = 0
      for (const [k, v] of hits) if (k.startsWith(prefix)) n += v
      return n
    },
    close: () => closeServer(server),
  }
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x')
    const id = decodeURIComponent(url.pathname.replace(/^\/users\//, ''))
    const key = `${url.searchParams.get('via') ?? ''}:${id}`
    hits.set(key, (hits.get(key) ?? 0) + 1)
    const answer = (): void => {
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ id, name: `name of ${id}` }))
    }
    if (service.delayMs > 0) setTimeout(answer, service.delayMs)
    else answer()
  })
  service.url = await listen(server)
  return service
}
