import { afterAll, beforeAll, beforeEach } from 'vitest'
import { type RedisServer, startRedisServer } from './redis-server.js'

/**
 * One redis-server for a test file, started before its tests and stopped
 * after them. When it cannot start (redis-server missing, no port) every
 * test of the file fails with the reason: none is skipped. `setup` runs
 * once the server answers, for what else the file needs (app processes).
 */
export function redisForFile(setup?: (server: RedisServer) => Promise<void>): { readonly server: RedisServer } {
  let server: RedisServer | undefined
  let failure: unknown
  beforeAll(async () => {
    try {
      server = await startRedisServer()
    } catch (e) {
      failure = e
      return
    }
    await setup?.(server)
  }, 30_000)
  beforeEach(() => {
    if (failure !== undefined) throw failure
  })
  afterAll(async () => {
    await server?.stop()
  })
  return {
    get server(): RedisServer {
      if (server === undefined) throw failure ?? new Error('redis-server not started yet')
      return server
    },
  }
}
